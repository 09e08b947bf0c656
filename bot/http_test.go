package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

const testSecret = "test-signing-secret"

// respRecorder records response_url posts.
type respRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []reply
	seen chan struct{}
}

func newRespRecorder(t *testing.T) *respRecorder {
	r := &respRecorder{seen: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p reply
		if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, p)
		r.mu.Unlock()
		r.seen <- struct{}{}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *respRecorder) wait(t *testing.T) reply {
	t.Helper()
	select {
	case <-r.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no response_url post within 10s")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[len(r.got)-1]
}

func (r *respRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func slashBody(user, channel, text, responseURL string) string {
	return url.Values{
		"token": {"x"}, "team_id": {"T0"}, "channel_id": {channel}, "user_id": {user},
		"command": {"/migration"}, "text": {text}, "response_url": {responseURL}, "trigger_id": {fmt.Sprintf("1.2.%d", triggers.Add(1))},
	}.Encode()
}

// triggers numbers trigger_ids: Slack gives each invocation its own.
var triggers atomic.Int64

// post sends body to the server at base, signed for ts unless sig is given ("-" for none).
func signedPost(t *testing.T, base, body, ts, sig string, hdr map[string]string) (*http.Response, string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/slack/commands", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if ts != "" {
		req.Header.Set("X-Slack-Request-Timestamp", ts)
	}
	switch sig {
	case "":
		req.Header.Set("X-Slack-Signature", Sign(testSecret, ts, []byte(body)))
	case "-":
	default:
		req.Header.Set("X-Slack-Signature", sig)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), time.Since(start)
}

func nowTS(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }

// TestCommandVerification: only a signed, fresh, well-formed slash command changes anything.
func TestCommandVerification(t *testing.T) {
	m, rdb := testredis.Mini(t)
	store := state.NewStore(rdb, "t")
	api := &fakeWebAPI{}
	h := &commands.Handler{
		Migrations: []*commands.Migration{{Name: "example", Channel: "C0MIGRATION", SourceHost: "source.example.org", ConfidenceDays: 14}},
		Admins:     []string{"U0ADMIN"},
		Store:      store,
	}
	rs := newRespRecorder(t)
	s := &Server{Commands: h, SigningSecret: testSecret, Poster: NewSlackPoster(newFakeWebAPI(t, api)), Responder: &ResponseURLPoster{}}
	srv := httptest.NewServer(s)
	defer srv.Close()

	good := slashBody("U0ADMIN", "C0OPS", "init example", rs.srv.URL+"/r/1")
	big := good + "&pad=" + strings.Repeat("a", DefaultMaxBody)
	for _, tc := range []struct {
		name, body, ts, sig, contentType string
	}{
		{name: "bad signature", body: good, ts: nowTS(0), sig: Sign(testSecret, nowTS(0), []byte(good+"x"))},
		{name: "wrong secret", body: good, ts: nowTS(0), sig: Sign("other", nowTS(0), []byte(good))},
		{name: "not hex", body: good, ts: nowTS(0), sig: "v0=zz"},
		{name: "6 minutes old", body: good, ts: nowTS(-6 * time.Minute)},
		{name: "6 minutes ahead", body: good, ts: nowTS(6 * time.Minute)},
		{name: "no signature", body: good, ts: nowTS(0), sig: "-"},
		{name: "no timestamp", body: good, ts: "", sig: Sign(testSecret, "", []byte(good))},
		{name: "no headers", body: good, sig: "-"},
		{name: "oversized body", body: big, ts: nowTS(0)},
		{name: "malformed form", body: "user_id=U0ADMIN&text=init+example&%zz", ts: nowTS(0)},
		{name: "no user", body: "text=init+example&channel_id=C0OPS", ts: nowTS(0)},
		{name: "ssl_check in JSON", body: `{"ssl_check":"1","user_id":"U0ADMIN","text":"init example"}`, ts: nowTS(0), sig: "-", contentType: "application/json"},
		{name: "ssl_check=0 unsigned", body: good + "&ssl_check=0", ts: nowTS(0), sig: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.contentType != "" {
				hdr["Content-Type"] = tc.contentType
			}
			resp, body, _ := signedPost(t, srv.URL, tc.body, tc.ts, tc.sig, hdr)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d (%q), want 401", resp.StatusCode, body)
			}
			if strings.Contains(body, testSecret) {
				t.Errorf("the answer shows the secret")
			}
			if keys := m.Keys(); len(keys) != 0 {
				t.Errorf("Redis keys after a refused request: %v, want none", keys)
			}
		})
	}

	t.Run("ssl_check", func(t *testing.T) {
		resp, body, _ := signedPost(t, srv.URL, good+"&ssl_check=1", "", "-", nil)
		if resp.StatusCode != 200 || body != "" {
			t.Errorf("got %d %q, want 200 and an empty body", resp.StatusCode, body)
		}
		if keys := m.Keys(); len(keys) != 0 {
			t.Errorf("Redis keys after ssl_check: %v, want none", keys)
		}
	})

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/slack/commands")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status %d, want 405", resp.StatusCode)
		}
	})

	if n := rs.count(); n != 0 {
		t.Errorf("response_url posts: %d, want 0", n)
	}
	if posts, calls := api.snapshot(); calls != 0 {
		t.Errorf("chat.postMessage: %d calls (%v), want 0", calls, posts)
	}

	t.Run("good", func(t *testing.T) {
		resp, body, took := signedPost(t, srv.URL, good, nowTS(0), "", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %q (%s), want 200 JSON", resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
		var r reply
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		if r.ResponseType != "ephemeral" || !strings.Contains(r.Text, "example") || !strings.Contains(r.Text, "Announced in <#C0MIGRATION>") {
			t.Errorf("answer %+v, want an ephemeral answer saying it was announced", r)
		}
		if took >= 3*time.Second {
			t.Errorf("answered after %s", took)
		}
		if !m.Exists("t:{example}:state") {
			t.Errorf("no state in Redis after a good init; keys %v", m.Keys())
		}
		if posts, _ := api.snapshot(); len(posts) != 1 || posts[0].form.Get("channel") != "C0MIGRATION" {
			t.Errorf("announcements: %v, want one in C0MIGRATION", posts)
		}
	})
}

