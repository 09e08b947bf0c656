package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/migrationbot/migrationbot/bot"
	"github.com/migrationbot/migrationbot/internal/testredis"
)

const (
	testSecret   = "test-signing-secret-0123456789abcdef"
	testToken    = "xoxb-test-token-do-not-log"
	testAppToken = "xapp-test-app-token-do-not-log"
)

// fakeSlack stands in for the Slack Web API (chat.postMessage, usergroups.users.list) and for
// the response_url endpoints, recording what the bot sends.
type fakeSlack struct {
	srv       *httptest.Server
	mu        sync.Mutex
	posts     []url.Values   // chat.postMessage forms
	responses []responsePost // response_url posts
	groups    map[string][]string
	nextURL   int
	views     []string             // views.open bodies
	conns     chan *websocket.Conn // Socket Mode connections the bot opened
}

type responsePost struct {
	Path         string
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
	Blocks       []any  `json:"blocks"`
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{groups: map[string][]string{"S0ONCALL": {"U0OPS"}}, conns: make(chan *websocket.Conn, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/views.open", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.views = append(f.views, string(b))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"view":{"id":"V1"}}`)
	})
	mux.HandleFunc("POST /api/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+testAppToken {
			io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		fmt.Fprintf(w, `{"ok":true,"url":"ws://%s/ws/?ticket=abc"}`, r.Host)
	})
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux.HandleFunc("GET /ws/", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.conns <- c
	})
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.mu.Lock()
		f.posts = append(f.posts, r.PostForm)
		n := len(f.posts)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1700000000.%06d"}`, r.PostForm.Get("channel"), n)
	})
	mux.HandleFunc("POST /api/usergroups.users.list", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f.mu.Lock()
		users, ok := f.groups[r.PostForm.Get("usergroup")]
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			io.WriteString(w, `{"ok":false,"error":"no_such_subteam"}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"ok": true, "users": users})
		w.Write(b)
	})
	mux.HandleFunc("POST /respond/", func(w http.ResponseWriter, r *http.Request) {
		var p responsePost
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		p.Path = r.URL.Path
		f.mu.Lock()
		f.responses = append(f.responses, p)
		f.mu.Unlock()
		io.WriteString(w, "ok")
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) responseURL() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextURL++
	return fmt.Sprintf("%s/respond/%d", f.srv.URL, f.nextURL)
}

func (f *fakeSlack) postsSnapshot() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.posts...)
}

// responseTo waits for the response_url post made to url.
func (f *fakeSlack) responseTo(t *testing.T, rawURL string, within time.Duration) responsePost {
	t.Helper()
	u, _ := url.Parse(rawURL)
	var got responsePost
	waitFor(t, within, "a response_url post to "+u.Path, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.responses {
			if p.Path == u.Path {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

// waitFor polls cond until it holds; it fails the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a goroutine-safe log sink; lines written to it can also be awaited.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningRE = regexp.MustCompile(`listening on (\S+)`)

// served is a running "migrationbot serve".
type served struct {
	base   string
	slack  *fakeSlack
	logs   *syncBuffer
	client *http.Client
}

// startServe runs `migrationbot serve` with env (plus the Slack settings) and the config text,
// and stops it at the end of the test, asserting a clean stop.
func startServe(t *testing.T, f *fakeSlack, config string, env map[string]string) *served {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "migrationbot.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"SLACK_SIGNING_SECRET": testSecret,
		"SLACK_BOT_TOKEN":      testToken,
		"SLACK_API_URL":        f.srv.URL + "/api", // without the trailing slash: serve adds it
		"MIGRATIONBOT_CONFIG":  cfgPath,
		"MIGRATIONBOT_ADDR":    "127.0.0.1:0",
	}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"serve"}, getenv, strings.NewReader(""), stdout, stderr) }()
	var addr string
	waitFor(t, 10*time.Second, "listening on", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("serve stopped at start: %v\n%s", err, stderr.String())
		default:
		}
		m := listeningRE.FindStringSubmatch(stdout.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("serve returned %v, want nil after a clean stop", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop within 15s of cancel")
		}
		logs := stderr.String()
		for _, secret := range []string{testSecret, testToken, testAppToken} {
			if strings.Contains(logs, secret) {
				t.Errorf("a secret appears in the logs:\n%s", logs)
			}
		}
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs)
		}
	})
	return &served{base: "http://" + addr, slack: f, logs: stderr, client: &http.Client{Timeout: 10 * time.Second}}
}

// slashAnswer is the HTTP answer to one slash command.
type slashAnswer struct {
	Status       int
	Took         time.Duration
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
	Blocks       []any  `json:"blocks"`
	ResponseURL  string `json:"-"`
}

// command sends a signed slash command as Slack does and returns the HTTP answer.
func (s *served) command(t *testing.T, user, channel, text string) slashAnswer {
	t.Helper()
	form, ts := slashForm(s.slack, user, channel, text)
	return s.send(t, form, ts)
}

func slashForm(f *fakeSlack, user, channel, text string) (string, string) {
	form := url.Values{
		"token": {"deprecated"}, "team_id": {"T0TEAM"}, "team_domain": {"example"},
		"channel_id": {channel}, "channel_name": {"ops"}, "user_id": {user}, "user_name": {"someone"},
		"command": {"/migration"}, "text": {text}, "response_url": {f.responseURL()},
		"trigger_id": {fmt.Sprintf("1337.%d.%d", time.Now().UnixNano(), triggers.Add(1))}, "api_app_id": {"A0APP"},
	}
	return form.Encode(), strconv.FormatInt(time.Now().Unix(), 10)
}

// triggers numbers trigger_ids: Slack gives each invocation its own.
var triggers atomic.Int64

func (s *served) send(t *testing.T, body, ts string) slashAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.base+"/slack/commands", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", bot.Sign(testSecret, ts, []byte(body)))
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("POST /slack/commands: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := slashAnswer{Status: resp.StatusCode, Took: time.Since(start)}
	form, _ := url.ParseQuery(body)
	a.ResponseURL = form.Get("response_url")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /slack/commands: status %d (%s), want 200", resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer %q is not JSON: %v", raw, err)
	}
	if a.Took >= 3*time.Second {
		t.Errorf("HTTP answer took %s, want < 3s", a.Took)
	}
	return a
}

// final is the command's answer: the HTTP one, or the response_url one after "working on it".
func (s *served) final(t *testing.T, a slashAnswer) (responseType, text string) {
	t.Helper()
	if a.Text != bot.WorkingText {
		if s.hasResponse(a.ResponseURL) {
			t.Errorf("answered in the HTTP response and through response_url")
		}
		return a.ResponseType, a.Text
	}
	p := s.slack.responseTo(t, a.ResponseURL, 15*time.Second)
	return p.ResponseType, p.Text
}

func (s *served) hasResponse(rawURL string) bool {
	u, _ := url.Parse(rawURL)
	s.slack.mu.Lock()
	defer s.slack.mu.Unlock()
	for _, p := range s.slack.responses {
		if p.Path == u.Path {
			return true
		}
	}
	return false
}

func (s *served) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := s.client.Get(s.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func flowConfig(prefix string) string {
	return fmt.Sprintf(`key_prefix = %q

[roles]
admins    = ["U0ADMIN"]
operators = ["S0ONCALL"]

[[migration]]
name            = "alpha"
channel         = "C0ALPHA"
public_hostname = "mail.alpha.example.org"
source_host     = "source.alpha.example.org"
report_schedule = "0 0 29 2 *" # never due in a test: the posts counted here are announcements

[[migration]]
name            = "beta"
channel         = "C0BETA"
source_host     = "source.beta.example.org"
report_schedule = "0 0 29 2 *"
`, prefix)
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: got %q, want it to contain %q", what, got, w)
		}
	}
}

// TestServeFlow drives init, cutover, status, rollback and decommission as a Slack client
// would, against real Redis and a fake Slack.
func TestServeFlow(t *testing.T) {
	_, prefix := testredis.Real(t)
	f := newFakeSlack(t)
	s := startServe(t, f, flowConfig(prefix), map[string]string{"REDIS_URL": testredis.URL()})

	if code, body := s.get(t, "/healthz"); code != 200 {
		t.Errorf("GET /healthz: %d %q, want 200", code, body)
	}
	if code, body := s.get(t, "/readyz"); code != 200 {
		t.Errorf("GET /readyz: %d %q, want 200", code, body)
	}

	// init alpha, typed in an ops channel: announced in #C0ALPHA, ephemeral answer.
	a := s.command(t, "U0ADMIN", "C0OPS", "init alpha")
	rt, text := s.final(t, a)
	if rt != "ephemeral" {
		t.Errorf("init: response_type %q, want ephemeral", rt)
	}
	mustContain(t, "init answer", text, "alpha", "Announced in <#C0ALPHA>")
	waitFor(t, 5*time.Second, "the init announcement", func() bool { return len(f.postsSnapshot()) == 1 })

	// A user without a role cannot cut over; nothing is posted.
	a = s.command(t, "U0VIEW", "C0OPS", "cutover alpha")
	_, text = s.final(t, a)
	mustContain(t, "denied cutover", text, "needs the operator role")

	// cutover by an operator through the user group S0ONCALL: slow, so acknowledged at once
	// and answered through response_url; announced in #C0ALPHA with blocks.
	a = s.command(t, "U0OPS", "C0OPS", "cutover alpha")
	if a.Text != bot.WorkingText || a.ResponseType != "ephemeral" {
		t.Errorf("cutover HTTP answer: %q %q, want the ephemeral %q", a.ResponseType, a.Text, bot.WorkingText)
	}
	p := f.responseTo(t, a.ResponseURL, 15*time.Second)
	if p.ResponseType != "ephemeral" {
		t.Errorf("cutover response_url: response_type %q, want ephemeral", p.ResponseType)
	}
	mustContain(t, "cutover answer", p.Text, "alpha moved to cutover by <@U0OPS>", "Announced in <#C0ALPHA>", "SKIP mapping")
	if len(p.Blocks) == 0 {
		t.Errorf("cutover response_url: no blocks")
	}
	posts := f.postsSnapshot()
	if len(posts) != 2 {
		t.Fatalf("chat.postMessage calls: %d, want 2 (init, cutover)", len(posts))
	}
	cut := posts[1]
	if cut.Get("channel") != "C0ALPHA" || cut.Get("token") != testToken {
		t.Errorf("cutover announcement: channel %q, token ok %v; want C0ALPHA with the bot token", cut.Get("channel"), cut.Get("token") == testToken)
	}
	mustContain(t, "cutover announcement text", cut.Get("text"), "alpha moved to cutover", "SKIP mapping")
	mustContain(t, "cutover announcement blocks", cut.Get("blocks"), `"type":"section"`, "⏭️ *mapping*")

	// status: read-only, ephemeral, nothing posted.
	a = s.command(t, "U0VIEW", "C0OPS", "status alpha")
	rt, text = s.final(t, a)
	if rt != "ephemeral" {
		t.Errorf("status: response_type %q, want ephemeral", rt)
	}
	mustContain(t, "status", text, "alpha: phase cutover, day 1 of 14")

	// rollback typed in the migration's own channel: posted with chat.postMessage like any
	// transition (a response_url reply can fail or come late); the caller's answer is ephemeral.
	a = s.command(t, "U0OPS", "C0ALPHA", "rollback alpha IMAP logins failing")
	rt, text = s.final(t, a)
	if rt != "ephemeral" {
		t.Errorf("rollback in its channel: response_type %q, want ephemeral", rt)
	}
	mustContain(t, "rollback", text, "alpha rolled back to proxied by <@U0OPS>: IMAP logins failing", "Rollback runbook", "Announced in <#C0ALPHA>")

	// beta: restored in cutover 30 days ago, so the confidence period is over.
	since := time.Now().UTC().AddDate(0, 0, -30).Format("2006-01-02")
	a = s.command(t, "U0ADMIN", "C0OPS", "init beta cutover "+since)
	_, text = s.final(t, a)
	mustContain(t, "init beta", text, "beta")

	a = s.command(t, "U0ADMIN", "C0OPS", "decommission beta")
	rt, text = s.final(t, a)
	if rt != "ephemeral" {
		t.Errorf("decommission: response_type %q, want ephemeral", rt)
	}
	m := regexp.MustCompile(`/migration decommission beta confirm (.+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("decommission answer has no phrase: %q", text)
	}
	phrase := strings.TrimSpace(m[1])
	if phrase != "decommission source.beta.example.org" {
		t.Errorf("phrase %q, want %q", phrase, "decommission source.beta.example.org")
	}
	a = s.command(t, "U0ADMIN", "C0OPS", "decommission beta confirm "+phrase)
	_, text = s.final(t, a)
	mustContain(t, "decommission confirm", text, "beta decommissioned by <@U0ADMIN>", "Announced in <#C0BETA>")

	waitFor(t, 5*time.Second, "five announcements", func() bool { return len(f.postsSnapshot()) == 5 })
	posts = f.postsSnapshot()
	wantChannels := []string{"C0ALPHA", "C0ALPHA", "C0ALPHA", "C0BETA", "C0BETA"}
	for i, p := range posts {
		if p.Get("channel") != wantChannels[i] {
			t.Errorf("post %d: channel %q, want %q (text %q)", i, p.Get("channel"), wantChannels[i], p.Get("text"))
		}
		if p.Get("blocks") == "" || p.Get("text") == "" {
			t.Errorf("post %d: text and blocks must both be set", i)
		}
	}
	mustContain(t, "rollback announcement", posts[2].Get("text"), "alpha rolled back to proxied")
	mustContain(t, "decommission announcement", posts[4].Get("text"), "beta decommissioned")

	a = s.command(t, "U0VIEW", "C0OPS", "status beta")
	_, text = s.final(t, a)
	mustContain(t, "status beta", text, "beta: phase decommissioned")
}

// TestServeDoubleCutover sends the same signed cutover twice at once, and the same signed extend
// twice one after the other: one change in the audit log each, one channel post each.
func TestServeDoubleCutover(t *testing.T) {
	_, prefix := testredis.Real(t)
	f := newFakeSlack(t)
	s := startServe(t, f, flowConfig(prefix), map[string]string{"REDIS_URL": testredis.URL()})

	a := s.command(t, "U0ADMIN", "C0OPS", "init alpha")
	s.final(t, a)
	waitFor(t, 5*time.Second, "the init announcement", func() bool { return len(f.postsSnapshot()) == 1 })

	body, ts := slashForm(f, "U0OPS", "C0OPS", "cutover alpha")
	var wg sync.WaitGroup
	answers := make([]slashAnswer, 2)
	for i := range answers {
		wg.Go(func() { answers[i] = s.send(t, body, ts) })
	}
	wg.Wait()
	// Both share one response_url: wait for both answers there.
	u, _ := url.Parse(answers[0].ResponseURL)
	var texts []string
	waitFor(t, 15*time.Second, "two answers through response_url", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		texts = texts[:0]
		for _, p := range f.responses {
			if p.Path == u.Path {
				texts = append(texts, p.Text)
			}
		}
		return len(texts) == 2
	})
	moved, refused := 0, 0
	for _, tx := range texts {
		switch {
		case strings.Contains(tx, "moved to cutover"):
			moved++
		case strings.Contains(tx, "nothing changed"):
			refused++
		}
	}
	if moved != 1 || refused != 1 {
		t.Errorf("answers: %d moved, %d refused, want 1 and 1:\n%s", moved, refused, strings.Join(texts, "\n---\n"))
	}
	posts := f.postsSnapshot()
	if len(posts) != 2 {
		t.Errorf("chat.postMessage calls: %d, want 2 (init and one cutover)", len(posts))
	}

	a = s.command(t, "U0VIEW", "C0OPS", "history alpha")
	_, text := s.final(t, a)
	if n := strings.Count(text, "cutover by <@U0OPS>: proxied -> cutover"); n != 1 {
		t.Errorf("history shows %d cutover transitions, want 1:\n%s", n, text)
	}

	// The same signed extend delivered twice (a replay inside the 5-minute window, or Slack
	// delivering it again): applied once, announced once; the second is told why.
	body, ts = slashForm(f, "U0ADMIN", "C0OPS", "extend alpha 2 waiting for the newsletter run")
	_, first := s.final(t, s.send(t, body, ts))
	mustContain(t, "extend", first, "confidence period extended by 2 days to 16")
	_, again := s.final(t, s.send(t, body, ts))
	mustContain(t, "extend delivered again", again, "this request arrived twice", "nothing changed now")
	waitFor(t, 5*time.Second, "the extend announcement", func() bool { return len(f.postsSnapshot()) == 3 })
	time.Sleep(200 * time.Millisecond) // a second announcement would be on its way by now
	if n := len(f.postsSnapshot()); n != 3 {
		t.Errorf("chat.postMessage calls: %d, want 3 (init, cutover, one extend)", n)
	}
	_, status := s.final(t, s.command(t, "U0VIEW", "C0OPS", "status alpha"))
	mustContain(t, "status after the doubled extend", status, "day 1 of 16")
}

