package commands

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

const (
	admin    = "U0ADMIN"
	admin2   = "U0ADMIN2"
	operator = "U0OPS"
	nobody   = "U0NOBODY"
	oncall   = "S0ONCALL"
	paged    = "U0PAGED" // member of the oncall group
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

type fixture struct {
	h   *Handler
	rdb redis.UniversalClient
	now time.Time
	dir string
	mu  sync.Mutex
}

type groups map[string][]string

func (g groups) GroupMembers(_ context.Context, id string) ([]string, error) { return g[id], nil }

// mappingFiles writes a proxy config and a mapping table; onSource accounts still point at "old".
func mappingFiles(t *testing.T, dir string, onSource ...string) checks.Config {
	t.Helper()
	cfg := filepath.Join(dir, "config.toml")
	table := filepath.Join(dir, "mappings.tsv")
	write(t, cfg, "[routing]\ndefault_destination = \"old\"\nsmtp_passthrough_destination = \"new\"\n[destination.old]\nhost = \"s\"\n[destination.new]\nhost = \"n\"\n")
	lines := "alice@example.org new\nbob@example.org new\n"
	for _, a := range onSource {
		lines += a + " old\n"
	}
	write(t, table, lines)
	return checks.Config{ProxyConfig: cfg, MappingFile: table, Timeout: 2 * time.Second}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newFixture(t *testing.T, rdb redis.UniversalClient, prefix string) *fixture {
	t.Helper()
	f := &fixture{rdb: rdb, now: t0, dir: t.TempDir()}
	f.h = &Handler{
		Migrations: []*Migration{{
			Name: "example", Channel: "C0MIG", PublicHostname: "mail.example.org", SourceHost: "source.example.org",
			NewAddresses: []string{"203.0.113.10"}, ProxyAddresses: []string{"203.0.113.5"}, Domains: []string{"example.org"},
			ConfidenceDays: 14, Checks: mappingFiles(t, f.dir),
		}},
		Admins:    []string{admin, admin2},
		Operators: []string{operator, oncall},
		Groups:    groups{oncall: {paged}},
		Store:     state.NewStore(rdb, prefix),
		Checker:   &checks.Runner{},
		Now:       f.clock,
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fixture) do(t *testing.T, user, text string) Response {
	t.Helper()
	resp, _ := f.h.Handle(context.Background(), Request{UserID: user, ChannelID: "C0ELSEWHERE", Text: text})
	return resp
}

// ok runs a command that must succeed and returns its text.
func (f *fixture) ok(t *testing.T, user, text string) string {
	t.Helper()
	resp := f.do(t, user, text)
	if resp.Failed {
		t.Fatalf("%s: %s", text, resp.Text)
	}
	return resp.Text
}

func (f *fixture) refused(t *testing.T, user, text, want string) Response {
	t.Helper()
	resp := f.do(t, user, text)
	if !resp.Failed || !strings.Contains(resp.Text, want) {
		t.Fatalf("%s: got failed=%v %q, want a refusal containing %q", text, resp.Failed, resp.Text, want)
	}
	return resp
}

func (f *fixture) phase(t *testing.T) state.Phase {
	t.Helper()
	rec, err := f.h.Store.Get(context.Background(), "example")
	if err != nil {
		t.Fatal(err)
	}
	return rec.Phase
}

func (f *fixture) events(t *testing.T) []state.Entry {
	t.Helper()
	ev, err := f.h.Store.History(context.Background(), "example", 100)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func backends(t *testing.T, fn func(t *testing.T, f *fixture)) {
	t.Run("miniredis", func(t *testing.T) {
		_, rdb := testredis.Mini(t)
		fn(t, newFixture(t, rdb, testredis.Prefix()))
	})
	t.Run("redis-server", func(t *testing.T) {
		rdb, prefix := testredis.Real(t)
		fn(t, newFixture(t, rdb, prefix))
	})
}

func contains(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("answer lacks %q:\n%s", w, text)
		}
	}
}

func TestFlow(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		contains(t, f.ok(t, admin, "init"), "example initialised by <@U0ADMIN>: phase proxied since 2026-12-01 09:00 UTC")
		contains(t, f.ok(t, nobody, "status"), "example: phase proxied", "Since 2026-12-01 09:00 UTC by <@U0ADMIN>", "SKIP mapping: not checked yet")

		f.advance(time.Hour)
		resp := f.do(t, operator, "/migration cutover example")
		if resp.Failed || !resp.Announce || resp.Channel != "C0MIG" {
			t.Fatalf("cutover: %+v", resp)
		}
		contains(t, resp.Text, "example moved to cutover by <@U0OPS>", "earliest decommission 2026-12-15 10:00 UTC",
			"PASS mapping: no account left on old", "Repoint mail.example.org from the proxy (203.0.113.5) to the new deployment (203.0.113.10)",
			`delete the relay route "source"`, "allowRelaying=false on example.org")
		f.refused(t, operator, "cutover", "example: already in cutover (by <@U0OPS> at 2026-12-01 10:00 UTC); nothing changed.")

		f.advance(50 * time.Hour)
		contains(t, f.ok(t, nobody, "status example"), "example: phase cutover, day 3 of 14", "Earliest decommission: 2026-12-15 10:00 UTC (in 11 days 22 hours)",
			"DNS repointed", "PASS mapping", "Last events:", "cutover by <@U0OPS>: proxied -> cutover")

		resp = f.do(t, paged, "rollback example IMAP logins fail")
		if resp.Failed || !resp.Announce {
			t.Fatalf("rollback by a member of the operators' group: %+v", resp)
		}
		contains(t, resp.Text, "rolled back to proxied by <@U0PAGED>: IMAP logins fail", "Start the proxy", "Repoint mail.example.org back to the proxy (203.0.113.5)")
		f.refused(t, operator, "rollback again", "nothing to roll back: already proxied")
		if p := f.phase(t); p != state.Proxied {
			t.Fatalf("phase %s, want proxied", p)
		}
		hist := f.ok(t, nobody, "history")
		contains(t, hist, "last 3 events", "rollback by <@U0PAGED>: cutover -> proxied (IMAP logins fail)", "init by <@U0ADMIN>: none -> proxied")
		contains(t, f.ok(t, nobody, "history 1"), "example: last event:\n  ")
	})
}

