package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/state"
)

// Reports renders scheduled reports; *commands.Handler is one.
type Reports interface {
	ScheduledReport(ctx context.Context, name string, occurrence time.Time) (commands.ScheduledReport, error)
}

// ReportLedger holds the claims that make each report occurrence post once across replicas;
// *state.Store is one.
type ReportLedger interface {
	ClaimReport(ctx context.Context, name string, occurrence time.Time, owner string) (bool, error)
	GetReportClaim(ctx context.Context, name string, occurrence time.Time) (state.ReportClaim, error)
	ReportPosted(ctx context.Context, name string, occurrence time.Time, ts string) error
	ReportUncertain(ctx context.Context, name string, occurrence time.Time) error
	ReleaseReport(ctx context.Context, name string, occurrence time.Time, owner string) (bool, error)
	ClaimClosingReport(ctx context.Context, name, owner string) (bool, error)
	ClosingReportPosted(ctx context.Context, name, ts string) error
	ReleaseClosingReport(ctx context.Context, name, owner string) (bool, error)
}

// ScheduledMigration is one migration's report schedule and channel.
type ScheduledMigration struct {
	Name     string
	Channel  string
	Schedule string // cron spec, optionally "CRON_TZ=<zone> ..."; UTC without a zone
}

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	Migrations []ScheduledMigration
	Reports    Reports
	Poster     Poster
	// Ledger claims each occurrence before it is posted. Nil: no claims, every occurrence is
	// posted by this process (the local shell, which must not take reports away from the
	// replicas that post to Slack).
	Ledger ReportLedger
	Owner  string // this replica in the claims (host/pid); default "migrationbot"
	Log    *slog.Logger
	// CatchUp is how far back a start looks for an occurrence nobody posted; 0 means 24 hours,
	// a negative value turns catch-up off.
	CatchUp time.Duration
	// JobTimeout bounds one attempt (claim, checks, post); default 2 minutes.
	JobTimeout time.Duration
	// Retries are the waits before another attempt after a failed post (the claim is released
	// in between); nil means 10s, 1m, 5m.
	Retries []time.Duration
	// Metrics counts the reports posted; nil: those of the Poster when it has any
	// (*SlackPoster.Metrics), else not counted.
	Metrics *Metrics
}

// DefaultCatchUp is how far back a starting scheduler posts an occurrence nobody posted.
const DefaultCatchUp = 24 * time.Hour

// Scheduler posts each migration's scheduled reports into its channel.
type Scheduler struct {
	cfg     SchedulerConfig
	entries []*scheduleEntry
	log     *slog.Logger

	mu     sync.Mutex
	closed map[string]bool // without a ledger: migrations whose closing report was posted

	deliveries sync.WaitGroup // occurrences being delivered (waiting to retry included)
}

type scheduleEntry struct {
	ScheduledMigration
	sched cron.Schedule
}

// NewScheduler parses every schedule; it fails on the first invalid one.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.Reports == nil || cfg.Poster == nil {
		return nil, errors.New("scheduler: Reports and Poster are required")
	}
	s := &Scheduler{cfg: cfg, log: cfg.Log, closed: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Owner == "" {
		s.cfg.Owner = "migrationbot"
	}
	if sp, ok := cfg.Poster.(*SlackPoster); ok && s.cfg.Metrics == nil {
		s.cfg.Metrics = sp.Metrics
	}
	if s.cfg.CatchUp == 0 {
		s.cfg.CatchUp = DefaultCatchUp
	}
	if s.cfg.JobTimeout <= 0 {
		s.cfg.JobTimeout = 2 * time.Minute
	}
	if s.cfg.Retries == nil {
		s.cfg.Retries = []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute}
	}
	for _, m := range cfg.Migrations {
		sched, err := ParseSchedule(m.Schedule)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", m.Name, err)
		}
		s.entries = append(s.entries, &scheduleEntry{ScheduledMigration: m, sched: sched})
	}
	return s, nil
}

// Next returns when the next report of migration name falls due after now (the zero time for
// an unknown migration). It works before Run starts.
func (s *Scheduler) Next(name string) time.Time {
	for _, e := range s.entries {
		if e.Name == name {
			return e.sched.Next(time.Now().UTC())
		}
	}
	return time.Time{}
}

