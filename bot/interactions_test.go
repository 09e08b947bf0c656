package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

// fakeSlackAPI stands in for the Slack Web API (views.open, chat.postMessage) and for the
// response_url endpoints (/respond/...), recording what the bot sends.
type fakeSlackAPI struct {
	srv      *httptest.Server
	mu       sync.Mutex
	views    []openedView
	posts    []url.Values
	respones []respPost
	next     int
	// viewsStatus, when set, is the HTTP status views.open answers with (429 with Retry-After).
	viewsStatus int
}

type openedView struct {
	TriggerID string                 `json:"trigger_id"`
	View      slack.ModalViewRequest `json:"view"`
	At        time.Time              `json:"-"`
}

type respPost struct {
	Path            string
	ResponseType    string `json:"response_type"`
	Text            string `json:"text"`
	ReplaceOriginal bool   `json:"replace_original"`
	Blocks          []any  `json:"blocks"`
}

func newFakeSlackAPI(t *testing.T) *fakeSlackAPI {
	f := &fakeSlackAPI{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/views.open", func(w http.ResponseWriter, r *http.Request) {
		var v openedView
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		v.At = time.Now()
		f.mu.Lock()
		f.views = append(f.views, v)
		status := f.viewsStatus
		f.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(status)
			io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"view":{"id":"V0001"}}`)
	})
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f.mu.Lock()
		f.posts = append(f.posts, r.PostForm)
		n := len(f.posts)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1700000000.%06d"}`, r.PostForm.Get("channel"), n)
	})
	mux.HandleFunc("POST /respond/", func(w http.ResponseWriter, r *http.Request) {
		var p respPost
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		p.Path = r.URL.Path
		f.mu.Lock()
		f.respones = append(f.respones, p)
		f.mu.Unlock()
		io.WriteString(w, "ok")
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlackAPI) api() *slack.Client {
	return slack.New("xoxb-test", slack.OptionAPIURL(f.srv.URL+"/api/"))
}

func (f *fakeSlackAPI) responseURL() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	return fmt.Sprintf("%s/respond/%d", f.srv.URL, f.next)
}

// responsesTo waits until n posts were made to rawURL and returns them.
func (f *fakeSlackAPI) responsesTo(t *testing.T, rawURL string, n int) []respPost {
	t.Helper()
	u, _ := url.Parse(rawURL)
	var got []respPost
	waitUntil(t, 10*time.Second, fmt.Sprintf("%d response_url posts to %s", n, u.Path), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got = got[:0]
		for _, p := range f.respones {
			if p.Path == u.Path {
				got = append(got, p)
			}
		}
		return len(got) >= n
	})
	return got
}

func (f *fakeSlackAPI) viewsSnapshot() []openedView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]openedView(nil), f.views...)
}

func (f *fakeSlackAPI) postsSnapshot() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.posts...)
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fixedChecker passes every check it is asked for.
type fixedChecker struct{}

func (fixedChecker) Run(_ context.Context, _ checks.Target, _ checks.Config, ids ...string) []checks.Result {
	if len(ids) == 0 {
		ids = []string{checks.IDDNS, checks.IDSource}
	}
	out := make([]checks.Result, len(ids))
	for i, id := range ids {
		out[i] = checks.Result{ID: id, Status: checks.Pass, Detail: "fine", At: time.Now()}
	}
	return out
}

// interWorld is a Server with the real command handler on miniredis, a fake Slack, metrics.
type interWorld struct {
	srv     *Server
	base    string
	slack   *fakeSlackAPI
	store   *state.Store
	handler *commands.Handler
	metrics *Metrics
}

