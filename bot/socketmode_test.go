package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// fakeSocketSlack stands in for Slack's Socket Mode: apps.connections.open (checking the
// app-level token) hands out ws:// URLs of its own WebSocket endpoint, and every connection the
// bot makes is handed to the test to drive.
type fakeSocketSlack struct {
	srv   *httptest.Server
	conns chan *websocket.Conn
	mu    sync.Mutex
	opens int
}

func newFakeSocketSlack(t *testing.T) *fakeSocketSlack {
	f := &fakeSocketSlack{conns: make(chan *websocket.Conn, 4)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }} // slack-go sends Origin: https://api.slack.com
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer xapp-test-token" {
			io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		f.mu.Lock()
		f.opens++
		n := f.opens
		f.mu.Unlock()
		fmt.Fprintf(w, `{"ok":true,"url":"ws://%s/link/?ticket=t%d"}`, r.Host, n)
	})
	mux.HandleFunc("GET /link/", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.conns <- c
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSocketSlack) openCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

// accept waits for the bot's next connection and greets it as Slack does.
func (f *fakeSocketSlack) accept(t *testing.T) *websocket.Conn {
	t.Helper()
	select {
	case c := <-f.conns:
		t.Cleanup(func() { c.Close() })
		if err := c.WriteJSON(map[string]any{"type": "hello", "num_connections": 1, "connection_info": map[string]any{"app_id": "A0APP"}}); err != nil {
			t.Fatal(err)
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the bot did not connect within 10s")
	}
	return nil
}

type sockAck struct {
	EnvelopeID string          `json:"envelope_id"`
	Payload    json.RawMessage `json:"payload"`
}

// envelope sends one request envelope and returns its acknowledgement and how long it took.
func envelope(t *testing.T, c *websocket.Conn, id, typ string, payload any) (sockAck, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := c.WriteJSON(map[string]any{"envelope_id": id, "type": typ, "accepts_response_payload": true, "payload": payload}); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var a sockAck
		if err := c.ReadJSON(&a); err != nil {
			t.Fatalf("waiting for the ack of %s: %v", id, err)
		}
		if a.EnvelopeID == id {
			return a, time.Since(start)
		}
	}
}

func slashPayload(user, channel, text, responseURL string) map[string]any {
	return map[string]any{
		"token": "x", "team_id": "T0", "channel_id": channel, "user_id": user, "command": "/migration",
		"text": text, "response_url": responseURL, "trigger_id": fmt.Sprintf("1.2.%d", triggers.Add(1)), "api_app_id": "A0APP", "is_enterprise_install": "false",
	}
}

