package checks

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRelay(t *testing.T) {
	const (
		accept  = "250 2.1.5 OK"
		refuse  = "550 5.1.1 Mailbox does not exist"
		tempErr = "451 4.3.0 Try again later"
	)
	domains := []string{"example.org", "example.net"}
	tests := []struct {
		name       string
		phase      string
		rcpt       string
		domains    []string
		want       Status
		wantDetail []string
	}{
		{"cutover, relay closed", PhaseCutover, refuse, domains, Pass,
			[]string{"relay closed: example.org 550 5.1.1 Mailbox does not exist, example.net 550"}},
		{"decommissioned, relay closed", PhaseDecommissioned, refuse, domains[:1], Pass, []string{"relay closed: example.org 550"}},
		{"cutover, still accepting", PhaseCutover, accept, domains, Fail,
			[]string{"new server still accepts unknown recipients in example.org, example.net (250): migration config not removed"}},
		{"cutover, deferred", PhaseCutover, tempErr, domains[:1], Warn, []string{"deferred, not refused: example.org 451"}},
		{"proxied, split delivery", PhaseProxied, accept, domains, Pass, []string{"split delivery active: example.org 250"}},
		{"proxied, refused", PhaseProxied, refuse, domains[:1], Warn,
			[]string{"unknown recipients refused while proxied: split delivery to the source is off (example.org 550"}},
		{"proxied, deferred", PhaseProxied, tempErr, domains[:1], Warn, []string{"deferred while proxied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &mailServer{proto: "smtp", rcpt: tt.rcpt}
			port := m.start(t)
			cfg := Config{SMTPAddress: "127.0.0.1:" + strconv.Itoa(port)}
			res := run1(t, &Runner{}, Target{Phase: tt.phase, Domains: tt.domains}, cfg, IDRelay)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			if res.Observed["rcpt.example.org"] != tt.rcpt {
				t.Errorf("got observed rcpt.example.org=%q, want %q", res.Observed["rcpt.example.org"], tt.rcpt)
			}

			// The session: EHLO, MAIL FROM:<>, one RCPT per domain, RSET,
			// QUIT, and never DATA.
			got := m.received()
			want := []string{"EHLO migrationbot.invalid", "MAIL FROM:<>"}
			for range tt.domains {
				want = append(want, "RCPT")
			}
			want = append(want, "RSET", "QUIT")
			if len(got) != len(want) {
				t.Fatalf("got commands %q, want %q", got, want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("command %d: got %q, want %q", i, got[i], want[i])
				}
			}
			local := res.Observed["probe_local_part"]
			if !strings.HasPrefix(local, "migrationbot-probe-") || len(local) != len("migrationbot-probe-")+12 {
				t.Errorf("got probe local part %q, want migrationbot-probe-<12 hex>", local)
			}
			if got[2] != "RCPT TO:<"+local+"@"+tt.domains[0]+">" {
				t.Errorf("got %q, want RCPT TO:<%s@%s>", got[2], local, tt.domains[0])
			}
		})
	}

	t.Run("unwelcoming greeting", func(t *testing.T) {
		m := &mailServer{proto: "smtp", greeting: "554 5.7.1 no service"}
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover, Domains: domains}, Config{SMTPAddress: "127.0.0.1:" + strconv.Itoa(m.start(t))}, IDRelay)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "unexpected greeting 554 5.7.1 no service")
	})
	t.Run("unreachable", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover, Domains: domains}, Config{SMTPAddress: closedAddr(t)}, IDRelay)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "connection refused")
	})
	t.Run("hanging", func(t *testing.T) {
		start := time.Now()
		cfg := Config{SMTPAddress: startHanging(t).String(), Timeout: 300 * time.Millisecond}
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover, Domains: domains}, cfg, IDRelay)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "read greeting: timed out")
		if took := time.Since(start); took > 600*time.Millisecond {
			t.Errorf("got %v, want about 300ms", took)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		requireStatus(t, run1(t, &Runner{}, Target{Domains: domains}, Config{}, IDRelay), Skip)
		requireStatus(t, run1(t, &Runner{}, Target{}, Config{SMTPAddress: "127.0.0.1:25"}, IDRelay), Skip)
	})
}