// Run schedules the reports, posts the latest occurrence of each that nobody posted within the
// catch-up window, and blocks until ctx is done; then it stops the schedule, waits for reports
// being posted, and returns nil.
func (s *Scheduler) Run(ctx context.Context) error {
	logger := cronLogger{s.log}
	c := cron.New(
		cron.WithLocation(time.UTC),
		cron.WithLogger(logger),
		// Skip outside Recover: SkipIfStillRunning hands its token back without a defer, so a
		// panic escaping into it would skip every later run.
		cron.WithChain(cron.SkipIfStillRunning(logger), cron.Recover(logger)),
	)
	for _, e := range s.entries {
		c.Schedule(e.sched, cron.FuncJob(func() {
			if occ := latest(e.sched, time.Now().UTC()); !occ.IsZero() {
				s.spawn(ctx, e, occ)
			}
		}))
	}
	c.Start()
	if s.cfg.CatchUp > 0 {
		s.catchUp(ctx)
	}
	<-ctx.Done()
	<-c.Stop().Done()
	s.deliveries.Wait()
	return nil
}

// spawn delivers one occurrence in the background, so that waiting out another replica's lease
// or a retry never holds up the next occurrence (cron would skip it as still running).
func (s *Scheduler) spawn(ctx context.Context, e *scheduleEntry, occ time.Time) {
	s.deliveries.Go(func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("report delivery panicked", "migration", e.Name, "occurrence", occ.UTC().Format(time.RFC3339), "panic", r)
			}
		}()
		s.deliver(ctx, e, occ)
	})
}

// catchUp posts, for each migration, the latest occurrence in (now-CatchUp, now] unless it was
// claimed already (posted, or being posted by another replica).
func (s *Scheduler) catchUp(ctx context.Context) {
	var wg sync.WaitGroup
	now := time.Now().UTC()
	for _, e := range s.entries {
		occ := latest(e.sched, now)
		if occ.IsZero() || !occ.After(now.Add(-s.cfg.CatchUp)) {
			continue
		}
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("catch-up report panicked", "migration", e.Name, "panic", r)
				}
			}()
			s.deliver(ctx, e, occ)
		})
	}
	wg.Wait()
}

// deliver posts the report of one occurrence, retrying after failed posts until it is posted,
// someone else holds it, the retries run out, or ctx is done (then between attempts only: an
// attempt under way finishes, bounded by JobTimeout).
func (s *Scheduler) deliver(ctx context.Context, e *scheduleEntry, occ time.Time) {
	log := s.log.With("migration", e.Name, "occurrence", occ.UTC().Format(time.RFC3339))
	leaseWaited := false
	for attempt := 0; ; {
		retry, held := s.attempt(ctx, log, e, occ)
		var wait time.Duration
		switch {
		case held && !leaseWaited:
			// Another replica holds an unsettled claim: if it died mid-attempt, its lease ends
			// and this one posts; if it posts meanwhile, the next claim fails for good.
			leaseWaited, wait = true, state.ReportLease+time.Second
		case !retry:
			return
		case attempt >= len(s.cfg.Retries):
			log.Error("report not posted: retries exhausted; a replica starting within a day posts it")
			return
		default:
			wait = s.cfg.Retries[attempt]
			attempt++
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			log.Warn("report not posted: shutting down before the next attempt")
			return
		case <-t.C:
		}
	}
}

