package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/migrationbot/migrationbot/commands"
)

// Defaults of Server.
const (
	DefaultAckAfter        = 2 * time.Second  // answer in the HTTP response if the command is done by then
	DefaultJobTimeout      = 2 * time.Minute  // a command's background work, announcements included
	DefaultShutdownTimeout = 10 * time.Second // draining requests and background work at stop
	DefaultMaxBody         = 256 << 10        // bytes of a request body

	// deliverTimeout bounds an announcement or a response_url post made after the command
	// ran; it gets its own context so that an answer is still delivered when the command's
	// context ended (its timeout, or shutdown).
	deliverTimeout = 10 * time.Second
)

// CommandHandler answers commands; *commands.Handler is one.
type CommandHandler interface {
	Handle(ctx context.Context, req commands.Request) (commands.Response, error)
	IsSlow(text string) bool
}

// Responder answers a slash command later, through its response_url.
type Responder interface {
	Respond(ctx context.Context, responseURL string, msg Message, inChannel bool) error
}

// Server is migrationbot's HTTP face: POST /slack/commands (signed slash commands), POST
// /slack/interactions (signed button clicks and modal submissions), GET /healthz, GET /readyz and
// GET /metrics. Socket Mode (SocketMode) feeds the same code paths.
//
// Every slash command gets its HTTP answer within AckAfter, well inside Slack's 3 seconds,
// whatever Redis, Slack or a check does: the command runs in the background with its own
// context (JobTimeout), and if it is not done by AckAfter (or is known to be slow) the HTTP
// answer is an ephemeral "working on it" and the real answer follows through response_url.
//
// Read-only answers are ephemeral. A transition (Response.Announce) is posted into the
// migration's channel with the Poster and the caller gets an ephemeral answer that says so, or
// says the announcement failed; when the command was typed in the migration's own channel the
// answer is in_channel instead, so the channel sees it once, without a second post.
type Server struct {
	Commands        CommandHandler
	SigningSecret   string
	Poster          Poster                          // channel announcements
	Responder       Responder                       // answers after the ack
	Ready           func(ctx context.Context) error // /readyz; nil: always ready; the error is shown
	Views           ViewOpener                      // views.open for the modals of buttons
	Metrics         *Metrics                        // GET /metrics; nil: no metrics
	Log             *slog.Logger
	Now             func() time.Time // for the signature's timestamp window; default time.Now
	AckAfter        time.Duration
	JobTimeout      time.Duration
	ShutdownTimeout time.Duration
	MaxBody         int64

	muxOnce sync.Once
	mux     *http.ServeMux
	jobs    jobs
}

// WorkingText is the HTTP answer to a command that is still running.
const WorkingText = "Working on it… the answer follows here."

// Serve answers HTTP on ln until ctx is done, then shuts down gracefully: it stops accepting,
// lets requests and background work finish within ShutdownTimeout (cancelling what is left), and
// returns nil. It returns an error only if serving fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	d := s.ShutdownTimeout
	if d <= 0 {
		d = DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log().Warn("http shutdown did not finish in time", "err", err)
	}
	if serveErr == nil {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			serveErr = err
		}
	}
	s.jobs.stop(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", serveErr)
	}
	return nil
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.muxOnce.Do(func() {
		s.mux = http.NewServeMux()
		s.mux.HandleFunc("POST /slack/commands", s.handleCommand)
		s.mux.HandleFunc("POST /slack/interactions", s.handleInteraction)
		if s.Metrics != nil {
			s.mux.Handle("GET /metrics", s.Metrics.Handler())
		}
		s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
		})
		s.mux.HandleFunc("GET /readyz", s.handleReady)
	})
	s.mux.ServeHTTP(w, r)
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.log().Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
	}
	io.WriteString(w, "ok\n")
}

// reply is a slash command's answer as Slack reads it (HTTP body or response_url post).
type reply struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
	Blocks       any    `json:"blocks,omitempty"`
}

type answer struct {
	msg    Message
	failed bool // refused or failed: nothing changed
}

func (s *Server) handleCommand(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := s.log().With("remote", r.RemoteAddr)
	id := commands.NewRequestID()       // in every log line of this request, a refusal's too
	refusing := log.With("request", id) // slashCommand adds it (and more) to log itself
	body, ok := s.readVerified(w, r, refusing, true)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.refuse(w, refusing, "malformed form", err)
		return
	}
	req := commands.Request{
		UserID:    form.Get("user_id"),
		ChannelID: form.Get("channel_id"),
		Text:      form.Get("text"),
		RequestID: id,
		// A redelivered or replayed request carries the same trigger_id: applied once.
		DeliveryID: form.Get("trigger_id"),
	}
	if req.UserID == "" {
		s.refuse(w, refusing, "malformed form", errors.New("no user_id"))
		return
	}
	if n := r.Header.Get("X-Slack-Retry-Num"); n != "" {
		log = log.With("retry", n, "retry_reason", r.Header.Get("X-Slack-Retry-Reason"))
	}
	msg, started := s.slashCommand(r.Context().Done(), log, req, form.Get("response_url"), start)
	if !started {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	writeReply(w, log, msg)
}

