// Package commands turns the text of a "/migration ..." command into an answer: it parses the
// text, checks the caller's role, runs checks and state changes, and returns a plain Response.
// The subcommand registry in this package is the single source of the help text. No Slack or
// Redis types appear here; the bot package renders Responses for Slack and the shell.
package commands