func startSocketMode(t *testing.T, srv *Server, apiURL string) (stop func() error) {
	t.Helper()
	api := slack.New("xoxb-test", slack.OptionAPIURL(apiURL), slack.OptionAppLevelToken("xapp-test-token"))
	sm := NewSocketMode(api, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sm.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("Run did not return within 10s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestSocketMode drives the bot over a local WebSocket standing in for Slack: a slash command is
// acknowledged with its answer, a slow one with "working on it" and answered through
// response_url, a modal submission with the wrong phrase gets the errors response in its ack, a
// disconnect request makes the client reconnect, and cancelling stops Run cleanly (nil).
func TestSocketMode(t *testing.T) {
	w := newInterWorld(t)
	fs := newFakeSocketSlack(t)
	stop := startSocketMode(t, w.srv, fs.srv.URL+"/api/")
	c := fs.accept(t)

	a, took := envelope(t, c, "env-1", "slash_commands", slashPayload("U0VIEW", "C0OPS", "status alpha", w.slack.responseURL()))
	if took >= 3*time.Second {
		t.Errorf("ack after %s, want < 3s", took)
	}
	t.Logf("socket mode: status acknowledged with its answer in %s", took.Round(time.Microsecond))
	var r struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
		Blocks       []any  `json:"blocks"`
	}
	if err := json.Unmarshal(a.Payload, &r); err != nil {
		t.Fatalf("ack payload %s: %v", a.Payload, err)
	}
	if r.ResponseType != "ephemeral" || !strings.Contains(r.Text, "alpha: phase cutover") || len(r.Blocks) == 0 {
		t.Errorf("ack payload: %s, want the status answer with blocks", a.Payload)
	}
	if !strings.Contains(string(a.Payload), ActionIDRollback) {
		t.Errorf("status answer has no buttons: %s", a.Payload)
	}

	// Slow: acknowledged at once, answered through response_url.
	ru := w.slack.responseURL()
	a, _ = envelope(t, c, "env-2", "slash_commands", slashPayload("U0VIEW", "C0OPS", "check alpha", ru))
	if !strings.Contains(string(a.Payload), "Working on it") {
		t.Errorf("slow command ack: %s, want the working text", a.Payload)
	}
	mustHave(t, "check through response_url", w.slack.responsesTo(t, ru, 1)[0].Text, "alpha: checks in phase cutover")

	// The decommission modal's submission with a wrong phrase: errors in the ack's payload.
	meta, _ := json.Marshal(modalMeta{Migration: "beta", Channel: "C0OPS"})
	sub := submissionPayload("U0ADMIN", openedView{View: slack.ModalViewRequest{CallbackID: CallbackDecommission, PrivateMetadata: string(meta)}},
		PhraseBlockID, phraseActionID, "decommission something else")
	a, _ = envelope(t, c, "env-3", "interactive", sub)
	mustHave(t, "wrong phrase ack", string(a.Payload), `"response_action":"errors"`, `"decommission_phrase"`)

	// Slack asks for a reconnect: the client opens a new connection by itself and goes on.
	if err := c.WriteJSON(map[string]any{"type": "disconnect", "reason": "refresh_requested"}); err != nil {
		t.Fatal(err)
	}
	c2 := fs.accept(t)
	if n := fs.openCount(); n != 2 {
		t.Errorf("apps.connections.open called %d times, want 2", n)
	}
	a, _ = envelope(t, c2, "env-4", "slash_commands", slashPayload("U0VIEW", "C0OPS", "history beta", w.slack.responseURL()))
	mustHave(t, "after reconnect", string(a.Payload), "init by")

	begin := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
	t.Logf("socket mode stopped %s after cancel", time.Since(begin).Round(time.Millisecond))

	_, text := scrape(t, w.base)
	mustHave(t, "metrics", text, `migrationbot_commands_total{command="status",result="ok"} 1`, `migrationbot_interactions_total{kind="decommission_submit"} 1`)
}

// TestSocketModeLargeAnswer: an answer too large for a Socket Mode ack (20 KB) is acknowledged
// with "working on it" and delivered through response_url instead of being dropped.
func TestSocketModeLargeAnswer(t *testing.T) {
	rec := newRespRecorder(t)
	big := strings.Repeat("all accounts moved\n", 1500) // ~28 KB of text, more with blocks
	srv := &Server{Commands: &stubCommands{resp: commands.Response{Text: big}}, SigningSecret: testSecret, Responder: &ResponseURLPoster{}}
	fs := newFakeSocketSlack(t)
	startSocketMode(t, srv, fs.srv.URL+"/api/")
	c := fs.accept(t)
	a, _ := envelope(t, c, "env-big", "slash_commands", slashPayload("U1", "C1", "status", rec.srv.URL))
	if !strings.Contains(string(a.Payload), "Working on it") {
		t.Errorf("ack %d bytes: want the working text", len(a.Payload))
	}
	got := rec.wait(t)
	if len(got.Text) < len(big)-10 {
		t.Errorf("response_url got %d characters, want the whole answer", len(got.Text))
	}
}

// TestSocketModeInvalidToken: a token Slack refuses ends Run with an error (not a silent retry).
func TestSocketModeInvalidToken(t *testing.T) {
	fs := newFakeSocketSlack(t)
	api := slack.New("xoxb-test", slack.OptionAPIURL(fs.srv.URL+"/api/"), slack.OptionAppLevelToken("xapp-wrong"))
	sm := NewSocketMode(api, &Server{Commands: &stubCommands{}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := sm.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("Run: %v, want an invalid_auth error", err)
	}
}
