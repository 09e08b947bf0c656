package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/migrationbot/migrationbot/bot"
	"github.com/migrationbot/migrationbot/internal/testredis"
)

var regexpCheckLine = regexp.MustCompile(`^(PASS|WARN|FAIL|SKIP) [a-z]+: \S`)

// TestServeChecksAgainstSilentPeers: /migration check against peers that never answer gets its
// HTTP answer at once, and the results arrive through response_url when the timeouts fire.
func TestServeChecksAgainstSilentPeers(t *testing.T) {
	m, _ := testredis.Mini(t)
	peer := testredis.Silent(t)
	_, port, _ := net.SplitHostPort(peer)
	dnsSock, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer dnsSock.Close()
	config := fmt.Sprintf(`[roles]
admins = ["U0ADMIN"]

[[migration]]
name            = "alpha"
channel         = "C0ALPHA"
public_hostname = "mail.alpha.example.org"
source_host     = "source.alpha.example.org"
new_addresses   = ["127.0.0.1"]
proxy_addresses = ["127.0.0.2"]
domains         = ["alpha.example.org"]
report_schedule = "0 0 29 2 *"

[migration.checks]
proxy_admin_url = "https://%[1]s"
dns_server      = %[2]q
ports           = ["%[3]s/imaps", "%[3]s/smtp"]
smtp_address    = %[1]q
source_address  = %[1]q
timeout         = "1500ms"
`, peer, dnsSock.LocalAddr().String(), port)
	s := startServe(t, newFakeSlack(t), config, map[string]string{"REDIS_URL": "redis://" + m.Addr()})

	if _, text := s.final(t, s.command(t, "U0ADMIN", "C0ALPHA", "init")); !strings.Contains(text, "alpha initialised") {
		t.Fatalf("init: %q", text)
	}
	start := time.Now()
	a := s.command(t, "U0ADMIN", "C0ALPHA", "check")
	if a.Took >= 3*time.Second || a.Text != bot.WorkingText {
		t.Fatalf("check: HTTP answer %q after %s, want %q at once", a.Text, a.Took, bot.WorkingText)
	}
	t.Logf("HTTP answer to check after %s", a.Took)
	p := s.slack.responseTo(t, a.ResponseURL, 10*time.Second)
	took := time.Since(start)
	t.Logf("results through response_url after %s:\n%s", took, p.Text)
	if took < 1400*time.Millisecond {
		t.Errorf("results after %s: sooner than the 1.5s check timeout, so nothing timed out", took)
	}
	mustContain(t, "check results", p.Text,
		"alpha: checks in phase proxied", "FAIL proxy:", "FAIL dns:", "FAIL direct:", "FAIL tls:", "FAIL relay:",
		"SKIP mapping:", "SKIP cleanup:")
	// The silent source: it accepts the connection, so it is there, but says nothing.
	if !strings.Contains(p.Text, "source:") {
		t.Errorf("no source line: %q", p.Text)
	}
	for _, line := range strings.Split(p.Text, "\n")[1:] {
		if !regexpCheckLine.MatchString(line) {
			t.Errorf("line %q is not 'RESULT id: detail'", line)
		}
	}
	// status shows the stored results without probing again, at once.
	st := s.command(t, "U0ADMIN", "C0ALPHA", "status")
	if st.Text == bot.WorkingText {
		t.Fatal("status was not answered in the HTTP response")
	}
	mustContain(t, "status", st.Text, "Cutover gate", "SKIP mapping")
}

// TestServeSocketModeRefused: an app token Slack refuses stops Socket Mode, not the bot: the HTTP
// endpoints stay up (as they are in both modes) and /readyz says why Slack no longer reaches it.
func TestServeSocketModeRefused(t *testing.T) {
	m, _ := testredis.Mini(t)
	s := startServe(t, newFakeSlack(t), flowConfig("sm"), map[string]string{
		"REDIS_URL": "redis://" + m.Addr(), "SLACK_APP_TOKEN": "xapp-revoked-token-do-not-log"})
	var body string
	waitFor(t, 10*time.Second, "/readyz to report Socket Mode stopped", func() bool {
		var code int
		code, body = s.get(t, "/readyz")
		return code == 503
	})
	mustContain(t, "/readyz", body, "socket mode stopped", "invalid_auth", "SLACK_APP_TOKEN")
	if strings.Contains(body, "xapp-revoked") || strings.Contains(s.logs.String(), "xapp-revoked") {
		t.Error("the app token appears in /readyz or the logs")
	}
	if code, _ := s.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if _, text := s.final(t, s.command(t, "U0ADMIN", "C0ALPHA", "status alpha")); !strings.Contains(text, "alpha: no state in Redis") {
		t.Errorf("slash command over HTTP after Socket Mode stopped: %q", text)
	}
}
