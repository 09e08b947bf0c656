package bot

import (
	"context"
	"strconv"
	"sync/atomic"
)

// ShellPoster "posts" into a terminal: it prints each message through Shell.Print, headed by the
// channel it was meant for, so the shell shows reports as they fall due.
type ShellPoster struct {
	Shell *Shell
	n     atomic.Int64
}

// PostMessage prints msg's text and returns a made-up ts.
func (p *ShellPoster) PostMessage(_ context.Context, channel string, msg Message) (string, error) {
	p.Shell.Print("[report for #" + channel + "]\n" + PlainText(msg.Text))
	return "shell." + strconv.FormatInt(p.n.Add(1), 10), nil
}
