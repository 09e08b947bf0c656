package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/migrationbot/migrationbot/bot"
)

// startScheduler posts every migration's scheduled reports with poster until ctx is done or stop
// is called, claiming each occurrence in Redis so that however many replicas run, each report is
// posted once, and catching up on an occurrence of the last 24 hours that nobody posted. It sets
// the handler's NextReport (status shows it). stop cancels and waits for a report being posted.
func startScheduler(ctx context.Context, a *app, poster bot.Poster) (stop func(), err error) {
	return runScheduler(ctx, a, poster, true)
}

// startLocalScheduler is the shell's: it prints reports as they fall due, without claims and
// without catching up, so that a shell pointed at a shared Redis never takes a report away from
// the replicas that post to Slack.
func startLocalScheduler(ctx context.Context, a *app, poster bot.Poster) (stop func(), err error) {
	return runScheduler(ctx, a, poster, false)
}

func runScheduler(ctx context.Context, a *app, poster bot.Poster, shared bool) (func(), error) {
	var ms []bot.ScheduledMigration
	for _, m := range a.cfg.migrations {
		ms = append(ms, bot.ScheduledMigration{Name: m.Name, Channel: m.Channel, Schedule: m.ReportSchedule})
	}
	cfg := bot.SchedulerConfig{Migrations: ms, Reports: a.handler, Poster: poster, Owner: replicaID(), Log: a.log}
	if shared {
		cfg.Ledger = a.store
	} else {
		cfg.CatchUp = -1
	}
	s, err := bot.NewScheduler(cfg)
	if err != nil {
		return nil, fmt.Errorf("report schedule: %w", err)
	}
	a.handler.NextReport = s.Next
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			a.log.Error("report scheduler stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// replicaID names this process in the report claims: host, pid and a random suffix.
func replicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "migrationbot"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