// readVerified reads a request's body (capped at MaxBody) and verifies Slack's signature over
// it before anything is parsed; it answers the request itself and returns false when the request
// is refused, or when it is Slack's unsigned ssl_check probe (sslCheck: commands only).
func (s *Server) readVerified(w http.ResponseWriter, r *http.Request, log *slog.Logger, sslCheck bool) ([]byte, bool) {
	maxBody := s.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		s.refuse(w, log, "unreadable or oversized body", err)
		return nil, false
	}
	if sslCheck && IsSSLCheck(r.Header, body) {
		w.WriteHeader(http.StatusOK) // Slack checking the certificate: nothing else to do
		return nil, false
	}
	if err := Verify(s.SigningSecret, r.Header, body, s.now()); err != nil {
		s.refuse(w, log, "signature", err)
		return nil, false
	}
	return body, true
}

// slashCommand runs one slash command, however it arrived (HTTP or Socket Mode), and returns
// what to acknowledge it with: the answer when it is ready within AckAfter of start (and before
// cancel is closed), otherwise WorkingText, the answer following through responseURL. started is
// false when the server is shutting down and the command was not run.
func (s *Server) slashCommand(cancel <-chan struct{}, log *slog.Logger, req commands.Request, responseURL string, start time.Time) (msg Message, started bool) {
	log = log.With("request", req.RequestID, "user", req.UserID, "channel", req.ChannelID, "text", clipRunes(req.Text, 200))
	slow := s.Commands.IsSlow(req.Text)
	deadline := start.Add(s.ackAfter())
	if slow {
		deadline = time.Time{}
	}
	a, ready, started := s.dispatch(cancel, log, req, responseURL, deadline)
	if !started {
		return Message{}, false
	}
	if !ready {
		return Message{Text: WorkingText}, true
	}
	return a.msg, true
}

// dispatch runs req in the background. When its answer is ready before deadline (a zero
// deadline: never wait) and before cancel is closed, dispatch returns it (ready) and the caller
// delivers it; otherwise the background job delivers it through responseURL when it is done.
// Transitions are announced in the migration's channel either way.
func (s *Server) dispatch(cancel <-chan struct{}, log *slog.Logger, req commands.Request, responseURL string, deadline time.Time) (a answer, ready, started bool) {
	wait := !deadline.IsZero()
	answers := make(chan answer) // unbuffered: a send succeeds only while the caller waits
	late := make(chan struct{})  // closed when the caller stopped waiting
	started = s.jobs.start(s.jobTimeout(), func(ctx context.Context) {
		a := s.run(ctx, log, req)
		if wait {
			select {
			case answers <- a:
				return
			case <-late:
			}
		}
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), deliverTimeout)
		defer dcancel()
		s.respondLater(dctx, log, responseURL, a)
	})
	if !started || !wait {
		return answer{}, false, started
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case a := <-answers:
		return a, true, true
	case <-timer.C:
		close(late)
		log.Info("answer is late: acknowledged, it follows through response_url")
	case <-cancel:
		close(late)
	}
	return answer{}, false, true
}

// run answers req (recording metrics), announces a transition, and returns the caller's answer.
func (s *Server) run(ctx context.Context, log *slog.Logger, req commands.Request) answer {
	begin := time.Now()
	resp, err := s.Commands.Handle(ctx, req)
	took := time.Since(begin)
	s.Metrics.Command(req.Text, resp, err, took)
	if err != nil {
		log.Warn("command failed", "err", err, "took_ms", took.Milliseconds())
	} else {
		log.Info("command answered", "failed", resp.Failed, "announce", resp.Announce, "took_ms", took.Milliseconds())
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deliverTimeout)
	defer cancel()
	a := s.announce(dctx, log, req, resp)
	a.failed = resp.Failed || err != nil
	if resp.Pending != "" {
		s.watch(log, resp)
	}
	return a
}

