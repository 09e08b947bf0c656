package bot

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/migrationbot/migrationbot/commands"
)

// settlingCommands answers a change "may or may not have been applied" and finds it applied
// after appliedAfter.
type settlingCommands struct {
	stubCommands
	start        time.Time
	appliedAfter time.Duration
}

func (s *settlingCommands) Settle(_ context.Context, name, requestID string) (commands.Response, bool, error) {
	if time.Since(s.start) < s.appliedAfter {
		return commands.Response{}, false, nil
	}
	return commands.Response{Text: "Update: the rollback of " + name + " was applied after all", Migration: name, Channel: "C0MIG", Announce: true}, true, nil
}

type memPoster struct {
	mu    sync.Mutex
	posts []string
	at    []time.Time
}

func (p *memPoster) PostMessage(_ context.Context, channel string, msg Message) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.posts = append(p.posts, channel+": "+msg.Text)
	p.at = append(p.at, time.Now())
	return "1.1", nil
}

// TestPendingChangeAnnounced: a change whose outcome was unknown and that Redis applied later is
// announced in the migration's channel; one that never shows up is not.
func TestPendingChangeAnnounced(t *testing.T) {
	for _, c := range []struct {
		name  string
		after time.Duration
		posts int
	}{
		{"applied after 30s", 30 * time.Second, 1},
		{"never applied", PendingWindow + time.Minute, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pending := commands.Response{Text: "may or may not have been applied", Failed: true, Migration: "example", Channel: "C0MIG", Pending: "req-1"}
				cmds := &settlingCommands{stubCommands: stubCommands{resp: pending}, start: time.Now(), appliedAfter: c.after}
				poster := &memPoster{}
				s := &Server{Commands: cmds, Poster: poster, Log: slog.New(slog.DiscardHandler)}
				a := s.run(context.Background(), slog.New(slog.DiscardHandler), commands.Request{UserID: "U1", Text: "rollback example x"})
				if !a.failed {
					t.Fatal("the unknown outcome was not answered as a failure")
				}
				time.Sleep(PendingWindow + time.Minute)
				synctest.Wait()
				poster.mu.Lock()
				defer poster.mu.Unlock()
				if len(poster.posts) != c.posts {
					t.Fatalf("got %d announcements (%q), want %d", len(poster.posts), poster.posts, c.posts)
				}
				if c.posts == 1 && poster.posts[0] != "C0MIG: Update: the rollback of example was applied after all" {
					t.Errorf("announcement: %q", poster.posts[0])
				}
				s.jobs.stop(context.Background())
			})
		})
	}
}

func TestPlainText(t *testing.T) {
	got := PlainText("by <@U0ADMIN> for <!subteam^S0ONCALL|oncall> in <#C0MIG> and <#C0X|ops>")
	if want := "by @U0ADMIN for @S0ONCALL in #C0MIG and #C0X"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
