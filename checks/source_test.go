package checks

import (
	"strconv"
	"testing"
	"time"
)

func TestSource(t *testing.T) {
	imap := &mailServer{proto: "imap", greeting: "* OK Dovecot ready."}
	alive := "127.0.0.1:" + strconv.Itoa(imap.start(t))
	gone := closedAddr(t)
	silent := startHanging(t).String()

	tests := []struct {
		name       string
		phase      string
		addr       string
		want       Status
		wantDetail string
	}{
		{"proxied, alive", PhaseProxied, alive, Pass, "source answers (fallback available): * OK Dovecot ready."},
		{"cutover, alive", PhaseCutover, alive, Pass, "source answers (fallback available)"},
		{"cutover, gone", PhaseCutover, gone, Fail, "source unreachable: rollback has no fallback (connect: connection refused)"},
		{"proxied, gone", PhaseProxied, gone, Fail, "source unreachable"},
		{"cutover, silent", PhaseCutover, silent, Warn, "accepts connections on"},
		{"decommissioned, gone", PhaseDecommissioned, gone, Pass, "source gone"},
		{"decommissioned, alive", PhaseDecommissioned, alive, Warn, "source still answers after decommissioning"},
		{"decommissioned, silent", PhaseDecommissioned, silent, Warn, "source still answers after decommissioning"},
		{"malformed address", PhaseCutover, "source.internal.example.org", Fail, "want host:port"},
		{"not configured", PhaseCutover, "", Skip, "source_address not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := run1(t, &Runner{}, Target{Phase: tt.phase}, Config{SourceAddress: tt.addr, Timeout: 300 * time.Millisecond}, IDSource)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail)
			if took := time.Since(start); took > 600*time.Millisecond {
				t.Errorf("took %v, want at most about the 300ms timeout", took)
			}
		})
	}
	t.Run("observed", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover}, Config{SourceAddress: alive}, IDSource)
		if res.Observed["greeting"] != "* OK Dovecot ready." || res.Observed["peer"] != "127.0.0.1" || res.Observed["address"] != alive {
			t.Errorf("got observed %v, want greeting, peer and address", res.Observed)
		}
	})
}
