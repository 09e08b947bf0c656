package commands

import (
	"fmt"
	"strings"
)

// Parsed is a command line split into its parts.
type Parsed struct {
	Sub       *Subcommand
	Migration string   // the migration named in the text, or "" when left out
	Args      []string // the words after the subcommand and the migration name
}

// UsageError is bad input: the message is one line, and Sub (when known) gives the usage.
type UsageError struct {
	Msg string
	Sub *Subcommand
}

func (e *UsageError) Error() string { return e.Msg }

// MaxTextLen bounds the text of a command; Slack's own limit is lower.
const MaxTextLen = 4000

// Parse splits the text of a command ("/migration rollback example dns broke", or without the
// leading "/migration") into subcommand, migration and arguments. A word right after the
// subcommand that names a configured migration (in any case) is taken as the migration.
func Parse(text string, migrations []string) (Parsed, error) {
	if len(text) > MaxTextLen {
		return Parsed{}, &UsageError{Msg: fmt.Sprintf("command too long (%d bytes, at most %d)", len(text), MaxTextLen)}
	}
	words := strings.Fields(text)
	if len(words) > 0 && strings.EqualFold(words[0], "/migration") {
		words = words[1:]
	}
	if len(words) == 0 {
		return Parsed{Sub: lookup("help")}, nil
	}
	sub := lookup(strings.ToLower(words[0]))
	if sub == nil {
		return Parsed{}, &UsageError{Msg: fmt.Sprintf("unknown subcommand %q", clip(words[0], 40))}
	}
	p := Parsed{Sub: sub, Args: words[1:]}
	if sub.Name != "help" && len(p.Args) > 0 {
		for _, m := range migrations {
			// Names are lowercase; people type "Example", or quote it.
			if strings.EqualFold(strings.Trim(p.Args[0], `"'“”‘’`+"`"), m) {
				p.Migration, p.Args = m, p.Args[1:]
				break
			}
		}
	}
	return p, nil
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