// attempt claims, renders and posts one occurrence once. retry is true when it failed in a way
// worth another attempt (any claim it took has been released); held is true when another
// replica holds a claim it has not settled yet (posting now, or dead mid-attempt).
func (s *Scheduler) attempt(parent context.Context, log *slog.Logger, e *scheduleEntry, occ time.Time) (retry, held bool) {
	// Not cancelled by shutdown: Run waits for a post under way rather than leave it uncertain.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), s.cfg.JobTimeout)
	defer cancel()
	l, owner := s.cfg.Ledger, s.cfg.Owner
	if l != nil {
		won, err := l.ClaimReport(ctx, e.Name, occ, owner)
		if err != nil {
			log.Warn("claiming the report failed", "err", err)
			return true, false
		}
		if !won {
			c, err := l.GetReportClaim(ctx, e.Name, occ)
			log.Debug("report claimed by another replica", "owner", c.Owner, "posted", c.Posted())
			return false, err == nil && !c.Posted()
		}
	}
	release := func() {
		if l == nil {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
		defer cancel()
		if _, err := l.ReleaseReport(rctx, e.Name, occ, owner); err != nil {
			log.Warn("releasing the report claim failed; it expires by itself", "err", err)
		}
	}
	rep, err := s.render(ctx, e.Name, occ)
	if err != nil {
		log.Warn("rendering the report failed", "err", err)
		release()
		return true, false
	}
	if rep.Closing {
		switch won, err := s.claimClosing(ctx, e.Name); {
		case err != nil:
			log.Warn("claiming the closing report failed", "err", err)
			release()
			return true, false
		case !won:
			return false, false // posted once already: after decommissioning, nothing more
		}
	}
	channel := rep.Channel
	if channel == "" {
		channel = e.Channel
	}
	ts, err := s.post(ctx, channel, Render(rep.Response))
	if errors.Is(err, ErrUncertain) {
		log.Error("report post outcome unknown: it may have been posted, so it is not sent again", "err", err)
		if l != nil {
			s.settle(parent, log, "recording the uncertain report", func(ctx context.Context) error {
				return l.ReportUncertain(ctx, e.Name, occ)
			})
		}
		return false, false
	}
	if err != nil {
		log.Warn("posting the report failed; releasing the claim", "err", err)
		if rep.Closing {
			s.releaseClosing(parent, log, e.Name)
		}
		release()
		return true, false
	}
	log.Info("report posted", "channel", channel, "ts", ts, "closing", rep.Closing)
	s.cfg.Metrics.ReportPosted(rep)
	if l != nil {
		s.settle(parent, log.With("ts", ts), "recording the posted report", func(ctx context.Context) error {
			return l.ReportPosted(ctx, e.Name, occ, ts)
		})
		if rep.Closing {
			s.settle(parent, log.With("ts", ts), "recording the posted closing report", func(ctx context.Context) error {
				return l.ClosingReportPosted(ctx, e.Name, ts)
			})
		}
	}
	return false, false
}

// settle records the outcome of a post in the ledger. It must not fail for want of time: the
// post itself may have used up the attempt's deadline, and an unsettled claim lapses after its
// lease, when another replica would post the report again. So it runs on a context of its own
// and tries three times.
func (s *Scheduler) settle(parent context.Context, log *slog.Logger, what string, f func(context.Context) error) {
	var err error
	for i, pause := range []time.Duration{0, 500 * time.Millisecond, 2 * time.Second} {
		time.Sleep(pause)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			if i > 0 {
				log.Info(what+" succeeded after a retry", "attempts", i+1)
			}
			return
		}
	}
	log.Error(what+" failed; the claim lapses after its lease and the report may be posted again", "err", err)
}

// render is Reports.ScheduledReport with a panic turned into an error (nothing was posted).
func (s *Scheduler) render(ctx context.Context, name string, occ time.Time) (rep commands.ScheduledReport, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("rendering panicked: %v", r)
		}
	}()
	return s.cfg.Reports.ScheduledReport(ctx, name, occ)
}

// post is Poster.PostMessage with a panic turned into ErrUncertain: it may have happened after
// the message was sent.
func (s *Scheduler) post(ctx context.Context, channel string, msg Message) (ts string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("posting panicked: %v: %w", r, ErrUncertain)
		}
	}()
	return s.cfg.Poster.PostMessage(ctx, channel, msg)
}

func (s *Scheduler) claimClosing(ctx context.Context, name string) (bool, error) {
	if s.cfg.Ledger != nil {
		return s.cfg.Ledger.ClaimClosingReport(ctx, name, s.cfg.Owner)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed[name] {
		return false, nil
	}
	s.closed[name] = true
	return true, nil
}

func (s *Scheduler) releaseClosing(parent context.Context, log *slog.Logger, name string) {
	if s.cfg.Ledger == nil {
		s.mu.Lock()
		delete(s.closed, name)
		s.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), 5*time.Second)
	defer cancel()
	if _, err := s.cfg.Ledger.ReleaseClosingReport(ctx, name, s.cfg.Owner); err != nil {
		log.Warn("releasing the closing report claim failed", "err", err)
	}
}

// cronLogger passes cron's messages to slog (cron's Info is chatty: debug level).
type cronLogger struct{ log *slog.Logger }

// Info logs cron's chatter at debug level, except a skipped run (the previous one, retrying a
// failed post, still runs): that occurrence is not posted, which an operator should see.
func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("report occurrence skipped: the previous one is still being posted", kv...)
		return
	}
	l.log.Debug("cron: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}

// ParseSchedule parses a report schedule: a standard 5-field cron spec (or a descriptor such as
// @daily), optionally prefixed with CRON_TZ=<zone>. Specs without a zone are read in UTC. It
// never panics (cron's parser does on some malformed CRON_TZ prefixes). The schedule it returns
// fires each daily wall-clock time once across daylight-saving changes; see dstSafe.
func ParseSchedule(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("invalid schedule %q: %v", spec, r)
		}
	}()
	inner, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid schedule %q: %w", spec, err)
	}
	if every, ok := inner.(cron.ConstantDelaySchedule); ok {
		return aligned{every.Delay}, nil
	}
	spec2, ok := inner.(*cron.SpecSchedule)
	if !ok {
		return inner, nil
	}
	loc := spec2.Location
	if loc == time.Local {
		loc = time.UTC
	}
	return &dstSafe{spec: spec2, loc: loc}, nil
}

