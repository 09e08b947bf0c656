package checks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run1 runs one check through Runner.Run.
func run1(t *testing.T, r *Runner, tg Target, cfg Config, id string) Result {
	t.Helper()
	res := r.Run(context.Background(), tg, cfg, id)
	if len(res) != 1 || res[0].ID != id {
		t.Fatalf("got %v, want one result for %s", res, id)
	}
	return res[0]
}

func TestStatusWordAndLine(t *testing.T) {
	tests := []struct {
		res  Result
		want string
	}{
		{Result{ID: IDDNS, Status: Fail, Detail: "mail.example.org -> 203.0.113.5 (proxy), want 203.0.113.10"},
			"FAIL dns: mail.example.org -> 203.0.113.5 (proxy), want 203.0.113.10"},
		{Result{ID: IDMapping, Status: Pass, Detail: "no account left on old"}, "PASS mapping: no account left on old"},
		{Result{ID: IDRelay, Status: Warn, Detail: "x"}, "WARN relay: x"},
		{Result{ID: IDSource, Status: Skip, Detail: "source_address not set"}, "SKIP source: source_address not set"},
		{Result{ID: IDTLS, Status: Pass}, "PASS tls"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.res.Line(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    Port
		wantErr string
	}{
		{"toml int", int64(993), Port{993, "imaps"}, ""},
		{"int", 25, Port{25, "smtp"}, ""},
		{"all well-known 465", int64(465), Port{465, "submissions"}, ""},
		{"managesieve", int64(4190), Port{4190, "managesieve"}, ""},
		{"https", int64(443), Port{443, "https"}, ""},
		{"string with protocol", "10993/imaps", Port{10993, "imaps"}, ""},
		{"string case and space", " 2525/SMTP ", Port{2525, "smtp"}, ""},
		{"bare well-known string", "587", Port{587, "submission"}, ""},
		{"unknown number", int64(2525), Port{}, `write it as "2525/<protocol>"`},
		{"unknown protocol", "2525/gopher", Port{}, `unknown protocol "gopher"`},
		{"bad number", "x/smtp", Port{}, "not a port number"},
		{"out of range", "70000/smtp", Port{}, "not a port number"},
		{"wrong type", 1.5, Port{}, "want a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePort(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	ps, err := ParsePorts([]any{int64(25), "10993/imaps"})
	if err != nil || len(ps) != 2 || ps[1].String() != "10993/imaps" {
		t.Errorf("got %v, %v, want [25/smtp 10993/imaps]", ps, err)
	}
}

func TestRunOrderUnknownAndSkip(t *testing.T) {
	var r Runner
	got := r.Run(context.Background(), Target{Phase: PhaseProxied}, Config{}, IDSource, "bogus", IDMapping)
	wantIDs := []string{IDSource, "bogus", IDMapping}
	if len(got) != len(wantIDs) {
		t.Fatalf("got %d results, want %d", len(got), len(wantIDs))
	}
	for i, id := range wantIDs {
		if got[i].ID != id {
			t.Errorf("result %d: got id %s, want %s", i, got[i].ID, id)
		}
	}
	requireStatus(t, got[0], Skip)
	requireStatus(t, got[1], Fail)
	requireDetail(t, got[1], "unknown check")
	requireStatus(t, got[2], Skip)
	requireDetail(t, got[2], "proxy_config not set")

	all := r.Run(context.Background(), Target{Phase: PhaseCutover}, Config{})
	if len(all) != len(All) {
		t.Fatalf("got %d results, want %d", len(all), len(All))
	}
	for i, res := range all {
		if res.ID != All[i] {
			t.Errorf("result %d: got id %s, want %s", i, res.ID, All[i])
		}
		if res.Status != Skip {
			t.Errorf("got %s, want SKIP with an empty config", res.Line())
		}
		if res.At.IsZero() || res.Observed == nil {
			t.Errorf("%s: got At %v Observed %v, want both set", res.ID, res.At, res.Observed)
		}
	}
}

func TestRunUnknownPhase(t *testing.T) {
	var r Runner
	res := run1(t, &r, Target{Phase: "limbo"}, Config{}, IDMapping)
	requireStatus(t, res, Fail)
	requireDetail(t, res, `unknown phase "limbo"`)
}

func TestRunNow(t *testing.T) {
	at := time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC)
	r := Runner{Now: func() time.Time { return at }}
	res := run1(t, &r, Target{}, Config{}, IDSource)
	if !res.At.Equal(at) {
		t.Errorf("got At %v, want %v", res.At, at)
	}
}

// hangingSetup points every check at a peer that accepts and never
// answers.
func hangingSetup(t *testing.T) (Target, Config) {
	t.Helper()
	hang := startHanging(t).String()
	_, port, _ := strings.Cut(hang, "127.0.0.1:")
	cli := writeFile(t, "stalwart-cli", "#!/bin/sh\nexec sleep 10\n")
	os.Chmod(cli, 0o755)
	tg := Target{
		PublicHostname: "127.0.0.1", // dns asks the hanging server; direct and tls dial the hanging peer
		NewAddresses:   []string{"127.0.0.1"},
		ProxyAddresses: []string{"127.0.0.1"},
		Domains:        []string{"example.org"},
		Phase:          PhaseCutover,
	}
	cfg := Config{
		ProxyAdminURL:   "https://" + hang,
		ProxyInsecure:   true,
		ProxyConfig:     writeFile(t, "config.toml", proxyConfigStalwart),
		MappingRedisURL: "redis://" + hang,
		DNSServer:       startHangingDNS(t),
		Ports:           []Port{{mustAtoi(t, port), "imaps"}},
		SMTPAddress:     hang,
		StalwartCLI:     cli,
		SourceAddress:   hang,
		Timeout:         300 * time.Millisecond,
	}
	return tg, cfg
}

func TestRunHangingPeersConcurrently(t *testing.T) {
	tg, cfg := hangingSetup(t)
	var r Runner
	start := time.Now()
	got := r.Run(context.Background(), tg, cfg)
	took := time.Since(start)
	if took > 900*time.Millisecond {
		t.Errorf("got %v for 8 checks with 300ms timeouts, want about one timeout", took)
	}
	if len(got) != len(All) {
		t.Fatalf("got %d results, want %d", len(got), len(All))
	}
	for i, res := range got {
		t.Log(res.Line(), res.Took)
		if res.ID != All[i] {
			t.Errorf("result %d: got id %s, want %s", i, res.ID, All[i])
		}
		if res.Status == Pass || res.Status == Skip {
			t.Errorf("got %s, want WARN or FAIL against a hanging peer", res.Line())
		}
		if res.Took > 600*time.Millisecond {
			t.Errorf("%s took %v, want about 300ms", res.ID, res.Took)
		}
	}
	// A hanging source accepts connections: alive, but silent.
	if src := got[len(got)-1]; src.ID != IDSource || src.Status != Warn {
		t.Errorf("got %s, want WARN source", src.Line())
	}
}

func TestRunRespectsContextDeadline(t *testing.T) {
	tg, cfg := hangingSetup(t)
	cfg.Timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var r Runner
	start := time.Now()
	got := r.Run(ctx, tg, cfg)
	if took := time.Since(start); took > 800*time.Millisecond {
		t.Errorf("got %v, want Run to end near the 300ms context deadline", took)
	}
	if len(got) != len(All) {
		t.Fatalf("got %d results, want %d", len(got), len(All))
	}
}

func TestRunGivesUpOnStuckCheck(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := func(*Runner, context.Context, Target, Config) Result {
		<-release // ignores its context
		return Result{Status: Pass}
	}
	quick := func(*Runner, context.Context, Target, Config) Result { return Result{Status: Pass, Detail: "quick"} }
	r := Runner{checks: map[string]checkFunc{"stuck": stuck, "quick": quick}}

	t.Run("check timeout", func(t *testing.T) {
		start := time.Now()
		got := r.Run(context.Background(), Target{}, Config{Timeout: 100 * time.Millisecond}, "stuck", "quick")
		if took := time.Since(start); took > time.Second {
			t.Errorf("got %v, want about 100ms plus grace", took)
		}
		requireStatus(t, got[0], Fail)
		requireDetail(t, got[0], "timed out after")
		requireStatus(t, got[1], Pass)
	})
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		got := r.Run(ctx, Target{}, Config{Timeout: time.Minute}, "quick", "stuck")
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Errorf("got %v, want about 100ms", took)
		}
		requireStatus(t, got[0], Pass)
		requireStatus(t, got[1], Fail)
		requireDetail(t, got[1], "timed out after")
	})
	t.Run("panic", func(t *testing.T) {
		r := Runner{checks: map[string]checkFunc{"boom": func(*Runner, context.Context, Target, Config) Result { panic("boom") }}}
		got := r.Run(context.Background(), Target{}, Config{}, "boom")
		requireStatus(t, got[0], Fail)
		requireDetail(t, got[0], "panicked: boom")
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	p, err := ParsePort(s + "/smtp")
	if err != nil {
		t.Fatal(err)
	}
	return p.Number
}

func TestDocGo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(".", "doc.go"))
	if err != nil || !strings.Contains(string(b), "// Package checks ") {
		t.Errorf("got doc.go %v, want a package comment", err)
	}
}