func TestCutoverGate(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "gate")
	f.h.Migrations[0].Checks = mappingFiles(t, f.dir, "carol@example.org", "dave@example.org")
	f.ok(t, admin, "init")
	resp := f.refused(t, operator, "cutover", "cutover refused, the source-empty gate failed; nothing changed.")
	contains(t, resp.Text, "FAIL mapping: 2 accounts", "carol@example.org", "/migration cutover example force <reason>")
	if len(resp.Checks) != 1 || resp.Checks[0].Status != checks.Fail {
		t.Errorf("gate results: got %+v", resp.Checks)
	}
	f.refused(t, operator, "cutover force we know", "cutover force needs the admin role")
	f.refused(t, admin, "cutover force", "cutover force needs a reason")
	if p := f.phase(t); p != state.Proxied {
		t.Fatalf("phase %s after refusals, want proxied", p)
	}
	contains(t, f.ok(t, admin, "cutover force carol and dave are shared mailboxes, moved by hand"), "FORCED past a failing gate: carol and dave")
	ev := f.events(t)
	if ev[0].Event != "cutover force" || ev[0].Reason != "carol and dave are shared mailboxes, moved by hand" {
		t.Errorf("forced cutover audit: got %+v", ev[0])
	}
	// The gate's result is kept for status.
	contains(t, f.ok(t, nobody, "status"), "FAIL mapping: 2 accounts")
}