// hangingRedis accepts connections and never answers.
func hangingRedis(t *testing.T) string {
	t.Helper()
	return "redis://" + testredis.Silent(t) + "/0"
}

// TestServeHangingRedis: with a Redis that accepts and never answers, every command still gets
// its HTTP answer in under 3 seconds and the user learns the state store is unavailable.
func TestServeHangingRedis(t *testing.T) {
	f := newFakeSlack(t)
	s := startServe(t, f, flowConfig("hang"), map[string]string{"REDIS_URL": hangingRedis(t)})

	if code, _ := s.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz: %d, want 503", code)
	}
	for _, tc := range []struct{ user, text string }{
		{"U0VIEW", "status alpha"},
		{"U0OPS", "cutover alpha"}, // slow: acknowledged at once
		{"U0OPS", "rollback alpha DNS trouble"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			a := s.command(t, tc.user, "C0OPS", tc.text)
			t.Logf("%s: HTTP answer after %s: %q", tc.text, a.Took.Round(time.Millisecond), a.Text)
			if a.Took >= 3*time.Second {
				t.Errorf("HTTP answer after %s, want < 3s", a.Took)
			}
			_, text := s.final(t, a)
			mustContain(t, tc.text, text, "state store (Redis)")
		})
	}
	if n := len(f.postsSnapshot()); n != 0 {
		t.Errorf("chat.postMessage calls: %d, want 0", n)
	}
	// The failures show in /metrics: Redis errors counted by the hook, commands as errors.
	_, metrics := s.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^migrationbot_redis_errors_total (\d+)$`).FindStringSubmatch(metrics)
	if m == nil || m[1] == "0" {
		t.Errorf("migrationbot_redis_errors_total: %v, want > 0", m)
	}
	mustContain(t, "metrics", metrics, `migrationbot_commands_total{command="status",result="error"} 1`)
}

func TestServeStartupErrors(t *testing.T) {
	f := newFakeSlack(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.toml")
	os.WriteFile(cfgPath, []byte(flowConfig("x")), 0o600)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base := map[string]string{
		"SLACK_SIGNING_SECRET": testSecret, "SLACK_BOT_TOKEN": testToken, "SLACK_API_URL": f.srv.URL + "/api/",
		"MIGRATIONBOT_CONFIG": cfgPath, "MIGRATIONBOT_ADDR": "127.0.0.1:0", "REDIS_URL": testredis.URL(),
	}
	for _, tc := range []struct {
		name  string
		unset string
		args  []string
		want  string
	}{
		{"no signing secret", "SLACK_SIGNING_SECRET", nil, "SLACK_SIGNING_SECRET is not set"},
		{"no bot token", "SLACK_BOT_TOKEN", nil, "SLACK_BOT_TOKEN is not set"},
		{"port taken", "", []string{"--addr", taken.Addr().String()}, "address already in use"},
		{"no config", "MIGRATIONBOT_CONFIG", nil, "no configuration"},
		{"stray argument", "", []string{"extra"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == tc.unset {
					return ""
				}
				return base[k]
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errs syncBuffer
			err := run(ctx, append([]string{"serve"}, tc.args...), getenv, strings.NewReader(""), &out, &errs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run serve: got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), testToken) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// interaction sends a signed interaction payload to /slack/interactions and returns the status
// and the body.
func (s *served) interaction(t *testing.T, payload any) (int, string) {
	t.Helper()
	raw, _ := json.Marshal(payload)
	body := url.Values{"payload": {string(raw)}}.Encode()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, s.base+"/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", bot.Sign(testSecret, ts, []byte(body)))
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("POST /slack/interactions: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// socketEnvelope sends one request envelope over the bot's Socket Mode connection and returns
// the payload of its acknowledgement.
func socketEnvelope(t *testing.T, c *websocket.Conn, id, typ string, payload any) json.RawMessage {
	t.Helper()
	if err := c.WriteJSON(map[string]any{"envelope_id": id, "type": typ, "accepts_response_payload": true, "payload": payload}); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := c.ReadJSON(&ack); err != nil {
			t.Fatalf("ack of %s: %v", id, err)
		}
		if ack.EnvelopeID == id {
			return ack.Payload
		}
	}
}

// TestServeOperations runs serve with every secret set and Socket Mode on: slash commands over
// HTTP and over the WebSocket, a button over /slack/interactions, then /metrics shows the
// counters moved, and every log line is JSON, carries the request id where a command is
// logged, and shows no secret (checked again at cleanup, after a clean stop).
func TestServeOperations(t *testing.T) {
	_, prefix := testredis.Real(t)
	f := newFakeSlack(t)
	s := startServe(t, f, flowConfig(prefix), map[string]string{"REDIS_URL": testredis.URL(), "SLACK_APP_TOKEN": testAppToken})

	var c *websocket.Conn
	select {
	case c = <-f.conns:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not open a Socket Mode connection")
	}
	if err := c.WriteJSON(map[string]any{"type": "hello"}); err != nil {
		t.Fatal(err)
	}

	a := s.command(t, "U0ADMIN", "C0OPS", "init alpha")
	s.final(t, a)
	a = s.command(t, "U0VIEW", "C0OPS", "status alpha")
	_, text := s.final(t, a)
	mustContain(t, "status over HTTP", text, "alpha: phase proxied")

	// The same command over Socket Mode: the ack carries the answer, with the buttons.
	ack := socketEnvelope(t, c, "env-1", "slash_commands", map[string]any{
		"user_id": "U0VIEW", "channel_id": "C0OPS", "command": "/migration", "text": "status alpha",
		"response_url": f.responseURL(), "trigger_id": "1.2",
	})
	mustContain(t, "socket mode ack", string(ack), `"response_type":"ephemeral"`, "alpha: phase proxied", "migrationbot_check")

	// "Run checks" over HTTP interactivity: acknowledged empty, answered through response_url.
	ru := f.responseURL()
	code, body := s.interaction(t, map[string]any{
		"type": "block_actions", "user": map[string]any{"id": "U0VIEW"}, "channel": map[string]any{"id": "C0OPS"},
		"trigger_id": "t1", "response_url": ru, "container": map[string]any{"type": "message", "is_ephemeral": true},
		"actions": []any{map[string]any{"type": "button", "action_id": bot.ActionIDCheck, "block_id": bot.ActionsBlockID, "value": "alpha"}},
	})
	if code != 200 || body != "" {
		t.Errorf("button ack: %d %q, want 200 and an empty body", code, body)
	}
	waitFor(t, 10*time.Second, "the check results through response_url", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.responses {
			if strings.HasSuffix(ru, p.Path) && strings.Contains(p.Text, "alpha: checks in phase proxied") {
				return true
			}
		}
		return false
	})

	code, metrics := s.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		`migrationbot_commands_total{command="init",result="ok"} 1`,
		`migrationbot_commands_total{command="status",result="ok"} 2`,
		`migrationbot_commands_total{command="check",result="ok"} 1`,
		`migrationbot_command_duration_seconds_count{command="status"} 2`,
		`migrationbot_transitions_total{event="init"} 1`,
		`migrationbot_interactions_total{kind="check"} 1`,
		`migrationbot_redis_errors_total 0`,
	} {
		mustContain(t, "metrics", metrics, want)
	}

	// JSON logs with request ids.
	requests := 0
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if rec["msg"] == "command answered" {
			requests++
			if id, _ := rec["request"].(string); len(id) != 16 {
				t.Errorf("command log line without a request id: %q", line)
			}
		}
	}
	if requests < 4 {
		t.Errorf("%d command log lines, want at least 4:\n%s", requests, s.logs.String())
	}
}

// TestServeRejectsBotTokenAsAppToken: SLACK_APP_TOKEN must be an app-level token; a bot token
// there is a startup error that does not echo it.
func TestServeRejectsBotTokenAsAppToken(t *testing.T) {
	vars := map[string]string{"SLACK_SIGNING_SECRET": testSecret, "SLACK_BOT_TOKEN": testToken, "SLACK_APP_TOKEN": testToken,
		"MIGRATIONBOT_CONFIG": "unused.toml", "MIGRATIONBOT_ADDR": "127.0.0.1:0"}
	var out, errs syncBuffer
	err := run(context.Background(), []string{"serve"}, func(k string) string { return vars[k] }, strings.NewReader(""), &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "SLACK_APP_TOKEN is not an app-level token") || strings.Contains(err.Error(), testToken) {
		t.Errorf("run serve: %v, want the app-token error without the token", err)
	}
}

// TestSlackAppManifest: the manifest points Slack at the routes serve answers, with the scopes
// the bot uses, and Socket Mode off by default.
func TestSlackAppManifest(t *testing.T) {
	b, err := os.ReadFile("../../deploy/slack-app-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "manifest", string(b), "command: /migration", "/slack/commands", "request_url: https://bot.example.org/slack/interactions",
		"- commands", "- chat:write", "- usergroups:read", "socket_mode_enabled: false", "SLACK_APP_TOKEN", "connections:write")
}
