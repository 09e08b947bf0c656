package bot

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/slack-go/slack"
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

// userCause says in a few words why a Slack call failed, for the user's answer: Slack's own
// error code (not_in_channel, channel_not_found, …) when it gave one, otherwise only the kind of
// failure. Internal details (addresses, URLs) stay in the logs.
func userCause(err error) string {
	var se slack.SlackErrorResponse
	var rl *slack.RateLimitedError
	switch {
	case errors.As(err, &se):
		return se.Err
	case errors.Is(err, ErrUncertain):
		return "Slack did not answer in time; the message may still arrive"
	case errors.As(err, &rl):
		return "Slack rate-limited the bot"
	case errors.Is(err, context.DeadlineExceeded):
		return "Slack did not answer in time"
	}
	return "Slack could not be reached"
}

// withoutURL drops the URL from a failed HTTP request's error: a response_url is a credential
// (it can post into the channel for 30 minutes) and must not reach the logs.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