// TestConcurrentCutover: 50 cutover commands at once make exactly one transition.
func TestConcurrentCutover(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		f.ok(t, admin, "init")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var done, already []string
		start := make(chan struct{})
		for range 50 {
			wg.Go(func() {
				<-start
				resp, _ := f.h.Handle(context.Background(), Request{UserID: operator, Text: "cutover"})
				mu.Lock()
				defer mu.Unlock()
				if resp.Failed {
					already = append(already, resp.Text)
				} else {
					done = append(done, resp.Text)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(done) != 1 || len(already) != 49 {
			t.Fatalf("got %d transitions and %d refusals, want 1 and 49", len(done), len(already))
		}
		for _, a := range already {
			if !strings.Contains(a, "already in cutover (by <@U0OPS> at 2026-12-01 09:00 UTC)") {
				t.Fatalf("refusal %q does not say who moved it", a)
			}
		}
		ev := f.events(t)
		if len(ev) != 2 || ev[0].Event != "cutover" {
			t.Fatalf("audit: got %d entries (%+v), want init and one cutover", len(ev), ev)
		}
	})
}

func TestDecommission(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		const phrase = "decommission source.example.org"
		f.ok(t, admin, "init cutover 2026-11-25")
		// Day 7 of 14: refused and recorded.
		f.refused(t, admin, "decommission", "decommission refused, the confidence period runs until 2026-12-09 00:00 UTC (day 7 of 14, 7 days 15 hours left)")
		if ev := f.events(t); ev[0].Result != "refused: confidence period not over" {
			t.Fatalf("early request not audited: %+v", ev[0])
		}
		f.refused(t, operator, "decommission", "decommission needs the admin role")
		if ev := f.events(t); ev[0].Result != "refused: not an admin" || ev[0].By != operator || ev[0].Event != "decommission request" {
			t.Fatalf("an operator's decommission attempt is not audited: %+v", ev[0])
		}
		f.refused(t, admin, "decommission confirm "+phrase, "no decommission is pending")

		f.advance(9 * 24 * time.Hour) // 2026-12-10: the period is over
		resp := f.do(t, admin, "decommission")
		if resp.Failed {
			t.Fatal(resp.Text)
		}
		contains(t, resp.Text, "Decommissioning example is final", "/migration decommission example confirm "+phrase, "until 2026-12-10 09:10 UTC", "only you (<@U0ADMIN>)")

		f.refused(t, admin, "decommission confirm decommission source", "the phrase does not match")
		f.refused(t, admin2, "decommission confirm "+phrase, "requested by <@U0ADMIN>, and only they can confirm it")
		f.advance(11 * time.Minute)
		f.refused(t, admin, "decommission confirm "+phrase, "the phrase expired")
		if p := f.phase(t); p != state.Cutover {
			t.Fatalf("phase %s after refusals, want cutover", p)
		}
		refusals := 0
		for _, e := range f.events(t) {
			if strings.HasPrefix(e.Result, "refused") {
				refusals++
			}
		}
		if refusals != 6 { // early request, not an admin, no challenge, wrong phrase, other user, expired
			t.Errorf("got %d audited refusals, want 6", refusals)
		}

		// Another admin asking meanwhile takes the phrase over, and is told so.
		f.ok(t, admin, "decommission")
		contains(t, f.ok(t, admin2, "decommission"), "This replaces the pending decommission phrase of <@U0ADMIN>")
		f.refused(t, admin, "decommission confirm "+phrase, "requested by <@U0ADMIN2>")
		contains(t, f.ok(t, admin, "decommission"), "This replaces the pending decommission phrase of <@U0ADMIN2>")
		f.advance(time.Minute)
		resp = f.do(t, admin, "decommission example confirm   "+strings.ReplaceAll(phrase, " ", "  "))
		if resp.Failed || !resp.Announce {
			t.Fatalf("confirm: %+v", resp)
		}
		contains(t, resp.Text, "example decommissioned by <@U0ADMIN>. This is final")
		if p := f.phase(t); p != state.Decommissioned {
			t.Fatalf("phase %s, want decommissioned", p)
		}
		f.refused(t, operator, "rollback the new server is down", "decommissioned is final: the source is gone, there is nothing to roll back to")
		f.refused(t, admin, "cutover", "decommissioned is final")
		f.refused(t, admin, "extend 3 more time", "decommissioned is final")
		f.refused(t, admin, "decommission", "already decommissioned")
		contains(t, f.ok(t, nobody, "status"), "example: phase decommissioned", "Final: the source is decommissioned")
	})
}

