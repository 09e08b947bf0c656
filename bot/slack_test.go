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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// fakeWebAPI is a fake Slack Web API: chat.postMessage (optionally answering 429 first) and
// usergroups.users.list, recording every call.
type fakeWebAPI struct {
	mu        sync.Mutex
	posts     []timedForm // accepted chat.postMessage calls
	calls     int         // chat.postMessage calls, 429s included
	limited   int         // how many calls to answer 429 Retry-After: 1
	hang      chan struct{}
	groupHits int
	groups    map[string][]string
}

type timedForm struct {
	at   time.Time
	form url.Values
}

func (f *fakeWebAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/api/chat.postMessage":
		f.calls++
		if f.hang != nil {
			f.mu.Unlock()
			select {
			case <-f.hang:
			case <-r.Context().Done():
			}
			f.mu.Lock()
			return
		}
		if f.limited > 0 {
			f.limited--
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"ok":false,"error":"ratelimited"}`)
			return
		}
		f.posts = append(f.posts, timedForm{time.Now(), r.PostForm})
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1700000000.%06d"}`, r.PostForm.Get("channel"), len(f.posts))
	case "/api/usergroups.users.list":
		f.groupHits++
		users, ok := f.groups[r.PostForm.Get("usergroup")]
		if !ok {
			io.WriteString(w, `{"ok":false,"error":"no_such_subteam"}`)
			return
		}
		b, _ := json.Marshal(map[string]any{"ok": true, "users": users})
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeWebAPI) snapshot() (posts []timedForm, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.posts), f.calls
}

func newFakeWebAPI(t *testing.T, f *fakeWebAPI) *slack.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/api/"))
}

// handlerDoer serves slack-go's requests in memory, so a synctest bubble can run them.
type handlerDoer struct{ h http.Handler }

func (d handlerDoer) Do(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	d.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func TestSlackPosterRateLimited(t *testing.T) {
	f := &fakeWebAPI{limited: 1}
	p := NewSlackPoster(newFakeWebAPI(t, f))
	msg := Render(commands.Response{Text: "example moved to cutover\nPASS mapping: empty"})
	start := time.Now()
	ts, err := p.PostMessage(context.Background(), "C0MIGRATION", msg)
	if err != nil {
		t.Fatalf("PostMessage: %v", err)
	}
	posts, calls := f.snapshot()
	if len(posts) != 1 || calls != 2 {
		t.Fatalf("got %d messages in %d calls, want 1 message in 2 calls (429, then ok)", len(posts), calls)
	}
	if waited := posts[0].at.Sub(start); waited < time.Second {
		t.Errorf("posted %s after the start, want after the 1s Retry-After", waited)
	}
	if ts != "1700000000.000001" {
		t.Errorf("ts: got %q", ts)
	}
	form := posts[0].form
	if form.Get("channel") != "C0MIGRATION" || form.Get("text") != msg.Text || form.Get("blocks") == "" {
		t.Errorf("posted form: %v", form)
	}
}

func TestSlackPosterRateLimitBudget(t *testing.T) {
	f := &fakeWebAPI{limited: 100}
	p := &SlackPoster{API: newFakeWebAPI(t, f), MaxRetryWait: 500 * time.Millisecond}
	_, err := p.PostMessage(context.Background(), "C1", Message{Text: "x"})
	var rle *slack.RateLimitedError
	if !errors.As(err, &rle) || errors.Is(err, ErrUncertain) {
		t.Fatalf("PostMessage: got %v, want a RateLimitedError that is not uncertain", err)
	}
	if _, calls := f.snapshot(); calls != 1 {
		t.Errorf("calls: %d, want 1 (a 1s Retry-After exceeds the 500ms budget)", calls)
	}

	// A Retry-After beyond the context's deadline is not waited for either.
	p = NewSlackPoster(p.API)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := p.PostMessage(ctx, "C1", Message{Text: "x"}); !errors.As(err, &rle) {
		t.Fatalf("PostMessage: got %v, want a RateLimitedError", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("gave up after %s, want at once", d)
	}
}

func TestSlackPosterUncertain(t *testing.T) {
	f := &fakeWebAPI{hang: make(chan struct{})}
	defer close(f.hang)
	p := NewSlackPoster(newFakeWebAPI(t, f))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.PostMessage(ctx, "C1", Message{Text: "x"})
	if !errors.Is(err, ErrUncertain) {
		t.Fatalf("PostMessage: got %v, want ErrUncertain", err)
	}
	if _, calls := f.snapshot(); calls != 1 {
		t.Errorf("calls: %d, want 1: an uncertain post is never re-sent", calls)
	}
}

func TestSlackPosterOtherErrorsNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":false,"error":"not_in_channel"}`)
	}))
	defer srv.Close()
	p := NewSlackPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/")))
	_, err := p.PostMessage(context.Background(), "C1", Message{Text: "x"})
	if err == nil || errors.Is(err, ErrUncertain) || calls.Load() != 1 {
		t.Errorf("got %v after %d calls, want a plain not_in_channel error after 1 call", err, calls.Load())
	}
}

