package bot

import (
	"context"
	"time"

	"github.com/migrationbot/migrationbot/commands"
)

// Settler tells whether a change answered "may or may not have been applied"
// (commands.Response.Pending) was applied after all; *commands.Handler is one.
type Settler interface {
	Settle(ctx context.Context, name, requestID string) (commands.Response, bool, error)
}

// How long and how often an unknown outcome is watched for.
const (
	PendingWindow = 2 * time.Minute
	pendingEvery  = 2 * time.Second
)

// watchPending asks s every `every` whether the pending change of resp was applied, until it
// was (the announcement to make is returned), or ctx is done.
func watchPending(ctx context.Context, s Settler, resp commands.Response, every time.Duration) (commands.Response, bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return commands.Response{}, false
		case <-t.C:
		}
		if late, applied, err := s.Settle(ctx, resp.Migration, resp.Pending); err == nil && applied {
			return late, true
		}
	}
}