// watch follows a change whose outcome was unknown: if it turns out applied within
// PendingWindow, the channel is told (the caller was told to look there).
func (s *Server) watch(log *slog.Logger, resp commands.Response) {
	settler, ok := s.Commands.(Settler)
	if !ok {
		return
	}
	s.jobs.start(PendingWindow+deliverTimeout, func(ctx context.Context) {
		wctx, cancel := context.WithTimeout(ctx, PendingWindow)
		defer cancel()
		late, applied := watchPending(wctx, settler, resp, pendingEvery)
		if !applied {
			log.Warn("the outcome of a change stayed unknown", "pending", resp.Pending)
			return
		}
		log.Info("a change whose outcome was unknown was applied; announcing it", "pending", resp.Pending)
		if err := s.postAnnouncement(ctx, late); err != nil {
			log.Error("announcement failed", "migration", late.Migration, "announce_channel", late.Channel, "err", err)
		}
	})
}

// announce posts a transition into the migration's channel, unless the command was typed
// there, and returns the caller's answer, which says where the announcement went.
func (s *Server) announce(ctx context.Context, log *slog.Logger, req commands.Request, resp commands.Response) answer {
	var a answer
	// Every transition is posted with chat.postMessage, even when typed in the migration's own
	// channel: an in_channel reply through response_url can fail or come late, and the channel
	// must hear of the change either way. The caller's own answer stays ephemeral.
	if resp.Announce && resp.Channel != "" {
		if err := s.postAnnouncement(ctx, resp); err != nil {
			log.Error("announcement failed", "migration", resp.Migration, "announce_channel", resp.Channel, "err", err)
			resp.Text += fmt.Sprintf("\nThe announcement to <#%s> failed (%s): if the bot is not in that channel, /invite it there; tell the channel yourself meanwhile.", resp.Channel, userCause(err))
		} else {
			resp.Text += fmt.Sprintf("\nAnnounced in <#%s>.", resp.Channel)
		}
	}
	a.msg = Render(resp)
	return a
}

func (s *Server) postAnnouncement(ctx context.Context, resp commands.Response) error {
	if s.Poster == nil {
		return errors.New("no Slack poster configured")
	}
	_, err := s.Poster.PostMessage(ctx, resp.Channel, Render(resp))
	return err
}

func (s *Server) respondLater(ctx context.Context, log *slog.Logger, responseURL string, a answer) {
	if responseURL == "" || s.Responder == nil {
		log.Error("the answer came after the ack but there is no response_url to send it to")
		return
	}
	if err := s.Responder.Respond(ctx, responseURL, a.msg, false); err != nil {
		log.Error("answer through response_url failed", "err", err)
	}
}

// writeReply answers a slash command in its HTTP response: to the caller only (transitions reach
// the channel through chat.postMessage).
func writeReply(w http.ResponseWriter, log *slog.Logger, msg Message) {
	b, err := json.Marshal(reply{ResponseType: "ephemeral", Text: msg.Text, Blocks: msg.Blocks})
	if err != nil {
		log.Error("encode answer", "err", err)
		b, _ = json.Marshal(reply{ResponseType: "ephemeral", Text: msg.Text})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// refuse answers 401 to anything that is not a verified, well-formed slash command, and does
// nothing else. The reason is logged, never sent back.
func (s *Server) refuse(w http.ResponseWriter, log *slog.Logger, what string, err error) {
	log.Warn("request refused", "why", what, "err", err)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) ackAfter() time.Duration {
	if s.AckAfter > 0 {
		return s.AckAfter
	}
	return DefaultAckAfter
}

func (s *Server) jobTimeout() time.Duration {
	if s.JobTimeout > 0 {
		return s.JobTimeout
	}
	return DefaultJobTimeout
}

// jobs runs the background work of commands, each with its own bounded context, and stops it
// at shutdown: no new work, wait for the rest until a deadline, then cancel it and wait.
type jobs struct {
	mu      sync.Mutex
	wg      sync.WaitGroup
	stopped bool
	quit    chan struct{} // closed to cancel every running job
}

func (j *jobs) start(timeout time.Duration, f func(ctx context.Context)) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopped {
		return false
	}
	if j.quit == nil {
		j.quit = make(chan struct{})
	}
	quit := j.quit
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			select {
			case <-quit:
				cancel()
			case <-stop:
			}
		}()
		f(ctx)
	}()
	return true
}

// stop refuses new jobs and waits for the running ones until ctx is done, then cancels them and
// waits (briefly) for them to return.
func (j *jobs) stop(ctx context.Context) {
	j.mu.Lock()
	j.stopped = true
	if j.quit == nil {
		j.quit = make(chan struct{})
	}
	j.mu.Unlock()
	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	close(j.quit)
	select {
	case <-done:
	case <-time.After(deliverTimeout + 2*time.Second):
	}
}
