package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/bot"
)

const defaultAddr = ":3000"

// runServe answers Slack over HTTP (and over Socket Mode when SLACK_APP_TOKEN is set) until ctx
// is done, then shuts down gracefully: HTTP drained, commands' background work finished, Socket
// Mode closed, the report scheduler stopped after the report being posted.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("MIGRATIONBOT_CONFIG"), "TOML configuration `file`")
	addr := fs.String("addr", orDefault(getenv("MIGRATIONBOT_ADDR"), defaultAddr), "HTTP listen `address`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the flag package printed the flags
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
	}
	secret := getenv("SLACK_SIGNING_SECRET")
	if secret == "" {
		return usageError{"serve: SLACK_SIGNING_SECRET is not set: it is the app's Signing Secret (Slack app settings, Basic Information), needed to verify every request"}
	}
	token := getenv("SLACK_BOT_TOKEN")
	if token == "" {
		return usageError{"serve: SLACK_BOT_TOKEN is not set: the bot token (xoxb-...) posts announcements and reads user groups"}
	}
	appToken := getenv("SLACK_APP_TOKEN")
	if appToken != "" && !strings.HasPrefix(appToken, "xapp-") {
		return usageError{"serve: SLACK_APP_TOKEN is not an app-level token (xapp-...): Socket Mode needs one with the connections:write scope"}
	}
	// JSON lines on stderr; a command's lines carry its request id. Never a secret: the tokens and
	// the signing secret are only handed to the clients that use them.
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Bind first: a taken port is a startup error, before anything else is opened.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ln.Close()

	metrics := bot.NewMetrics()
	a, err := newApp(ctx, *configPath, getenv, stderr, log)
	if err != nil {
		return err
	}
	defer a.close()
	a.rdb.AddHook(redisErrorHook{metrics})

	opts := []slack.Option{slack.OptionHTTPClient(&http.Client{Timeout: 15 * time.Second})}
	if u := getenv("SLACK_API_URL"); u != "" {
		if !strings.HasSuffix(u, "/") {
			u += "/" // slack-go appends the method name to it
		}
		opts = append(opts, slack.OptionAPIURL(u))
	}
	if appToken != "" {
		opts = append(opts, slack.OptionAppLevelToken(appToken))
	}
	api := slack.New(token, opts...)
	a.handler.Groups = &bot.GroupCache{API: api, Metrics: metrics}

	// Everything below stops when ctx is done, or when Socket Mode fails for good.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// One poster for announcements, reports and views.open: its per-channel pacing covers both
	// kinds of posts, and it counts Slack errors (and the reports posted) in metrics.
	poster := bot.NewSlackPoster(api)
	poster.Metrics = metrics
	stopReports, err := startScheduler(ctx, a, poster)
	if err != nil {
		return err
	}
	defer stopReports() // after the HTTP server drained: waits for a report being posted

	srv := &bot.Server{
		Commands:      a.handler,
		SigningSecret: secret,
		Poster:        poster,
		Views:         poster,
		Responder:     &bot.ResponseURLPoster{Metrics: metrics},
		Metrics:       metrics,
		Log:           log,
	}

	// Socket Mode failing for good (a revoked app token) leaves the HTTP endpoints up, as they
	// are in both modes, and makes /readyz say why Slack no longer reaches the bot.
	var smFailed atomic.Pointer[error]
	smDone := make(chan struct{})
	if appToken != "" {
		sm := bot.NewSocketMode(api, srv, log)
		go func() {
			defer close(smDone)
			if err := sm.Run(ctx); err != nil {
				log.Error("socket mode stopped: Slack no longer reaches this bot over Socket Mode; fix SLACK_APP_TOKEN and restart", "err", err)
				smFailed.Store(&err)
			}
		}()
		log.Info("socket mode enabled: slash commands and interactions also arrive over a WebSocket")
	} else {
		close(smDone)
	}
	srv.Ready = func(ctx context.Context) error {
		if err := smFailed.Load(); err != nil {
			return fmt.Errorf("socket mode stopped (%v): Slack no longer reaches this bot; fix SLACK_APP_TOKEN and restart", *err)
		}
		if a.store.Ping(ctx) != nil {
			return errors.New("the state store (Redis) does not answer")
		}
		return nil
	}

	log.Info("listening", "addr", ln.Addr().String(), "socket_mode", appToken != "")
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	err = srv.Serve(ctx, ln) // returns once HTTP is drained and the commands' background work is done
	cancel()
	<-smDone
	log.Info("stopped")
	return err
}

// redisErrorHook counts failed Redis commands. A missing key (redis.Nil), a WATCH conflict, the
// NOSCRIPT that makes go-redis send a script's source after its SHA, and the connection set-up
// commands go-redis tolerates failing (CLIENT SETINFO on Redis before 7.2, HELLO) are answers,
// not failures.
type redisErrorHook struct{ m *bot.Metrics }

func (h redisErrorHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisErrorHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if redisFailed(cmd, err) {
			h.m.RedisError()
		}
		return err
	}
}

func (h redisErrorHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			for _, c := range cmds {
				if redisFailed(c, c.Err()) {
					h.m.RedisError()
				}
			}
		}
		return err
	}
}

func redisFailed(cmd redis.Cmder, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		return false
	}
	switch cmd.Name() {
	case "client", "hello":
		return false
	}
	return true
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
