// Command migrationbot is a Slack chat-ops bot that steers the last phase of a zero-downtime
// mail migration onto Stalwart. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"

	"github.com/migrationbot/migrationbot/bot"
	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/state"
)

func main() {
	// go-redis logs dial failures on its own; we report Redis errors once, where they happen.
	redis.SetLogger(&logging.VoidLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrationbot:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: migrationbot <command> [flags]

commands:
  shell [--config FILE] [--as USER]   answer /migration commands typed or piped on stdin
  serve [--config FILE] [--addr ADDR] answer Slack over HTTP (POST /slack/commands, POST /slack/interactions,
                                      GET /healthz, GET /readyz, GET /metrics) and, with SLACK_APP_TOKEN, Socket Mode
  help                                this text

environment:
  MIGRATIONBOT_CONFIG   the TOML configuration (or --config)
  MIGRATIONBOT_ADDR     serve's listen address (or --addr), default :3000
  REDIS_URL             redis://, rediss://, cluster or sentinel URL; unset: embedded in-memory Redis
  SLACK_SIGNING_SECRET  serve: verifies every request from Slack
  SLACK_BOT_TOKEN       serve: posts announcements and reports, reads user groups
  SLACK_APP_TOKEN       serve, optional: app-level token (xapp-...) for Socket Mode
  SLACK_API_URL         serve, optional: the Slack Web API base (tests, gateways)`

// run is the whole program, testable: args without the program name.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"missing command\n" + usage}
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "shell":
		return runShell(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "serve":
		return runServe(ctx, args[1:], getenv, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown command %q\n%s", args[0], usage)}
}

// app is the wired program: configuration, Redis, store and command handler.
type app struct {
	cfg     *Config
	rdb     redis.UniversalClient
	store   *state.Store
	handler *commands.Handler
	log     *slog.Logger
	close   func()
}

func newApp(ctx context.Context, configPath string, getenv func(string) string, stderr io.Writer, log *slog.Logger) (*app, error) {
	if configPath == "" {
		return nil, usageError{"no configuration: pass --config FILE or set MIGRATIONBOT_CONFIG"}
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		return nil, err
	}
	rdb, closeRedis, err := openRedis(getenv, stderr)
	if err != nil {
		return nil, err
	}
	if err := pingRedis(ctx, rdb); err != nil {
		log.Warn("redis does not answer yet; commands will say so until it does", "err", err)
	}
	store := state.NewStore(rdb, cfg.keyPrefix())
	h := &commands.Handler{
		Migrations: cfg.migrations,
		Admins:     cfg.Roles.Admins,
		Operators:  cfg.Roles.Operators,
		Store:      store,
		Checker:    &checks.Runner{},
		Log:        log,
	}
	return &app{cfg: cfg, rdb: rdb, store: store, handler: h, log: log, close: closeRedis}, nil
}

func runShell(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", getenv("MIGRATIONBOT_CONFIG"), "TOML configuration `file`")
	as := fs.String("as", "", "Slack user `ID` to run the commands as (default: the first admin)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the flag package printed the flags
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("shell: unexpected argument %q", fs.Arg(0))}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := newApp(ctx, *configPath, getenv, stderr, log)
	if err != nil {
		return err
	}
	defer a.close()
	user := *as
	asSet := false
	fs.Visit(func(f *flag.Flag) { asSet = asSet || f.Name == "as" })
	if user == "" && !asSet {
		user = firstUser(a.cfg.Roles.Admins)
	}
	if user == "" && !asSet {
		return usageError{"shell: [roles] admins names no user ID (U...) to run as: pass --as U..."}
	}
	if !userRE.MatchString(user) {
		return usageError{fmt.Sprintf("shell: --as %q is not a Slack user ID (U...)", user)}
	}
	sh := &bot.Shell{Handler: a.handler, User: user, In: stdin, Out: stdout, Prompt: isTerminal(stdin), Log: log}
	stopReports, err := startLocalScheduler(ctx, a, &bot.ShellPoster{Shell: sh})
	if err != nil {
		return err
	}
	defer stopReports()
	return sh.Run(ctx)
}

func firstUser(ids []string) string {
	for _, id := range ids {
		if userRE.MatchString(id) {
			return id
		}
	}
	return ""
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