func TestExtend(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "ext")
	f.ok(t, admin, "init")
	f.refused(t, admin, "extend 7 waiting", "the confidence period starts at cutover")
	f.ok(t, operator, "cutover")
	f.refused(t, operator, "extend 7 waiting", "extend needs the admin role")
	contains(t, f.ok(t, admin, "extend 7 waiting for the quarterly mailing"), "confidence period extended by 7 days to 21", "Earliest decommission: 2026-12-22 09:00 UTC")
	contains(t, f.ok(t, admin, "extend -20 all quiet"), "shortened by 20 days to 1", "Earliest decommission: 2026-12-02 09:00 UTC")
	f.refused(t, admin, "extend -2 too far", "would make it negative")
	if ev := f.events(t); ev[0].Event != "extend -20" || ev[0].Reason != "all quiet" {
		t.Errorf("extend audit: got %+v", ev[0])
	}
}

func TestStateLoss(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.ok(t, admin, "init cutover 2026-11-28T12:00:00Z")
		// Redis loses the record (a restart without persistence, a flush, a failover).
		keys, _ := f.rdb.Keys(ctx, "*{example}:state").Result()
		for _, k := range keys {
			if strings.Contains(k, f.h.Store.Prefix()) {
				f.rdb.Del(ctx, k)
			}
		}
		resp := f.refused(t, nobody, "status", "example: no state in Redis.")
		contains(t, resp.Text, "Redis lost this migration's record", "/migration init example <phase> <since>", "The audit log survived")
		for _, cmd := range []string{"cutover", "rollback dns broke", "decommission", "extend 3 why", "check"} {
			user := admin
			resp := f.refused(t, user, cmd, "example has no state in Redis")
			contains(t, resp.Text, "Nothing changed.", "/migration init example")
		}
		if n, _ := f.rdb.Exists(ctx, f.h.Store.Prefix()+":{example}:state").Result(); n != 0 {
			t.Fatal("a refused command recreated the state")
		}
		f.refused(t, operator, "init cutover 2026-11-28", "init needs the admin role")
		contains(t, f.ok(t, admin, "init cutover 2026-11-28T12:00"), "phase cutover since 2026-11-28 12:00 UTC", "day 3 of 14", "earliest decommission 2026-12-12 12:00 UTC")
		f.refused(t, admin, "init", "already initialised, in phase cutover")
	})
}

func TestBadInput(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "bad")
	f.h.Migrations = append(f.h.Migrations, &Migration{Name: "other", Channel: "C0OTHER", SourceHost: "old.other.org", ConfidenceDays: 7})
	f.ok(t, admin, "init example")
	before := len(f.events(t))
	cases := []struct{ text, want, usage string }{
		{"frobnicate", `Error: unknown subcommand "frobnicate"`, "Subcommands: help, status"},
		{"status", "Error: which migration? name one of: example, other", "Usage: /migration status [migration]"},
		{"status nosuch", `Error: which migration? "nosuch" is not one of: example, other`, "Usage: /migration status"},
		{"rollback example", "Error: rollback needs a reason", "Usage: /migration rollback [migration] <reason>"},
		{"history example many", `Error: n must be a number from 1 to 100, not "many"`, "Usage: /migration history"},
		{"history example 0", "Error: n must be a number from 1 to 100", "Example: /migration history example 20"},
		{"extend example soon reason", `Error: days must be a whole number`, "Usage: /migration extend"},
		{"extend example 5", "Error: extend needs a reason", "Usage: /migration extend"},
		{"init example sideways", `Error: unknown phase "sideways" (want proxied, cutover or decommissioned)`, "Usage: /migration init"},
		{"init example proxied yesterday", "Error: since must be a time like 2026-12-01T09:00:00Z", "Usage: /migration init"},
		{"init example proxied 2030-01-01", "is in the future", "Usage: /migration init"},
		{"cutover example now", `Error: unexpected "now"`, "Usage: /migration cutover"},
		{"decommission example confirm", "Error: decommission confirm needs the phrase", "Usage: /migration decommission"},
		{"rollback example " + strings.Repeat("x", MaxReasonLen+1), "Error: reason too long", "Usage: /migration rollback"},
		{"help nosuch", `no help for "nosuch"`, "Try /migration help"},
	}
	for _, c := range cases {
		t.Run(c.text[:min(len(c.text), 40)], func(t *testing.T) {
			resp := f.refused(t, admin, c.text, c.want)
			contains(t, resp.Text, c.usage)
			if first := strings.SplitN(resp.Text, "\n", 2)[0]; !strings.HasPrefix(first, "Error: ") {
				t.Errorf("first line %q is not the error", first)
			}
		})
	}
	if after := len(f.events(t)); after != before {
		t.Errorf("bad input wrote %d audit entries", after-before)
	}
	if p := f.phase(t); p != state.Proxied {
		t.Errorf("phase %s after bad input", p)
	}
	// A channel bound to a migration needs no name.
	resp, _ := f.h.Handle(context.Background(), Request{UserID: nobody, ChannelID: "C0OTHER", Text: "status"})
	contains(t, resp.Text, "other: no state in Redis")
}

