package checks

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"
)

var allProtocols = []string{"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "managesieve", "https"}

// startAll starts one fake server per protocol with the certificate of
// tlsConfig and returns the ports.
func startAll(t *testing.T, tlsConfig *tls.Config) []Port {
	var ports []Port
	for _, proto := range allProtocols {
		m := &mailServer{proto: proto, tls: tlsConfig}
		ports = append(ports, Port{m.start(t), proto})
	}
	return ports
}

func TestDirect(t *testing.T) {
	ca := newCA(t)
	valid := ca.validFor(t, testHost, 365*24*time.Hour)
	dnsServer := startDNS(t, map[string][]string{testHost: {"127.0.0.1"}}, 60)
	all := startAll(t, valid)
	smtpPort := all[0]
	bad := &mailServer{proto: "smtp", greeting: "554 5.7.1 go away"}
	badPort := Port{bad.start(t), "smtp"}
	closedPort := Port{mustAtoi(t, strings.TrimPrefix(closedAddr(t), "127.0.0.1:")), "imap"}
	hangPort := Port{portOf(t, startHanging(t)), "imap"}
	hangTLSPort := Port{portOf(t, startHanging(t)), "imaps"}

	newAt := func(phase string) Target {
		return Target{PublicHostname: testHost, NewAddresses: []string{"127.0.0.1"}, ProxyAddresses: []string{"203.0.113.5"}, Phase: phase}
	}
	tests := []struct {
		name       string
		target     Target
		cfg        Config
		want       Status
		wantDetail []string
	}{
		{"cutover, every protocol from new", newAt(PhaseCutover), Config{DNSServer: dnsServer, Ports: all},
			Pass, []string{"mail.example.org: 9 ports answer from 127.0.0.1 (new)"}},
		{"proxied, but the peer is new", newAt(PhaseProxied), Config{DNSServer: dnsServer, Ports: []Port{smtpPort}},
			Fail, []string{"peer 127.0.0.1 (new), want proxy"}},
		{"no expected addresses: reachability only", Target{PublicHostname: testHost, Phase: PhaseCutover},
			Config{DNSServer: dnsServer, Ports: []Port{smtpPort}}, Pass, []string{"127.0.0.1 (unknown)"}},
		{"closed port", newAt(PhaseCutover), Config{DNSServer: dnsServer, Ports: []Port{smtpPort, closedPort}},
			Fail, []string{"1 of 2 ports failed: " + closedPort.String() + " connect:", "connection refused"}},
		{"unwelcoming greeting", newAt(PhaseCutover), Config{DNSServer: dnsServer, Ports: []Port{badPort}},
			Fail, []string{`unexpected greeting "554 5.7.1 go away"`}},
		{"hanging peers", newAt(PhaseCutover), Config{DNSServer: dnsServer, Ports: []Port{hangPort, hangTLSPort}, Timeout: 300 * time.Millisecond},
			Fail, []string{hangPort.String() + " read greeting: timed out", hangTLSPort.String() + " tls handshake: timed out"}},
		{"name does not resolve", Target{PublicHostname: "nope.example.org", Phase: PhaseCutover},
			Config{DNSServer: dnsServer, Ports: []Port{smtpPort}}, Fail, []string{"resolve nope.example.org"}},
		{"no ports", newAt(PhaseCutover), Config{DNSServer: dnsServer}, Skip, []string{"ports not set"}},
		{"no hostname", Target{Phase: PhaseCutover}, Config{Ports: []Port{smtpPort}}, Skip, []string{"public_hostname not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := run1(t, &Runner{}, tt.target, tt.cfg, IDDirect)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			if took := time.Since(start); took > 700*time.Millisecond {
				t.Errorf("took %v, want well under a second", took)
			}
		})
	}

	t.Run("observed greetings and peers", func(t *testing.T) {
		res := run1(t, &Runner{}, newAt(PhaseCutover), Config{DNSServer: dnsServer, Ports: all}, IDDirect)
		want := map[string]string{
			all[0].String() + ".greeting": "220 mx.test ESMTP Stalwart at your service",
			all[2].String() + ".greeting": "220 mx.test ESMTP Stalwart at your service",
			all[4].String() + ".greeting": "* OK [CAPABILITY IMAP4rev2 STARTTLS] Stalwart IMAP4rev2 at your service.",
			all[6].String() + ".greeting": "+OK Stalwart POP3 at your service.",
			all[7].String() + ".greeting": `"IMPLEMENTATION" "Stalwart"`,
			all[8].String() + ".peer":     "127.0.0.1",
			"peers":                       "127.0.0.1 (new)",
		}
		for k, v := range want {
			if res.Observed[k] != v {
				t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
			}
		}
	})
}

