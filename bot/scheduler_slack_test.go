package bot

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

// rateLimitedSlack is a Slack Web API that answers chat.postMessage with HTTP 429 (Retry-After: 1)
// the first time and posts after that. It records every request and every posted message.
type rateLimitedSlack struct {
	mu       sync.Mutex
	requests []time.Time
	posted   []rlPost
}

type rlPost struct {
	channel, text, ts string
	at                time.Time
}

func (f *rateLimitedSlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/chat.postMessage" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, time.Now())
	if len(f.requests) == 1 {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	ts := "1765000000.00020" + string(rune('0'+len(f.posted)))
	f.posted = append(f.posted, rlPost{channel: r.Form.Get("channel"), text: r.Form.Get("text"), ts: ts, at: time.Now()})
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": r.Form.Get("channel"), "ts": ts})
}

// TestSchedulerSlackRateLimited posts a caught-up report through the real SlackPoster into a fake
// Web API that rate-limits the first request: one message, posted after the Retry-After wait,
// and its ts recorded in the claim. Real time (httptest needs real sockets): about one second.
func TestSchedulerSlackRateLimited(t *testing.T) {
	api := &rateLimitedSlack{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	_, rdb := testredis.Mini(t)
	store := state.NewStore(rdb, "t")
	m := &commands.Migration{Name: "example", Channel: "C0MIG", ReportSchedule: "0 9 * * *", ConfidenceDays: 14}
	h := &commands.Handler{Migrations: []*commands.Migration{m}, Store: store}
	ctx := context.Background()
	if _, err := store.Apply(ctx, "example", state.Change{From: state.None,
		Next:  state.Record{Phase: state.Proxied, Since: time.Now(), By: "U0ADMIN"},
		Audit: state.Entry{At: time.Now(), By: "U0ADMIN", Event: "init"}}); err != nil {
		t.Fatal(err)
	}
	poster := NewSlackPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/")))
	s, err := NewScheduler(SchedulerConfig{
		Migrations: []ScheduledMigration{{Name: "example", Channel: "C0MIG", Schedule: m.ReportSchedule}},
		Reports:    h, Poster: poster, Ledger: store, Owner: "schedReplica-a",
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()

	// The latest 09:00 UTC is always within the last 24 hours: the start catches it up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		api.mu.Lock()
		n := len(api.posted)
		api.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a real server, not waiting for a clock
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}

	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.requests) != 2 || len(api.posted) != 1 {
		t.Fatalf("requests %d, posted %d: want 2 (one 429, one post) and 1", len(api.requests), len(api.posted))
	}
	p := api.posted[0]
	if waited := p.at.Sub(api.requests[0]); waited < time.Second {
		t.Errorf("posted %s after the 429, want at least the 1s Retry-After", waited)
	}
	if p.channel != "C0MIG" || !strings.HasPrefix(p.text, "example: phase proxied: progress report") {
		t.Errorf("posted %q into %s, want the progress report into C0MIG", schedFirstLine(p.text), p.channel)
	}
	sched, _ := ParseSchedule(m.ReportSchedule)
	occ := latest(sched, time.Now())
	c, err := store.GetReportClaim(ctx, "example", occ)
	if err != nil || c.Owner != "schedReplica-a" || c.TS != p.ts {
		t.Errorf("claim: got %+v, %v; want owner schedReplica-a, ts %s", c, err, p.ts)
	}
}