func TestHelp(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "help")
	anyone := f.ok(t, nobody, "help")
	contains(t, anyone, "You are <@U0NOBODY> (no role: read-only commands)", "You may run:\n  /migration help", "/migration status [migration]",
		"Others may run:", "/migration rollback [migration] <reason>", "[operators: <@U0OPS>, <!subteam^S0ONCALL>; admins: <@U0ADMIN>, <@U0ADMIN2>]")
	if strings.Contains(strings.SplitN(anyone, "Others may run:", 2)[0], "/migration cutover") {
		t.Error("help tells a read-only user they may run cutover")
	}
	all := f.ok(t, admin, "help")
	contains(t, all, "You are <@U0ADMIN> (admin)", "/migration init [migration] [phase] [since]")
	if strings.Contains(all, "Others may run") {
		t.Error("an admin is told others may run something")
	}
	for _, s := range Registry {
		contains(t, all, "/migration "+s.Usage, "e.g. /migration "+s.Example)
	}
	contains(t, f.ok(t, nobody, "help decommission"), "/migration decommission [migration] | decommission [migration] confirm <phrase>", "Who: admins: <@U0ADMIN>")
	f.refused(t, nobody, "cutover", "cutover needs the operator role, which you (<@U0NOBODY>) do not have; nothing changed.\nWho may: operators: <@U0OPS>")
}

// TestRedisDown: every command answers within 3 seconds when Redis is down or hangs, says so,
// and the next command after Redis returns works without a restart.
func TestRedisDown(t *testing.T) {
	m, _ := testredis.Mini(t)
	// The client options of production (cmd/migrationbot/redis.go).
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		DialerRetries: 2, MaxRetries: 1, ContextTimeoutEnabled: true, DisableIdentity: true})
	defer rdb.Close()
	f := newFixture(t, rdb, "down")
	f.ok(t, admin, "init")
	m.Close()
	for _, cmd := range []string{"status", "history", "cutover", "rollback x", "decommission", "extend 1 x", "init", "check"} {
		t.Run("down/"+cmd, func(t *testing.T) {
			start := time.Now()
			resp := f.refused(t, admin, cmd, "state store (Redis)")
			if cmd == "rollback x" {
				contains(t, resp.Text, "was not applied: nothing changed", "If you must roll back now, do it by hand", "Start the proxy: systemctl start proxy")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("answered after %v, want under 3s", took)
			}
			if strings.Contains(resp.Text, "\nUsage") {
				t.Errorf("a Redis failure answered with usage: %s", resp.Text)
			}
		})
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	// go-redis stops dialling after repeated failures and probes once a second: wait for that
	// probe (bounded), then the very next commands must work.
	deadline := time.Now().Add(3 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	contains(t, f.ok(t, nobody, "status"), "example: phase proxied")
	f.ok(t, operator, "cutover")

	// A Redis that accepts connections and never answers.
	hung := redis.NewClient(&redis.Options{Addr: testredis.Silent(t), ReadTimeout: time.Second, ContextTimeoutEnabled: true, DisableIdentity: true})
	defer hung.Close()
	f.h.Store = state.NewStore(hung, "down")
	for _, cmd := range []string{"status", "rollback x"} {
		start := time.Now()
		resp := f.refused(t, admin, cmd, "state store (Redis)")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s answered after %v, want under 3s", cmd, took)
		}
		if cmd == "rollback x" {
			contains(t, resp.Text, "did not answer in time", "may or may not have been applied")
			if resp.Pending == "" {
				t.Error("an unknown outcome carries no Pending request id")
			}
		}
	}
}

func Example_mention() {
	fmt.Println(mention("U1"), mention("S2"))
	// Output: <@U1> <!subteam^S2>
}

