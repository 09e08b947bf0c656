package bot

import (
	"context"
	"errors"
)

// Message is one message for a channel: Text is the plain-text fallback (and the whole message
// in the shell); Blocks, when set, is the Block Kit rendering as JSON-ready values.
type Message struct {
	Text   string
	Blocks any
}

// Poster posts a message into a channel and returns the message's ts.
type Poster interface {
	PostMessage(ctx context.Context, channel string, msg Message) (ts string, err error)
}

// ErrUncertain marks a post whose outcome is unknown (the request was sent, then timed out): it
// may have been posted, so it must not be sent again.
var ErrUncertain = errors.New("post outcome unknown")