// TestSlackPosterPacing: posts into one channel are at least a second apart; other channels are
// not held up. Fake time (synctest), in-memory HTTP.
func TestSlackPosterPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeWebAPI{}
		api := slack.New("xoxb-test", slack.OptionAPIURL("http://slack.invalid/api/"), slack.OptionHTTPClient(handlerDoer{f}))
		p := NewSlackPoster(api)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				if _, err := p.PostMessage(t.Context(), "C1", Message{Text: fmt.Sprint("c1 #", i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Go(func() {
			if _, err := p.PostMessage(t.Context(), "C2", Message{Text: "c2"}); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		posts, _ := f.snapshot()
		if len(posts) != 4 {
			t.Fatalf("got %d posts, want 4", len(posts))
		}
		var c1 []time.Duration
		for _, p := range posts {
			d := p.at.Sub(start)
			switch p.form.Get("channel") {
			case "C1":
				c1 = append(c1, d)
			case "C2":
				if d != 0 {
					t.Errorf("C2 posted after %s, want at once", d)
				}
			}
		}
		if want := []time.Duration{0, time.Second, 2 * time.Second}; !slices.Equal(c1, want) {
			t.Errorf("C1 posts at %v, want %v", c1, want)
		}
	})
}

func TestGroupCache(t *testing.T) {
	f := &fakeWebAPI{groups: map[string][]string{"S0ONCALL": {"U1", "U2"}}}
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	g := &GroupCache{API: newFakeWebAPI(t, f), TTL: 5 * time.Minute, Now: func() time.Time { return now }}
	hits := func() int { f.mu.Lock(); defer f.mu.Unlock(); return f.groupHits }
	ctx := context.Background()

	for range 3 {
		got, err := g.GroupMembers(ctx, "S0ONCALL")
		if err != nil || !slices.Equal(got, []string{"U1", "U2"}) {
			t.Fatalf("GroupMembers: got %v, %v", got, err)
		}
	}
	if hits() != 1 {
		t.Errorf("lookups: %d, want 1 (cached)", hits())
	}
	now = now.Add(5*time.Minute + time.Second)
	f.mu.Lock()
	f.groups["S0ONCALL"] = []string{"U3"}
	f.mu.Unlock()
	if got, _ := g.GroupMembers(ctx, "S0ONCALL"); !slices.Equal(got, []string{"U3"}) || hits() != 2 {
		t.Errorf("after expiry: got %v after %d lookups, want [U3] after 2", got, hits())
	}
	// A failed lookup is an error and is not cached.
	for range 2 {
		if _, err := g.GroupMembers(ctx, "S0MISSING"); err == nil {
			t.Errorf("unknown group: no error")
		}
	}
	if hits() != 4 {
		t.Errorf("lookups: %d, want 4 (failures are not cached)", hits())
	}
	// Slack failing for a known group: its last members are used for a day, then not.
	f.mu.Lock()
	delete(f.groups, "S0ONCALL")
	f.mu.Unlock()
	now = now.Add(time.Hour)
	if got, err := g.GroupMembers(ctx, "S0ONCALL"); err != nil || !slices.Equal(got, []string{"U3"}) {
		t.Errorf("stale fallback: got %v, %v; want [U3]", got, err)
	}
	now = now.Add(DefaultGroupStale)
	if _, err := g.GroupMembers(ctx, "S0ONCALL"); err == nil {
		t.Error("a day-old membership is still used")
	}
}

func TestResponseURLPoster(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	p := &ResponseURLPoster{}
	msg := Render(commands.Response{Text: "done\nFAIL dns: wrong address"})
	if err := p.Respond(context.Background(), srv.URL+"/commands/1", msg, true); err != nil {
		t.Fatal(err)
	}
	if got["response_type"] != "in_channel" || got["text"] != msg.Text || got["replace_original"] != false {
		t.Errorf("posted %v", got)
	}
	if blocks, _ := got["blocks"].([]any); len(blocks) != 1 {
		t.Errorf("blocks: %v", got["blocks"])
	}
}

// TestResponseURLNotLogged: a response_url is a credential; a failed post's error, which ends in
// the logs, does not carry it.
func TestResponseURLNotLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	secret := "http://" + addr + "/commands/T0/123/SECRETRESPONSEKEY"
	err = (&ResponseURLPoster{}).Respond(context.Background(), secret, Message{Text: "hi"}, false)
	if err == nil {
		t.Fatal("a post to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "SECRETRESPONSEKEY") || strings.Contains(err.Error(), "/commands/") {
		t.Errorf("the error carries the response_url: %v", err)
	}
	if !strings.Contains(err.Error(), "response_url") {
		t.Errorf("the error does not say what failed: %v", err)
	}
}

func TestUserCause(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("post to C1: %w", slack.SlackErrorResponse{Err: "not_in_channel"}), "not_in_channel"},
		{fmt.Errorf("post to C1: %w: %w", ErrUncertain, context.DeadlineExceeded), "may still arrive"},
		{fmt.Errorf("post to C1: %w", &slack.RateLimitedError{RetryAfter: time.Second}), "rate-limited"},
		{fmt.Errorf("post to C1: %w", &url.Error{Op: "Post", URL: "https://slack.internal.example/api/chat.postMessage", Err: errors.New("dial tcp: refused")}), "could not be reached"},
	} {
		got := userCause(tc.err)
		if !strings.Contains(got, tc.want) || strings.Contains(got, "example") {
			t.Errorf("userCause(%v) = %q, want it to say %q and no address", tc.err, got, tc.want)
		}
	}
}
