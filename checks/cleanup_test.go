package checks

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// NDJSON as stalwart-cli prints it.
const (
	domainsRelaying = `{"id":"d1","name":"example.org","allowRelaying":true}
{"id":"d2","name":"example.net","allowRelaying":true}`
	domainsHalf = `{"id":"d1","name":"example.org","allowRelaying":true}
{"id":"d2","name":"example.net","allowRelaying":false}`
	domainsOff = `{"id":"d1","name":"example.org","allowRelaying":false}
{"id":"d2","name":"example.net"}`
	routePresent      = `"b7"`
	routeObjectOther  = `{"id":"b8","name":"source-old"}`
	strategyMigration = `{"route":{"match":{"0":{"if":"is_local_address(rcpt)","then":"'local'"},"1":{"if":"is_local_domain(rcpt_domain)","then":"'source'"}},"else":"'mx'"}}`
	strategyEscaped   = `{"id":"singleton","route":{"match":{"0":{"if":"is_local_domain(rcpt_domain)","then":"\u0027source\u0027"}},"else":"'mx'"}}`
	strategyDefault   = `{"route":{"else":"'mx'"}}`
)

// fakeCLI writes a stalwart-cli stand-in that answers the three commands of
// the cleanup check (with relay route "source") and fails on anything else
// or without STALWART_URL, like the real one.
func fakeCLI(t *testing.T, domains, routes, strategy string) string {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
if [ -z "$STALWART_URL" ]; then
	echo "error: no server URL: set STALWART_URL or pass --url" >&2
	exit 1
fi
case "$*" in
"query Domain --fields id,name,allowRelaying --json")
	cat <<'END'
%s
END
	;;
"query MtaRoute --where name=source --json")
	cat <<'END'
%s
END
	;;
"get MtaOutboundStrategy --fields route --json")
	cat <<'END'
%s
END
	;;
*)
	echo "error: unexpected arguments: $*" >&2
	exit 2
	;;
esac
`, domains, routes, strategy)
	path := writeFile(t, "stalwart-cli", script)
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCleanup(t *testing.T) {
	env := []string{"STALWART_URL=https://new.internal.example.org", "PATH=" + os.Getenv("PATH")}
	domains := []string{"example.org", "example.net"}
	tests := []struct {
		name                      string
		phase                     string
		domains, routes, strategy string
		want                      Status
		wantDetail                string
		wantObs                   map[string]string
	}{
		{"cutover, all removed", PhaseCutover, domainsOff, "", strategyDefault, Pass, "migration config removed",
			map[string]string{"domains_relaying": "", "relay_route_present": "false", "route_uses_relay": "false", "domains": "2"}},
		{"decommissioned, all removed", PhaseDecommissioned, domainsOff, "", strategyDefault, Pass, "migration config removed", nil},
		{"cutover, everything left", PhaseCutover, domainsRelaying, routePresent, strategyMigration, Fail,
			"route expression uses 'source'; relay route 'source' present; allowRelaying on example.org, example.net",
			map[string]string{"domains_relaying": "example.org,example.net", "relay_route_present": "true", "route_uses_relay": "true"}},
		{"cutover, allowRelaying left on one domain", PhaseCutover, domainsHalf, "", strategyDefault, Fail,
			"allowRelaying on example.org", nil},
		{"cutover, route deleted before the expression", PhaseCutover, domainsOff, "", strategyMigration, Fail,
			"route expression still returns 'source' but the relay route is gone", nil},
		{"escaped quotes in the expression", PhaseCutover, domainsOff, routePresent, strategyEscaped, Fail,
			"route expression uses 'source'; relay route 'source' present", map[string]string{"route_uses_relay": "true"}},
		{"a route with another name does not count", PhaseCutover, domainsOff, routeObjectOther, strategyDefault, Pass,
			"migration config removed", map[string]string{"relay_route_present": "false"}},
		{"proxied, config in place", PhaseProxied, domainsRelaying, routePresent, strategyMigration, Pass, "migration config in place", nil},
		{"proxied, partly removed", PhaseProxied, domainsHalf, routePresent, strategyDefault, Warn,
			"route expression does not use 'source'; allowRelaying off on example.net: split delivery needs it, and a rollback needs it restored", nil},
		{"proxied, fully removed", PhaseProxied, domainsOff, "", strategyDefault, Warn,
			"relay route 'source' missing", nil},
		{"not JSON", PhaseCutover, "id,name\nd1,example.org", "", strategyDefault, Fail, "stalwart-cli query Domain: decode", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{StalwartCLI: fakeCLI(t, tt.domains, tt.routes, tt.strategy)}
			res := run1(t, &Runner{Environ: env}, Target{Phase: tt.phase, Domains: domains}, cfg, IDCleanup)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail)
			for k, v := range tt.wantObs {
				if res.Observed[k] != v {
					t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
				}
			}
		})
	}

	t.Run("cli error", func(t *testing.T) {
		cfg := Config{StalwartCLI: fakeCLI(t, domainsOff, "", strategyDefault)}
		res := run1(t, &Runner{Environ: []string{"PATH=/usr/bin:/bin"}}, Target{Phase: PhaseCutover}, cfg, IDCleanup)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "stalwart-cli query Domain: error: no server URL: set STALWART_URL or pass --url")
	})
	t.Run("other relay route name", func(t *testing.T) {
		cfg := Config{StalwartCLI: fakeCLI(t, domainsOff, "", strategyDefault), RelayRoute: "legacy"}
		res := run1(t, &Runner{Environ: env}, Target{Phase: PhaseCutover}, cfg, IDCleanup)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "stalwart-cli query MtaRoute: error: unexpected arguments: query MtaRoute --where name=legacy --json")
	})
	t.Run("missing executable", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover}, Config{StalwartCLI: "/nonexistent/stalwart-cli"}, IDCleanup)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "run stalwart-cli query Domain")
	})
	t.Run("hanging", func(t *testing.T) {
		cli := writeFile(t, "stalwart-cli", "#!/bin/sh\nsleep 10\n")
		os.Chmod(cli, 0o755)
		start := time.Now()
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover}, Config{StalwartCLI: cli, Timeout: 300 * time.Millisecond}, IDCleanup)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "stalwart-cli query Domain: timed out")
		if took := time.Since(start); took > 700*time.Millisecond {
			t.Errorf("got %v, want about 300ms", took)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{Phase: PhaseCutover}, Config{}, IDCleanup)
		requireStatus(t, res, Skip)
		requireDetail(t, res, "stalwart_cli not set")
	})
}
