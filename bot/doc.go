// Package bot is everything that speaks to people: the shell today, Slack tomorrow. It turns
// their input into commands.Request values and renders commands.Response values, in one place
// per surface, and logs internal errors once, at this edge.
package bot