func TestActionsAndRollbackPreview(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "act")
	ctx := context.Background()
	if _, err := f.h.RollbackPreview(ctx, "example"); err == nil {
		t.Error("preview without state: got no error")
	}
	f.ok(t, admin, "init")
	if got := f.do(t, nobody, "status").Actions; len(got) != 1 || got[0] != ActionCheck {
		t.Errorf("proxied actions: got %v", got)
	}
	if p, _ := f.h.RollbackPreview(ctx, "example"); !strings.Contains(p, "nothing to roll back") {
		t.Errorf("preview in proxied: %q", p)
	}
	f.ok(t, operator, "cutover")
	if got := f.do(t, nobody, "status").Actions; len(got) != 2 || got[1] != ActionRollback {
		t.Errorf("cutover actions: got %v", got)
	}
	p, err := f.h.RollbackPreview(ctx, "example")
	if err != nil || !strings.Contains(p, "example goes back to proxied") || !strings.Contains(p, "Start the proxy") {
		t.Errorf("preview in cutover: %q, %v", p, err)
	}
	if p := f.phase(t); p != state.Cutover {
		t.Errorf("preview changed the phase to %s", p)
	}
	f.advance(15 * 24 * time.Hour)
	if got := f.do(t, nobody, "status").Actions; len(got) != 3 || got[2] != ActionDecommission {
		t.Errorf("actions after the confidence period: got %v", got)
	}
}

// TestRoundTrips: status and a transition take one Redis round trip.
func TestRoundTrips(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		f.ok(t, admin, "init")
		f.ok(t, operator, "cutover") // loads the script
		f.ok(t, operator, "rollback warm-up")
		f.ok(t, nobody, "status")
		hook := &testredis.RoundTrips{}
		f.rdb.AddHook(hook)
		for _, c := range []struct {
			user, text string
			want       int32
		}{
			{nobody, "status", 1},
			{operator, "cutover", 1},
			{operator, "cutover", 1}, // already in cutover: the script's reply says by whom
			{operator, "rollback dns", 1},
			{operator, "rollback again", 1},
			{nobody, "history 5", 1},
		} {
			hook.Reset()
			f.do(t, c.user, c.text)
			if got := hook.Reset(); got != c.want {
				t.Errorf("%s: %d round trips, want %d", c.text, got, c.want)
			}
		}
	})
}

// TestStaleChecksAndRunbook: results judged against another phase are not shown as current, and
// the rollback runbook always says to restore the migration config when it may be gone.
func TestStaleChecksAndRunbook(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "stale")
	ctx := context.Background()
	f.ok(t, admin, "init")
	save := func(rs ...checks.Result) {
		t.Helper()
		if err := f.h.Store.SaveChecks(ctx, "example", encodeChecks(rs)); err != nil {
			t.Fatal(err)
		}
	}
	save(checks.Result{ID: checks.IDDNS, Status: checks.Pass, Detail: "mail.example.org -> 203.0.113.5 (proxy)", At: t0, Phase: "proxied"},
		checks.Result{ID: checks.IDCleanup, Status: checks.Pass, Detail: "migration config in place", At: t0, Phase: "proxied"})
	f.ok(t, operator, "cutover")
	st := f.ok(t, nobody, "status")
	contains(t, st, "SKIP dns: not checked since the move to cutover (last 0s ago, while proxied)")
	if strings.Contains(st, "PASS dns") {
		t.Errorf("a proxied-phase DNS result is shown as current:\n%s", st)
	}
	// Cleanup never checked in cutover (only its proxied "in place"): the restore step is there.
	rb := f.ok(t, operator, "rollback mail bounces")
	contains(t, rb, "1. If the migration config was already removed (cutover step 4), first restore the migration configuration",
		"The source's reachability was not checked since the cutover")

	f.ok(t, operator, "cutover")
	save(checks.Result{ID: checks.IDCleanup, Status: checks.Pass, Detail: "migration config removed", At: t0, Phase: "cutover"},
		checks.Result{ID: checks.IDSource, Status: checks.Fail, Detail: "source unreachable: rollback has no fallback", At: t0, Phase: "cutover"})
	rb = f.ok(t, operator, "rollback mail bounces again")
	contains(t, rb, "1. First, restore the migration configuration", "(The last check saw it removed.)",
		"WARNING: the source looked unreachable at the last check", "source unreachable: rollback has no fallback")
}

