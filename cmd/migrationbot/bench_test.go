package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/migrationbot/migrationbot/bot"
	"github.com/migrationbot/migrationbot/commands"
)

// countHook counts what a go-redis client sends: round trips (a command, or a whole pipeline)
// and commands, leaving out the HELLO of a new connection (as testredis.RoundTrips does).
type countHook struct{ trips, cmds atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" {
			h.trips.Add(1)
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func (h *countHook) reset() (trips, cmds int64) { return h.trips.Swap(0), h.cmds.Swap(0) }

// countingApp is the wired program (newApp) on the embedded Redis, with a counting hook, and
// the example migration initialised. The checks are the example's: the mapping file, every
// account moved, so the cutover gate passes.
func countingApp(tb testing.TB) (*app, *countHook) {
	tb.Helper()
	example, err := filepath.Abs("../../examples/migrationbot.toml")
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := os.ReadFile(example)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(raw), `= "proxy/`, `= "`+filepath.Dir(example)+`/proxy/`)
	path := filepath.Join(tb.TempDir(), "migrationbot.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	getenv := func(string) string { return "" } // no REDIS_URL: the embedded Redis
	a, err := newApp(context.Background(), path, getenv, io.Discard, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.close)
	h := &countHook{}
	a.rdb.AddHook(h)
	if resp, _ := a.handler.Handle(context.Background(), commands.Request{UserID: "U0ADMIN", Text: "init"}); resp.Failed {
		tb.Fatalf("init: %s", resp.Text)
	}
	return a, h
}

func handle(tb testing.TB, a *app, user, text, want string) {
	tb.Helper()
	resp, err := a.handler.Handle(context.Background(), commands.Request{UserID: user, ChannelID: "C0OPS", Text: text})
	if err != nil || !strings.Contains(resp.Text, want) {
		tb.Fatalf("%s: %v %q, want it to contain %q", text, err, resp.Text, want)
	}
}

// TestRedisRoundTrips measures the Redis round trips (and commands) of status, cutover and
// rollback, steady state (the scripts already loaded): one round trip each.
func TestRedisRoundTrips(t *testing.T) {
	a, h := countingApp(t)
	// One cycle first, so EVALSHA finds its scripts loaded.
	handle(t, a, "U0OPS1", "cutover", "moved to cutover")
	handle(t, a, "U0OPS1", "rollback warming up", "rolled back")
	for _, tc := range []struct {
		text, want string
		user       string
		maxTrips   int64
	}{
		{"status", "example: phase proxied", "U0VIEW", 1},
		{"cutover", "moved to cutover", "U0OPS1", 1}, // the gate, then the transition with its results
		{"rollback measuring", "rolled back", "U0OPS1", 1},
		{"history", "events", "U0VIEW", 1},
	} {
		h.reset()
		handle(t, a, tc.user, tc.text, tc.want)
		trips, cmds := h.reset()
		t.Logf("%-20s %d round trip(s), %d command(s) (target: 1 round trip)", tc.text, trips, cmds)
		if trips > tc.maxTrips {
			t.Errorf("%s: %d Redis round trips, want at most %d", tc.text, trips, tc.maxTrips)
		}
	}
}

func benchHandle(b *testing.B, texts ...[2]string) {
	a, h := countingApp(b)
	ctx := context.Background()
	h.reset()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		t := texts[n%len(texts)]
		n++
		resp, _ := a.handler.Handle(ctx, commands.Request{UserID: t[0], ChannelID: "C0OPS", Text: t[1]})
		if resp.Failed {
			b.Fatalf("%s: %s", t[1], resp.Text)
		}
	}
	trips, cmds := h.reset()
	b.ReportMetric(float64(trips)/float64(n), "redis-trips/op")
	b.ReportMetric(float64(cmds)/float64(n), "redis-cmds/op")
}

// BenchmarkHandleStatus is status through the command handler on the embedded Redis (miniredis:
// the Redis part is in-process, so this is mostly the handler's own cost).
func BenchmarkHandleStatus(b *testing.B) {
	benchHandle(b, [2]string{"U0VIEW", "status"})
}

// BenchmarkHandleCutoverRollback alternates cutover (with the mapping-file gate) and rollback.
func BenchmarkHandleCutoverRollback(b *testing.B) {
	benchHandle(b, [2]string{"U0OPS1", "cutover"}, [2]string{"U0OPS1", "rollback benchmark"})
}

func BenchmarkParse(b *testing.B) {
	names := []string{"example", "other"}
	for b.Loop() {
		if _, err := commands.Parse("/migration rollback example IMAP logins failing on the new server", names); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	body := []byte("token=x&team_id=T0TEAM&channel_id=C0OPS&user_id=U0VIEW&command=%2Fmigration&text=status+example&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1%2F2%2F3")
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	hdr := http.Header{}
	hdr.Set("X-Slack-Request-Timestamp", ts)
	hdr.Set("X-Slack-Signature", bot.Sign(testSecret, ts, body))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := bot.Verify(testSecret, hdr, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderStatus renders a cutover status (checklist, events, buttons) into Block Kit.
func BenchmarkRenderStatus(b *testing.B) {
	a, _ := countingApp(b)
	handle(b, a, "U0OPS1", "cutover", "moved to cutover")
	resp, err := a.handler.Handle(context.Background(), commands.Request{UserID: "U0VIEW", Text: "status"})
	if err != nil || resp.Failed {
		b.Fatalf("status: %v %q", err, resp.Text)
	}
	for b.Loop() {
		if m := bot.Render(resp); m.Text == "" {
			b.Fatal("empty render")
		}
	}
}

// BenchmarkServeStatus is the whole path of a signed `/migration status` over loopback HTTP:
// run serve in-process, a real redis-server (started here), keep-alive connections. Profile it
// with -cpuprofile to see where a status request goes.
func BenchmarkServeStatus(b *testing.B) {
	rs := startRedisServer(b, drillPort(b))
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "migrationbot.toml")
	if err := os.WriteFile(cfgPath, []byte(drillConfig("bench")), 0o600); err != nil {
		b.Fatal(err)
	}
	vars := map[string]string{
		"SLACK_SIGNING_SECRET": testSecret, "SLACK_BOT_TOKEN": testToken, "SLACK_API_URL": "http://127.0.0.1:1/api/",
		"MIGRATIONBOT_CONFIG": cfgPath, "MIGRATIONBOT_ADDR": "127.0.0.1:0", "REDIS_URL": "redis://" + rs.addr() + "/0",
	}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"serve"}, func(k string) string { return vars[k] }, strings.NewReader(""), stdout, stderr)
	}()
	b.Cleanup(func() { cancel(); <-errc })
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := listeningRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		}
		if time.Now().After(deadline) {
			b.Fatalf("serve did not start:\n%s", stderr.String())
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	post := func(user, text string) string {
		body := "user_id=" + user + "&channel_id=C0OPS&command=%2Fmigration&response_url=http%3A%2F%2F127.0.0.1%3A1%2Fr&text=" + strings.ReplaceAll(text, " ", "+")
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/slack/commands", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", bot.Sign(testSecret, ts, []byte(body)))
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	if got := post("U0ADMIN", "init"); !strings.Contains(got, "drill") {
		b.Fatalf("init: %s", got)
	}
	b.SetParallelism(4) // 4 x GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got := post("U0VIEW", "status"); !strings.Contains(got, "drill: phase proxied") {
				b.Errorf("status: %.200s", got)
				return
			}
		}
	})
}