// stubCommands answers after delay (or when ctx ends) with resp.
type stubCommands struct {
	delay time.Duration
	slow  bool
	resp  commands.Response
	mu    sync.Mutex
	calls []commands.Request
}

func (f *stubCommands) Handle(ctx context.Context, req commands.Request) (commands.Response, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	f.mu.Unlock()
	select {
	case <-time.After(f.delay):
		return f.resp, nil
	case <-ctx.Done():
		return commands.Response{Text: "cancelled", Failed: true}, ctx.Err()
	}
}

func (f *stubCommands) IsSlow(string) bool { return f.slow }

// TestCommandAnswers covers where an answer goes: the HTTP response, response_url after a
// "working on it" ack, and the channel announcement.
func TestCommandAnswers(t *testing.T) {
	status := commands.Response{Text: "example: phase cutover, day 3 of 14", Migration: "example", Channel: "C0MIGRATION"}
	moved := commands.Response{Text: "example moved to cutover by <@U1>.\nPASS mapping: empty", Migration: "example", Channel: "C0MIGRATION", Announce: true}
	const ack = 150 * time.Millisecond
	for _, tc := range []struct {
		name        string
		cmd         *stubCommands
		channel     string
		failPosts   bool
		wantHTTP    string // substring of the HTTP answer's text
		wantType    string // response_type of the final answer
		wantLate    bool   // the final answer comes through response_url
		wantPosts   int
		wantInFinal string
	}{
		{name: "fast read-only", cmd: &stubCommands{resp: status}, channel: "C0OPS", wantHTTP: "day 3 of 14", wantType: "ephemeral"},
		{name: "late read-only", cmd: &stubCommands{delay: 3 * ack, resp: status}, channel: "C0OPS", wantHTTP: WorkingText, wantType: "ephemeral", wantLate: true, wantInFinal: "day 3 of 14"},
		{name: "known slow", cmd: &stubCommands{slow: true, resp: status}, channel: "C0OPS", wantHTTP: WorkingText, wantType: "ephemeral", wantLate: true, wantInFinal: "day 3 of 14"},
		{name: "transition elsewhere", cmd: &stubCommands{resp: moved}, channel: "C0OPS", wantHTTP: "Announced in <#C0MIGRATION>", wantType: "ephemeral", wantPosts: 1},
		// In its own channel too the transition is posted with chat.postMessage: a failed or late
		// response_url reply must not leave the channel without the news.
		{name: "transition in its channel", cmd: &stubCommands{resp: moved}, channel: "C0MIGRATION", wantHTTP: "Announced in <#C0MIGRATION>", wantType: "ephemeral", wantPosts: 1},
		{name: "late transition in its channel", cmd: &stubCommands{slow: true, resp: moved}, channel: "C0MIGRATION", wantHTTP: WorkingText, wantType: "ephemeral", wantLate: true, wantInFinal: "moved to cutover", wantPosts: 1},
		{name: "announcement fails", cmd: &stubCommands{resp: moved}, channel: "C0OPS", failPosts: true, wantHTTP: "The announcement to <#C0MIGRATION> failed (", wantType: "ephemeral"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRespRecorder(t)
			api := &fakeWebAPI{}
			if tc.failPosts {
				api.limited = 1000 // 429 with Retry-After 1 beyond the poster's budget below
			}
			s := &Server{Commands: tc.cmd, SigningSecret: testSecret, AckAfter: ack, Responder: &ResponseURLPoster{},
				Poster: &SlackPoster{API: newFakeWebAPI(t, api), MaxRetryWait: time.Millisecond}}
			srv := httptest.NewServer(s)
			defer srv.Close()
			resp, body, took := signedPost(t, srv.URL, slashBody("U1", tc.channel, "status", rs.srv.URL+"/r"), nowTS(0), "", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			if took > ack+time.Second {
				t.Errorf("HTTP answer after %s, want about %s at most", took, ack)
			}
			var r reply
			json.Unmarshal([]byte(body), &r)
			if !strings.Contains(r.Text, tc.wantHTTP) {
				t.Errorf("HTTP answer %q, want it to contain %q", r.Text, tc.wantHTTP)
			}
			final := r
			if tc.wantLate {
				if r.ResponseType != "ephemeral" {
					t.Errorf("the ack is %q, want ephemeral", r.ResponseType)
				}
				final = rs.wait(t)
				if !strings.Contains(final.Text, tc.wantInFinal) {
					t.Errorf("response_url answer %q, want it to contain %q", final.Text, tc.wantInFinal)
				}
			} else if len(r.Blocks.([]any)) == 0 {
				t.Errorf("HTTP answer without blocks")
			}
			if final.ResponseType != tc.wantType {
				t.Errorf("response_type %q, want %q", final.ResponseType, tc.wantType)
			}
			if posts, _ := api.snapshot(); len(posts) != tc.wantPosts {
				t.Errorf("announcements: %d, want %d", len(posts), tc.wantPosts)
			}
			if !tc.wantLate && rs.count() != 0 {
				t.Errorf("answered in HTTP and through response_url")
			}
		})
	}
}

