package checks

import (
	"testing"
	"time"
)

func TestDNS(t *testing.T) {
	zone := map[string][]string{
		"mail.example.org":    {"203.0.113.10", "2001:db8::10"},
		"proxied.example.org": {"203.0.113.5"},
		"mixed.example.org":   {"203.0.113.10", "203.0.113.5"},
		"empty.example.org":   {},
	}
	server := startDNS(t, zone, 300)
	newAddrs := []string{"203.0.113.10", "2001:db8::10"}
	proxyAddrs := []string{"203.0.113.5"}

	tests := []struct {
		name       string
		host       string
		phase      string
		newAddrs   []string
		proxyAddrs []string
		want       Status
		wantDetail string
		wantObs    map[string]string
	}{
		{"cutover on new", "mail.example.org", PhaseCutover, newAddrs, proxyAddrs, Pass,
			"mail.example.org -> 203.0.113.10 (new), 2001:db8::10 (new), TTL 300s",
			map[string]string{"addresses": "203.0.113.10,2001:db8::10", "ttl": "300"}},
		{"cutover still on proxy", "proxied.example.org", PhaseCutover, newAddrs, proxyAddrs, Fail,
			"proxied.example.org -> 203.0.113.5 (proxy), want 203.0.113.10, 2001:db8::10", nil},
		{"decommissioned mixed", "mixed.example.org", PhaseDecommissioned, newAddrs, proxyAddrs, Fail,
			"-> 203.0.113.10 (new), 203.0.113.5 (proxy), want", nil},
		{"proxied on proxy", "proxied.example.org", PhaseProxied, newAddrs, proxyAddrs, Pass,
			"proxied.example.org -> 203.0.113.5 (proxy), TTL 300s", nil},
		{"proxied already on new", "mail.example.org", PhaseProxied, newAddrs, proxyAddrs, Fail,
			"want 203.0.113.5", nil},
		{"unknown address", "mail.example.org", PhaseProxied, newAddrs, []string{"198.51.100.1"}, Fail,
			"203.0.113.10 (new)", nil},
		{"no records", "empty.example.org", PhaseCutover, newAddrs, proxyAddrs, Fail,
			"empty.example.org has no A or AAAA record", nil},
		{"nxdomain", "nope.example.org", PhaseCutover, newAddrs, proxyAddrs, Fail,
			"no A or AAAA record", nil},
		{"no new addresses", "mail.example.org", PhaseCutover, nil, proxyAddrs, Skip, "new_addresses not set", nil},
		{"no proxy addresses", "mail.example.org", PhaseProxied, newAddrs, nil, Skip, "proxy_addresses not set", nil},
		{"no hostname", "", PhaseProxied, newAddrs, proxyAddrs, Skip, "public_hostname not set", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := Target{PublicHostname: tt.host, NewAddresses: tt.newAddrs, ProxyAddresses: tt.proxyAddrs, Phase: tt.phase}
			res := run1(t, &Runner{}, tg, Config{DNSServer: server}, IDDNS)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail)
			for k, v := range tt.wantObs {
				if res.Observed[k] != v {
					t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
				}
			}
		})
	}

	t.Run("system resolver from resolv.conf", func(t *testing.T) {
		// The system resolver's servers listen on port 53, which a test
		// cannot bind: check which servers would be asked.
		rc := writeFile(t, "resolv.conf", "# test\nnameserver 192.0.2.1\nnameserver 2001:db8::53\noptions ndots:1\n")
		servers, err := (&Runner{ResolvConf: rc}).nameservers(Config{})
		want := []string{"192.0.2.1:53", "[2001:db8::53]:53"}
		if err != nil || len(servers) != 2 || servers[0] != want[0] || servers[1] != want[1] {
			t.Fatalf("got %v, %v, want %v", servers, err, want)
		}
		_, err = (&Runner{ResolvConf: "/nonexistent/resolv.conf"}).nameservers(Config{})
		if err == nil {
			t.Errorf("got no error for a missing resolv.conf, want one")
		}
	})
	t.Run("dns server without port", func(t *testing.T) {
		servers, _ := (&Runner{}).nameservers(Config{DNSServer: "192.0.2.53"})
		if len(servers) != 1 || servers[0] != "192.0.2.53:53" {
			t.Errorf("got %v, want [192.0.2.53:53]", servers)
		}
	})
	t.Run("hanging server", func(t *testing.T) {
		tg := Target{PublicHostname: testHost, NewAddresses: newAddrs, Phase: PhaseCutover}
		start := time.Now()
		res := run1(t, &Runner{}, tg, Config{DNSServer: startHangingDNS(t), Timeout: 300 * time.Millisecond}, IDDNS)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "timed out")
		if took := time.Since(start); took > 600*time.Millisecond {
			t.Errorf("got %v, want about 300ms", took)
		}
	})
}