// dstSafe wraps a cron spec so that daylight-saving changes in its zone neither skip nor double
// an occurrence (robfig/cron v3 does both, shared/research/slack-go-facts.md 4.3):
//
//   - spring forward: a wall-clock time inside the gap (02:30 when 02:00 jumps to 03:00) fires
//     at the instant that wall clock maps to with the old offset (03:30 in the new one), instead
//     of not at all that day;
//   - fall back: a wall-clock time that occurs twice (02:30 CEST and 02:30 CET) fires the first
//     time only, when the spec names its hours; an hourly or every-minute spec fires in both
//     passes of the repeated hour, which are different real hours.
type dstSafe struct {
	spec *cron.SpecSchedule
	loc  *time.Location
}

// Next returns the first occurrence after t, in t's location.
func (d *dstSafe) Next(t time.Time) time.Time {
	orig := t.Location()
	t = t.In(d.loc)
	for range 1000 {
		n := d.spec.Next(t)
		if n.IsZero() {
			return n
		}
		if g := d.inGap(t, n); !g.IsZero() {
			return g.In(orig)
		}
		if d.repeated(n) {
			t = n
			continue
		}
		return n.In(orig)
	}
	return time.Time{}
}

// inGap returns the earliest occurrence that falls into a spring-forward gap after t and before
// n (mapped to its instant with the old offset), or the zero time.
func (d *dstSafe) inGap(t, n time.Time) time.Time {
	z := t.Add(-3 * time.Hour) // a gap that began shortly before t may still map instants after t
	for range 64 {
		_, end := z.ZoneBounds()
		if end.IsZero() || !end.Before(n) {
			return time.Time{}
		}
		_, before := end.Add(-time.Second).Zone()
		_, after := end.Zone()
		if after > before {
			old := time.FixedZone("", before)
			fixed := *d.spec
			fixed.Location = old
			from := end.Add(-time.Second)
			if from.Before(t) {
				from = t
			}
			c := fixed.Next(from.In(old))
			if !c.IsZero() && c.Before(end.Add(time.Duration(after-before)*time.Second)) && c.Before(n) {
				return c.In(d.loc)
			}
		}
		z = end
	}
	return time.Time{}
}

// everyHour is a cron hour field with all 24 hours set.
const everyHour = 1<<24 - 1

// repeated reports whether n is the second occurrence of a wall-clock time that a fall-back
// change repeats, the first being an occurrence too.
func (d *dstSafe) repeated(n time.Time) bool {
	if d.spec.Hour&everyHour == everyHour {
		// Every hour (or minute): the repeated wall-clock hour is another real hour, with its
		// own occurrences; only a spec naming its hours means each wall-clock time once.
		return false
	}
	start, _ := n.ZoneBounds()
	if start.IsZero() || n.Sub(start) >= 3*time.Hour {
		return false
	}
	_, before := start.Add(-time.Second).Zone()
	_, now := n.Zone()
	if before <= now {
		return false
	}
	p := n.Add(-time.Duration(before-now) * time.Second)
	return p.Before(start) && d.spec.Next(p.Add(-time.Second)).Equal(p)
}

// aligned is "@every <d>" with its occurrences at multiples of d since the zero time rather than
// d after each process started (cron's ConstantDelaySchedule), so that every replica computes the
// same occurrences and the claims keyed by occurrence hold.
type aligned struct{ d time.Duration }

func (a aligned) Next(t time.Time) time.Time { return t.Truncate(a.d).Add(a.d) }

// latest returns the last occurrence of s at or before t, or the zero time when there is none
// within 64 days.
func latest(s cron.Schedule, t time.Time) time.Time {
	for back := time.Minute; back <= 64*24*time.Hour; back *= 2 {
		n := s.Next(t.Add(-back))
		if n.IsZero() || n.After(t) {
			continue
		}
		for {
			m := s.Next(n)
			if m.IsZero() || m.After(t) {
				return n
			}
			n = m
		}
	}
	return time.Time{}
}