func TestCutoverGateNotConfigured(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "nogate")
	f.h.Migrations[0].Checks = checks.Config{}
	f.ok(t, admin, "init")
	contains(t, f.ok(t, operator, "cutover"), "SKIP mapping", "WARNING: the source-empty gate is not configured")
	if ev := f.events(t); ev[0].Reason != "source-empty gate not configured: nothing was checked" {
		t.Errorf("audit reason: got %q", ev[0].Reason)
	}
}

type failingGroups struct{ calls atomic.Int32 }

func (g *failingGroups) GroupMembers(context.Context, string) ([]string, error) {
	g.calls.Add(1)
	return nil, fmt.Errorf("usergroups.users.list: slack is down")
}

// TestGroupLookupFails: an on-call member of an operators' group is told why they are refused
// when Slack cannot say who is in it, and read-only commands do not ask.
func TestGroupLookupFails(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "groups")
	g := &failingGroups{}
	f.h.Groups = g
	f.ok(t, admin, "init")
	f.ok(t, paged, "status")
	f.ok(t, paged, "history")
	if n := g.calls.Load(); n != 0 {
		t.Errorf("read-only commands looked up user groups %d times", n)
	}
	resp := f.refused(t, paged, "cutover", "cutover needs the operator role")
	contains(t, resp.Text, "Slack did not answer when asked who is in <!subteam^S0ONCALL>: if you are, try again in a moment")
}

func TestLocalTime(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for spec, want := range map[string]string{
		"CRON_TZ=Europe/Berlin 0 9 * * *": " (09:00 Europe/Berlin)",
		"TZ=America/New_York 0 3 * * *":   " (03:00 America/New_York)",
		"0 9 * * *":                       "",
		"CRON_TZ=UTC 0 9 * * *":           "",
		"CRON_TZ=Nowhere/Land 0 9 * * *":  "",
	} {
		if got := localTime(at, spec); got != want {
			t.Errorf("localTime(%q): got %q, want %q", spec, got, want)
		}
	}
}

func TestOneMigrationUnknownName(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "one")
	f.ok(t, admin, "init")
	resp := f.refused(t, nobody, "status nosuch", `Error: "nosuch" is not a configured migration (example)`)
	contains(t, resp.Text, "Usage: /migration status")
	contains(t, f.ok(t, nobody, "status EXAMPLE"), "example: phase proxied")
	contains(t, f.ok(t, nobody, `status "example"`), "example: phase proxied")
	// A mistyped name answers the same way whatever the subcommand.
	for _, cmd := range []string{"cutover nosuch", "decommission nosuch", "history nosuch 3", "extend nosuch 3 why", "check nosuch"} {
		resp := f.refused(t, admin, cmd, `Error: "nosuch" is not a configured migration (example)`)
		contains(t, resp.Text, "Usage: /migration "+strings.Fields(cmd)[0])
	}
	f.refused(t, admin, "init nosuch", `Error: "nosuch" is neither a phase (proxied, cutover, decommissioned) nor a configured migration (example)`)
	// A word where a number belongs, with no number after it, may be either: the answer says so.
	f.refused(t, admin, "extend ten days", `Error: "ten" is neither a number of days nor a configured migration (example)`)
	f.refused(t, nobody, "history last", `Error: "last" is neither a number of events nor a configured migration (example)`)
	// Named, the same word is just unexpected.
	f.refused(t, admin, "cutover example nosuch", `Error: unexpected "nosuch"`)
	if p := f.phase(t); p != state.Proxied {
		t.Fatalf("phase %s after bad input", p)
	}
}

