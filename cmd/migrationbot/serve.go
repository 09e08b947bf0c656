package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/bot"
)

const defaultAddr = ":3000"

// runServe answers Slack over HTTP until ctx is done.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("MIGRATIONBOT_CONFIG"), "TOML configuration `file`")
	addr := fs.String("addr", orDefault(getenv("MIGRATIONBOT_ADDR"), defaultAddr), "HTTP listen `address`")
	if err := fs.Parse(args); err != nil {
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Bind first: a taken port is a startup error, before anything else is opened.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer ln.Close()

	a, err := newApp(ctx, *configPath, getenv, stderr, log)
	if err != nil {
		return err
	}
	defer a.close()

	opts := []slack.Option{slack.OptionHTTPClient(&http.Client{Timeout: 15 * time.Second})}
	if u := getenv("SLACK_API_URL"); u != "" {
		if !strings.HasSuffix(u, "/") {
			u += "/" // slack-go appends the method name to it
		}
		opts = append(opts, slack.OptionAPIURL(u))
	}
	api := slack.New(token, opts...)
	a.handler.Groups = &bot.GroupCache{API: api}
	// One poster for announcements and reports: its per-channel pacing covers both.
	poster := bot.NewSlackPoster(api)
	stopReports, err := startScheduler(ctx, a, poster)
	if err != nil {
		return err
	}
	defer stopReports()

	srv := &bot.Server{
		Commands:      a.handler,
		SigningSecret: secret,
		Poster:        poster,
		Responder:     &bot.ResponseURLPoster{},
		Ready:         a.store.Ping,
		Log:           log,
	}
	log.Info("listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	err = srv.Serve(ctx, ln)
	log.Info("stopped")
	return err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