func TestTLS(t *testing.T) {
	ca := newCA(t)
	now := time.Now()
	year := 365 * 24 * time.Hour
	valid := ca.validFor(t, testHost, year)
	expired := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, testHost, now.Add(-2*year), now.Add(-24*time.Hour))}}
	wrongName := ca.validFor(t, "other.example.org", year)
	expiring := ca.validFor(t, testHost, 5*24*time.Hour+time.Hour)
	dnsServer := startDNS(t, map[string][]string{testHost: {"127.0.0.1"}}, 60)

	all := startAll(t, valid)
	start := func(proto string, c *tls.Config) Port {
		m := &mailServer{proto: proto, tls: c}
		return Port{m.start(t), proto}
	}
	expiredIMAPS := start("imaps", expired)
	expiredSMTP := start("smtp", expired)
	wrongNameSubmission := start("submission", wrongName)
	expiringPOP3 := start("pop3", expiring)
	hangPort := Port{portOf(t, startHanging(t)), "smtp"}
	closedPort := Port{mustAtoi(t, strings.TrimPrefix(closedAddr(t), "127.0.0.1:")), "imaps"}

	target := Target{PublicHostname: testHost, NewAddresses: []string{"127.0.0.1"}, Phase: PhaseCutover}
	cfgFor := func(ports ...Port) Config {
		return Config{DNSServer: dnsServer, Ports: ports, Timeout: 2 * time.Second}
	}
	tests := []struct {
		name       string
		runner     *Runner
		cfg        Config
		want       Status
		wantDetail []string
	}{
		{"every protocol valid", &Runner{RootCAs: ca.pool}, cfgFor(all...),
			Pass, []string{"mail.example.org: valid certificate on 9 ports, earliest expiry", "364 days left"}},
		{"expired, implicit TLS", &Runner{RootCAs: ca.pool}, cfgFor(all[0], expiredIMAPS),
			Fail, []string{"1 of 2 ports failed: " + expiredIMAPS.String() + " certificate: x509: certificate has expired"}},
		{"expired after STARTTLS", &Runner{RootCAs: ca.pool}, cfgFor(expiredSMTP),
			Fail, []string{expiredSMTP.String() + " certificate: x509: certificate has expired"}},
		{"wrong name", &Runner{RootCAs: ca.pool}, cfgFor(wrongNameSubmission),
			Fail, []string{"certificate is valid for other.example.org, not mail.example.org"}},
		{"expiring in 5 days", &Runner{RootCAs: ca.pool}, cfgFor(all[4], expiringPOP3),
			Warn, []string{expiringPOP3.String() + " expires", "(5 days left)"}},
		{"expiring by the injected clock", &Runner{RootCAs: ca.pool, Now: func() time.Time { return now.Add(360 * 24 * time.Hour) }},
			cfgFor(all[4]), Warn, []string{"(4 days left)"}},
		{"unknown authority", &Runner{}, cfgFor(all[4]),
			Fail, []string{"certificate signed by unknown authority"}},
		{"hanging peer", &Runner{RootCAs: ca.pool}, Config{DNSServer: dnsServer, Ports: []Port{hangPort}, Timeout: 300 * time.Millisecond},
			Fail, []string{hangPort.String() + " read greeting: timed out"}},
		{"closed port", &Runner{RootCAs: ca.pool}, cfgFor(closedPort),
			Fail, []string{closedPort.String() + " connect:"}},
		{"no ports", &Runner{}, Config{DNSServer: dnsServer}, Skip, []string{"ports not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			begin := time.Now()
			res := run1(t, tt.runner, target, tt.cfg, IDTLS)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			if took := time.Since(begin); took > 700*time.Millisecond {
				t.Errorf("took %v, want well under a second", took)
			}
		})
	}

	t.Run("observed expiry and subject", func(t *testing.T) {
		res := run1(t, &Runner{RootCAs: ca.pool}, target, cfgFor(all...), IDTLS)
		wantDate := now.Add(year).UTC().Format(time.DateOnly)
		for _, p := range all {
			if got := res.Observed[p.String()+".not_after"]; got != wantDate {
				t.Errorf("got %s.not_after %q, want %q", p, got, wantDate)
			}
			if got := res.Observed[p.String()+".subject"]; got != "CN="+testHost {
				t.Errorf("got %s.subject %q, want %q", p, got, "CN="+testHost)
			}
		}
		if res.Observed["not_after"] != wantDate {
			t.Errorf("got not_after %q, want %q", res.Observed["not_after"], wantDate)
		}
	})

	t.Run("starttls dialogue", func(t *testing.T) {
		m := &mailServer{proto: "smtp", tls: valid}
		p := Port{m.start(t), "smtp"}
		res := run1(t, &Runner{RootCAs: ca.pool, EHLOName: "probe.example.net"}, target, cfgFor(p), IDTLS)
		requireStatus(t, res, Pass)
		got := fmt.Sprint(m.received())
		if !strings.HasPrefix(got, "[EHLO probe.example.net STARTTLS") {
			t.Errorf("got commands %s, want EHLO probe.example.net then STARTTLS", got)
		}
	})
}