// TestOperatorMistakes: what a hurried operator gets wrong is refused with what to do instead.
func TestOperatorMistakes(t *testing.T) {
	backends(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.refused(t, admin, "init cutover 1970-01-01T00:00:00Z", `since "1970-01-01T00:00:00Z" is before 2000`)
		f.refused(t, admin, "init decommissioned 2026-11-01", "init decommissioned is final")
		resp := f.refused(t, admin, "init decommissioned 2026-11-01 confirm decommission source", "/migration init example decommissioned 2026-11-01T00:00:00Z confirm decommission source.example.org")
		if n, _ := f.rdb.Exists(ctx, f.h.Store.Prefix()+":{example}:state").Result(); n != 0 {
			t.Fatalf("a refused init wrote state: %s", resp.Text)
		}

		f.ok(t, admin, "init")
		f.refused(t, admin, "init", "already initialised, in phase proxied since 2026-12-01 09:00 UTC (by <@U0ADMIN>); nothing changed. See /migration status example.")
		// The gate passes: force is not needed, and the cutover is a normal one that keeps the reason.
		text := f.ok(t, admin, "cutover force change window closes")
		contains(t, text, "moved to cutover", "force was not needed: recorded as a normal cutover", "PASS mapping")
		if strings.Contains(text, "FORCED") {
			t.Errorf("a passing gate was reported forced: %s", text)
		}
		if ev := f.events(t)[0]; ev.Event != "cutover" || ev.Reason != "source-empty gate passed; force not needed: change window closes" {
			t.Errorf("audit: %+v", ev)
		}
		for _, empty := range []string{`rollback ""`, "rollback ''", "rollback -- ...", `extend 3 ""`} {
			f.refused(t, admin, empty, "needs a reason")
		}
		if p := f.phase(t); p != state.Cutover {
			t.Fatalf("phase %s after empty reasons", p)
		}
		f.refused(t, admin, "decommission confirm decommission source.example.org", "no decommission is pending, and none can be before the confidence period ends at 2026-12-15 09:00 UTC")
		f.refused(t, operator, "decommission confirm decommission source.example.org", "decommission needs the admin role")
		if ev := f.events(t)[0]; ev.Event != "decommission" || ev.Result != "refused: not an admin" || ev.By != operator {
			t.Errorf("an operator's confirm attempt is not audited: %+v", ev)
		}
		f.ok(t, admin, "extend -3 shorter") // 11 days
		f.advance(12 * 24 * time.Hour)
		contains(t, f.ok(t, admin, "extend -1 the new server held"), "decommissioning is possible now (/migration decommission example)")
		f.refused(t, operator, "decommission", "needs the admin role")

		// State lost with the audit log kept: a bare init says where the log says it was.
		keys, _ := f.rdb.Keys(ctx, f.h.Store.Prefix()+":{example}:state").Result()
		f.rdb.Del(ctx, keys...)
		resp = f.refused(t, admin, "init", "its state is missing but its audit log survived, and the last transition moved it to cutover at 2026-12-01 09:00 UTC")
		contains(t, resp.Text, "/migration init example cutover 2026-12-01T09:00:00Z")
		contains(t, f.ok(t, admin, "init example cutover 2026-12-01T09:00:00Z"), "phase cutover since 2026-12-01 09:00 UTC")
	})
}

// TestSettle: a change answered "may or may not have been applied" is found applied later, and
// the follow-up announces it with what to do next.
func TestSettle(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "settle")
	ctx := context.Background()
	f.ok(t, admin, "init")
	f.ok(t, operator, "cutover")
	if _, applied, err := f.h.Settle(ctx, "example", "req-rollback"); err != nil || applied {
		t.Fatalf("before the rollback: applied=%v, %v", applied, err)
	}
	// The rollback whose answer was lost.
	f.h.Handle(ctx, Request{UserID: operator, Text: "rollback dns", RequestID: "req-rollback"})
	resp, applied, err := f.h.Settle(ctx, "example", "req-rollback")
	if err != nil || !applied || !resp.Announce || resp.Channel != "C0MIG" {
		t.Fatalf("after the rollback: %+v, applied=%v, %v", resp, applied, err)
	}
	contains(t, resp.Text, "Update: the rollback of example by <@U0OPS> at 2026-12-01 09:00 UTC was applied after all", "cutover -> proxied", "Rollback runbook:", "Start the proxy")
	// Changed since: the follow-up says so instead of a stale runbook.
	f.ok(t, operator, "cutover")
	resp, applied, _ = f.h.Settle(ctx, "example", "req-rollback")
	if !applied || strings.Contains(resp.Text, "Rollback runbook") {
		t.Fatalf("after a later cutover: applied=%v %q", applied, resp.Text)
	}
	contains(t, resp.Text, "It has been changed since: now cutover")
}