func newInterWorld(t *testing.T) *interWorld {
	t.Helper()
	_, rdb := testredis.Mini(t)
	store := state.NewStore(rdb, testredis.Prefix())
	h := &commands.Handler{
		Migrations: []*commands.Migration{
			{Name: "alpha", Channel: "C0ALPHA", PublicHostname: "mail.alpha.example.org", SourceHost: "source.alpha.example.org", ConfidenceDays: 14},
			{Name: "beta", Channel: "C0BETA", SourceHost: "source.beta.example.org", ConfidenceDays: 14},
		},
		Admins:    []string{"U0ADMIN"},
		Operators: []string{"U0OPS"},
		Store:     store,
		Checker:   fixedChecker{},
	}
	f := newFakeSlackAPI(t)
	m := NewMetrics()
	poster := &SlackPoster{API: f.api(), Interval: time.Millisecond, Metrics: m}
	srv := &Server{
		Commands:      h,
		SigningSecret: testSecret,
		Poster:        poster,
		Views:         poster,
		Responder:     &ResponseURLPoster{Metrics: m},
		Metrics:       m,
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	w := &interWorld{srv: srv, base: hs.URL, slack: f, store: store, handler: h, metrics: m}
	// alpha in cutover since yesterday; beta in cutover for 30 days: decommissioning is possible.
	w.must(t, "U0ADMIN", "init alpha cutover "+time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02"))
	w.must(t, "U0ADMIN", "init beta cutover "+time.Now().UTC().AddDate(0, 0, -30).Format("2006-01-02"))
	return w
}

func (w *interWorld) must(t *testing.T, user, text string) commands.Response {
	t.Helper()
	resp, err := w.handler.Handle(context.Background(), commands.Request{UserID: user, Text: text})
	if err != nil || resp.Failed {
		t.Fatalf("%s: %v %q", text, err, resp.Text)
	}
	return resp
}

func (w *interWorld) phase(t *testing.T, name string) state.Phase {
	t.Helper()
	rec, err := w.store.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return rec.Phase
}

// interact posts a signed interaction payload as Slack does and returns the status and body.
func (w *interWorld) interact(t *testing.T, payload any) (int, string, time.Duration) {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	body := url.Values{"payload": {string(raw)}}.Encode()
	ts := nowTS(0)
	req, _ := http.NewRequest(http.MethodPost, w.base+"/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", Sign(testSecret, ts, []byte(body)))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /slack/interactions: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start)
}

func buttonPayload(user, channel, actionID, value, responseURL string, message map[string]any) map[string]any {
	p := map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user}, "channel": map[string]any{"id": channel},
		"trigger_id": "trigger-" + actionID, "response_url": responseURL, "api_app_id": "A0APP",
		"container": map[string]any{"type": "message", "channel_id": channel, "is_ephemeral": message == nil},
		"actions":   []any{map[string]any{"type": "button", "action_id": actionID, "block_id": ActionsBlockID, "value": value}},
	}
	if message != nil {
		p["message"] = message
	}
	return p
}

func submissionPayload(user string, v openedView, block, action, value string) map[string]any {
	return map[string]any{
		"type": "view_submission", "user": map[string]any{"id": user},
		"view": map[string]any{
			"id": "V0001", "type": "modal", "callback_id": v.View.CallbackID, "private_metadata": v.View.PrivateMetadata,
			"state": map[string]any{"values": map[string]any{block: map[string]any{action: map[string]any{"type": "plain_text_input", "value": value}}}},
		},
	}
}