func TestHealthAndReady(t *testing.T) {
	var down error
	var mu sync.Mutex
	s := &Server{Commands: &stubCommands{}, SigningSecret: testSecret, Ready: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return down
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/healthz") != 200 || get("/readyz") != 200 {
		t.Errorf("healthz/readyz not 200 while up")
	}
	mu.Lock()
	down = errors.New("redis: i/o timeout")
	mu.Unlock()
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Errorf("healthz/readyz while Redis is down: want 200 and 503")
	}
}

// TestServeShutdown: cancelling ctx stops the server, cancels background work that outlives
// the shutdown timeout, and Serve returns nil.
func TestServeShutdown(t *testing.T) {
	cmd := &stubCommands{delay: time.Hour, slow: true}
	rs := newRespRecorder(t)
	s := &Server{Commands: cmd, SigningSecret: testSecret, Responder: &ResponseURLPoster{}, ShutdownTimeout: 200 * time.Millisecond}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	resp, body, _ := signedPost(t, base, slashBody("U1", "C1", "check", rs.srv.URL+"/r"), nowTS(0), "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, WorkingText) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	// The cancelled job still answered the user.
	if got := rs.wait(t); got.Text != "cancelled" {
		t.Errorf("answer after shutdown: %q", got.Text)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("still serving after shutdown")
	}
}