// statusMessage is a status answer as Slack hands it back in a block_actions payload.
func statusMessage(t *testing.T, resp commands.Response) map[string]any {
	t.Helper()
	msg := Render(resp)
	b, _ := json.Marshal(map[string]any{"type": "message", "text": msg.Text, "blocks": msg.Blocks})
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestRenderActions(t *testing.T) {
	resp := commands.Response{Migration: "example", Channel: "C0MIGRATION", Text: "example: phase cutover, day 15 of 14",
		Actions: []commands.Action{commands.ActionCheck, commands.ActionRollback, commands.ActionDecommission}}
	checkGolden(t, "actions", renderGoldenJSON(t, resp))
	blocks := Render(resp).Blocks.([]slack.Block)
	ab, ok := blocks[len(blocks)-1].(*slack.ActionBlock)
	if !ok {
		t.Fatalf("last block is %T, want the actions block", blocks[len(blocks)-1])
	}
	var ids []string
	for _, e := range ab.Elements.ElementSet {
		b := e.(*slack.ButtonBlockElement)
		ids = append(ids, b.ActionID)
		if b.Value != "example" {
			t.Errorf("button %s: value %q, want the migration name", b.ActionID, b.Value)
		}
		destructive := b.ActionID != ActionIDCheck
		if destructive != (b.Confirm != nil) || destructive != (b.Style == slack.StyleDanger) {
			t.Errorf("button %s: confirm %v, style %q; destructive buttons (only) need a danger confirm", b.ActionID, b.Confirm != nil, b.Style)
		}
	}
	if got, want := strings.Join(ids, ","), "migrationbot_check,migrationbot_rollback,migrationbot_decommission"; got != want {
		t.Errorf("buttons %s, want %s", got, want)
	}
	// No migration or no actions: no buttons; many sections: the buttons still fit in 50 blocks.
	if n := len(Render(commands.Response{Text: "x", Actions: resp.Actions}).Blocks.([]slack.Block)); n != 1 {
		t.Errorf("without a migration: %d blocks, want 1 (no buttons)", n)
	}
	long := resp
	long.Text = strings.Repeat(strings.Repeat("y", 1501)+"\n", 40)
	bs := Render(long).Blocks.([]slack.Block)
	if len(bs) > maxBlocks || len(bs) < 20 {
		t.Errorf("long answer: %d blocks, want 20..%d", len(bs), maxBlocks)
	}
	if _, ok := bs[len(bs)-1].(*slack.ActionBlock); !ok {
		t.Errorf("long answer: the buttons were cut")
	}
}

// TestInteractionRunChecks: "Run checks" on a channel report is acknowledged at once, marks the
// button used (replace_original keeps the report, buttons become a note), runs "check alpha" as
// the clicking user and answers through the response_url; the results are stored in Redis.
func TestInteractionRunChecks(t *testing.T) {
	w := newInterWorld(t)
	status := w.must(t, "U0VIEW", "status alpha")
	if len(status.Actions) == 0 {
		t.Fatalf("status offers no actions")
	}
	checkAnswer := func(t *testing.T, answer respPost) {
		t.Helper()
		if answer.ReplaceOriginal || answer.ResponseType != "ephemeral" {
			t.Errorf("answer: replace_original %v, response_type %q; want a new ephemeral message", answer.ReplaceOriginal, answer.ResponseType)
		}
		mustHave(t, "check answer", answer.Text, "alpha: checks in phase cutover", "PASS dns")
	}

	// On the clicker's own (ephemeral) status answer: the button is replaced by a note.
	ru := w.slack.responseURL()
	code, body, took := w.interact(t, buttonPayload("U0VIEW", "C0ALPHA", ActionIDCheck, "alpha", ru, nil))
	if code != 200 || body != "" {
		t.Fatalf("ack: %d %q, want 200 and an empty body", code, body)
	}
	if took > time.Second {
		t.Errorf("ack took %s", took)
	}
	posts := w.slack.responsesTo(t, ru, 2)
	used, answer := posts[0], posts[1]
	usedJSON, _ := json.Marshal(used.Blocks)
	if !used.ReplaceOriginal || strings.Contains(string(usedJSON), ActionIDCheck) || !strings.Contains(string(usedJSON), "U0VIEW\\u003e ran the checks of alpha") {
		t.Errorf("used button: replace_original %v, blocks %s; want the buttons replaced by a note", used.ReplaceOriginal, usedJSON)
	}
	checkAnswer(t, answer)

	// On a message in the channel (a report): its buttons stay for everyone.
	ru = w.slack.responseURL()
	w.interact(t, buttonPayload("U0VIEW", "C0ALPHA", ActionIDCheck, "alpha", ru, statusMessage(t, status)))
	// A replacement would come before the answer (markUsed runs first), so one post is all.
	posts = w.slack.responsesTo(t, ru, 1)
	if len(posts) != 1 || posts[0].ReplaceOriginal {
		t.Errorf("the channel message was changed: %d posts to its response_url, want only the answer", len(posts))
	}
	checkAnswer(t, posts[len(posts)-1])

	snap, err := w.store.Snapshot(context.Background(), "alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Checks[checks.IDDNS]; !ok {
		t.Errorf("check results not stored in Redis: %v", snap.Checks)
	}
}

// TestInteractionRollback: "Roll back…" opens the modal through views.open within 3 seconds with
// the preview and the migration in private_metadata; an empty reason is an inline error; the
// submission rolls back as the submitting user, closes the modal, announces in the channel and
// answers through the button's response_url.
func TestInteractionRollback(t *testing.T) {
	w := newInterWorld(t)
	ru := w.slack.responseURL()
	sent := time.Now()
	code, body, _ := w.interact(t, buttonPayload("U0OPS", "C0OPS", ActionIDRollback, "alpha", ru, nil))
	if code != 200 || body != "" {
		t.Fatalf("ack: %d %q", code, body)
	}
	waitUntil(t, 5*time.Second, "views.open", func() bool { return len(w.slack.viewsSnapshot()) == 1 })
	v := w.slack.viewsSnapshot()[0]
	if d := v.At.Sub(sent); d > 3*time.Second {
		t.Errorf("views.open after %s, want < 3s", d)
	} else {
		t.Logf("rollback: views.open %s after the click", d.Round(time.Microsecond))
	}
	if v.TriggerID != "trigger-"+ActionIDRollback || v.View.CallbackID != CallbackRollback {
		t.Errorf("views.open: trigger %q callback %q", v.TriggerID, v.View.CallbackID)
	}
	viewJSON, _ := json.Marshal(v.View)
	mustHave(t, "rollback modal", string(viewJSON), "alpha goes back to proxied", `"block_id":"rollback_reason"`, `"type":"plain_text_input"`)
	if !strings.Contains(v.View.PrivateMetadata, `"m":"alpha"`) {
		t.Errorf("private_metadata %q does not carry the migration", v.View.PrivateMetadata)
	}
	// The button is marked used (ephemeral original: it becomes the note).
	used := w.slack.responsesTo(t, ru, 1)[0]
	if !used.ReplaceOriginal || !strings.Contains(used.Text, "opened the rollback form") {
		t.Errorf("used button: %+v", used)
	}

	// An empty reason: inline error, nothing changes.
	code, body, _ = w.interact(t, submissionPayload("U0OPS", v, ReasonBlockID, reasonActionID, "   "))
	if code != 200 || !strings.Contains(body, `"response_action":"errors"`) || !strings.Contains(body, `"rollback_reason"`) {
		t.Errorf("empty reason: %d %s, want an errors response on rollback_reason", code, body)
	}
	// A user without the operator role: the refusal shows in the modal.
	code, body, _ = w.interact(t, submissionPayload("U0VIEW", v, ReasonBlockID, reasonActionID, "dns broke"))
	if code != 200 || !strings.Contains(body, `"response_action":"errors"`) || !strings.Contains(body, "operator") {
		t.Errorf("viewer submitting: %d %s, want the refusal in the modal", code, body)
	}
	if p := w.phase(t, "alpha"); p != state.Cutover {
		t.Fatalf("phase %s after refused submissions, want cutover", p)
	}

	code, body, took := w.interact(t, submissionPayload("U0OPS", v, ReasonBlockID, reasonActionID, "IMAP logins failing"))
	if code != 200 || body != "" {
		t.Errorf("submission: %d %q, want 200 and an empty body (the modal closes)", code, body)
	}
	if took >= 3*time.Second {
		t.Errorf("submission answered after %s", took)
	}
	t.Logf("rollback submission answered in %s", took.Round(time.Microsecond))
	if p := w.phase(t, "alpha"); p != state.Proxied {
		t.Errorf("phase %s, want proxied", p)
	}
	hist, _ := w.store.History(context.Background(), "alpha", 1)
	if len(hist) != 1 || hist[0].By != "U0OPS" || hist[0].Reason != "IMAP logins failing" {
		t.Errorf("audit: %+v, want the rollback by U0OPS with the reason", hist)
	}
	answer := w.slack.responsesTo(t, ru, 2)[1]
	mustHave(t, "rollback answer", answer.Text, "alpha rolled back to proxied by <@U0OPS>: IMAP logins failing", "Announced in <#C0ALPHA>")
	waitUntil(t, 5*time.Second, "the announcement", func() bool { return len(w.slack.postsSnapshot()) == 1 })
	if ch := w.slack.postsSnapshot()[0].Get("channel"); ch != "C0ALPHA" {
		t.Errorf("announced in %q, want C0ALPHA", ch)
	}
}

// TestInteractionDecommission: the button issues the challenge (bound to the clicking admin) and
// opens the phrase modal; a wrong phrase is an inline error and changes nothing; the right one
// decommissions. A non-admin gets the refusal instead of a modal.
func TestInteractionDecommission(t *testing.T) {
	w := newInterWorld(t)

	// Refused: an operator may not decommission; no modal.
	ru := w.slack.responseURL()
	w.interact(t, buttonPayload("U0OPS", "C0OPS", ActionIDDecommission, "beta", ru, nil))
	refusal := w.slack.responsesTo(t, ru, 1)[0]
	mustHave(t, "refusal", refusal.Text, "admin")
	if n := len(w.slack.viewsSnapshot()); n != 0 {
		t.Errorf("views.open called %d times for a refused decommission", n)
	}

	ru = w.slack.responseURL()
	sent := time.Now()
	code, body, _ := w.interact(t, buttonPayload("U0ADMIN", "C0OPS", ActionIDDecommission, "beta", ru, nil))
	if code != 200 || body != "" {
		t.Fatalf("ack: %d %q", code, body)
	}
	waitUntil(t, 5*time.Second, "views.open", func() bool { return len(w.slack.viewsSnapshot()) == 1 })
	v := w.slack.viewsSnapshot()[0]
	if d := v.At.Sub(sent); d > 3*time.Second {
		t.Errorf("views.open after %s, want < 3s", d)
	} else {
		t.Logf("decommission: challenge issued and views.open %s after the click", d.Round(time.Microsecond))
	}
	viewJSON, _ := json.Marshal(v.View)
	mustHave(t, "decommission modal", string(viewJSON), "decommission source.beta.example.org", `"block_id":"decommission_phrase"`)
	if v.View.CallbackID != CallbackDecommission {
		t.Errorf("callback_id %q", v.View.CallbackID)
	}

	for _, wrong := range []string{"decommission source.alpha.example.org", "decommission  source.beta.example.org", ""} {
		code, body, _ = w.interact(t, submissionPayload("U0ADMIN", v, PhraseBlockID, phraseActionID, wrong))
		var got struct {
			ResponseAction string            `json:"response_action"`
			Errors         map[string]string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
			t.Fatalf("wrong phrase %q: %d %q", wrong, code, body)
		}
		if got.ResponseAction != "errors" || !strings.Contains(got.Errors[PhraseBlockID], "Type exactly: decommission source.beta.example.org") {
			t.Errorf("wrong phrase %q: %+v, want errors on %s", wrong, got, PhraseBlockID)
		}
	}
	if p := w.phase(t, "beta"); p != state.Cutover {
		t.Fatalf("phase %s after wrong phrases, want cutover", p)
	}
	// The first wrong phrase is recorded as a refused attempt (in the background).
	waitUntil(t, 5*time.Second, "the refused attempt in the audit log", func() bool {
		h, _ := w.store.History(context.Background(), "beta", 5)
		for _, e := range h {
			if strings.Contains(e.Result, "refused") && e.Event == "decommission" {
				return true
			}
		}
		return false
	})

	// Another admin's submission of the right phrase is refused: the challenge is bound to U0ADMIN.
	code, body, _ = w.interact(t, submissionPayload("U0OTHER", v, PhraseBlockID, phraseActionID, "decommission source.beta.example.org"))
	if !strings.Contains(body, `"response_action":"errors"`) {
		t.Errorf("other user: %d %s, want a refusal in the modal", code, body)
	}

	code, body, _ = w.interact(t, submissionPayload("U0ADMIN", v, PhraseBlockID, phraseActionID, " decommission source.beta.example.org "))
	if code != 200 || body != "" {
		t.Errorf("right phrase: %d %q, want 200 and an empty body", code, body)
	}
	if p := w.phase(t, "beta"); p != state.Decommissioned {
		t.Errorf("phase %s, want decommissioned", p)
	}
	posts := w.slack.responsesTo(t, ru, 2)
	mustHave(t, "decommission answer", posts[len(posts)-1].Text, "beta decommissioned by <@U0ADMIN>")
}

// TestInteractionViewsOpenFails: when views.open fails (429 here), the user still gets a usable
// answer: the typed command to run instead; the failure is counted.
func TestInteractionViewsOpenFails(t *testing.T) {
	w := newInterWorld(t)
	w.slack.viewsStatus = http.StatusTooManyRequests
	ru := w.slack.responseURL()
	w.interact(t, buttonPayload("U0OPS", "C0OPS", ActionIDRollback, "alpha", ru, nil))
	p := w.slack.responsesTo(t, ru, 1)[0]
	mustHave(t, "fallback", p.Text, "/migration rollback alpha <reason>")
	_, text := scrape(t, w.base)
	mustHave(t, "metrics", text, `migrationbot_slack_rate_limited_total{method="views.open"} 1`, `migrationbot_slack_api_errors_total{method="views.open"} 1`)
}

func TestInteractionVerification(t *testing.T) {
	w := newInterWorld(t)
	payload, _ := json.Marshal(buttonPayload("U0ADMIN", "C0OPS", ActionIDDecommission, "beta", w.slack.responseURL(), nil))
	body := url.Values{"payload": {string(payload)}}.Encode()
	for _, tc := range []struct {
		name    string
		ts, sig string
		body    string
	}{
		{"unsigned", "", "", body},
		{"wrong secret", nowTS(0), Sign("other", nowTS(0), []byte(body)), body},
		{"stale", nowTS(-10 * time.Minute), Sign(testSecret, nowTS(-10*time.Minute), []byte(body)), body},
		{"tampered", nowTS(0), Sign(testSecret, nowTS(0), []byte(body)), body + "x"},
		{"no payload", nowTS(0), Sign(testSecret, nowTS(0), []byte("a=b")), "a=b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, w.base+"/slack/interactions", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.ts != "" {
				req.Header.Set("X-Slack-Request-Timestamp", tc.ts)
				req.Header.Set("X-Slack-Signature", tc.sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
		})
	}
	// Refused before anything was parsed: nothing started in the background.
	if n := len(w.slack.viewsSnapshot()); n != 0 {
		t.Errorf("views.open called %d times for refused requests", n)
	}
	h, _ := w.store.History(context.Background(), "beta", 10)
	for _, e := range h {
		if strings.Contains(e.Event, "decommission") {
			t.Errorf("a refused request reached the commands: %+v", e)
		}
	}
}

func mustHave(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: got %q, want it to contain %q", what, got, w)
		}
	}
}

// scrape reads GET /metrics at base.
func scrape(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}
