package bot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/state"
)

// schedPost is one message the fake poster accepted.
type schedPost struct {
	channel, text, ts string
	at                time.Time
}

// schedPoster records posts; fail, when set, decides the outcome of the nth attempt (1-based).
type schedPoster struct {
	mu       sync.Mutex
	posts    []schedPost
	attempts int
	fail     func(n int) error
	delay    time.Duration // how long a post takes
	hang     bool          // a post never returns before its context ends, then is uncertain
}

func (p *schedPoster) PostMessage(ctx context.Context, channel string, msg Message) (string, error) {
	if p.hang {
		p.mu.Lock()
		p.attempts++
		p.mu.Unlock()
		<-ctx.Done()
		return "", fmt.Errorf("post to %s: %w: %v", channel, ErrUncertain, ctx.Err())
	}
	time.Sleep(p.delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.fail != nil {
		if err := p.fail(p.attempts); err != nil {
			return "", err
		}
	}
	ts := fmt.Sprintf("%d.%06d", time.Now().Unix(), p.attempts)
	p.posts = append(p.posts, schedPost{channel: channel, text: msg.Text, ts: ts, at: time.Now().UTC()})
	return ts, nil
}

func (p *schedPoster) in(channel string) []schedPost {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []schedPost
	for _, x := range p.posts {
		if x.channel == channel {
			out = append(out, x)
		}
	}
	return out
}

func (p *schedPoster) count() (attempts, posts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts, len(p.posts)
}

// schedWorld is what a bubble test shares: one miniredis (TTLs on the bubble's clock, dialled in
// memory), the migrations, and one poster standing in for Slack.
type schedWorld struct {
	t      *testing.T
	m      *miniredis.Miniredis
	poster *schedPoster
	migs   []*commands.Migration
	admin  *state.Store
}

// newSchedWorld moves the bubble's clock to start and sets up Redis. Call inside synctest.Test.
func newSchedWorld(t *testing.T, start time.Time, migs ...*commands.Migration) *schedWorld {
	t.Helper()
	time.Sleep(time.Until(start)) // the bubble starts in 2000: jump before any timer exists
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	t.Cleanup(m.Close)
	w := &schedWorld{t: t, m: m, poster: &schedPoster{}, migs: migs}
	w.admin = state.NewStore(w.client(), "t")
	return w
}

func (w *schedWorld) client() redis.UniversalClient {
	rdb := redis.NewClient(&redis.Options{
		Addr:                     "127.0.0.1:6379", // never dialled; an IP so that nothing resolves it
		Dialer:                   func(context.Context, string, string) (net.Conn, error) { return w.m.Dial() },
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	w.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// init stores a migration's record as an admin would.
func (w *schedWorld) init(name string, rec state.Record) {
	w.t.Helper()
	rec.By = "U0ADMIN"
	if rec.ConfidenceDays == 0 {
		rec.ConfidenceDays = 14
	}
	if rec.Since.IsZero() {
		rec.Since = time.Now()
	}
	_, err := w.admin.Apply(context.Background(), name, state.Change{From: state.None, Next: rec,
		Audit: state.Entry{At: time.Now(), By: rec.By, Event: "init"}})
	if err != nil {
		w.t.Fatal(err)
	}
}

// schedReplica is one running scheduler with its own Redis client, store and handler.
type schedReplica struct {
	s    *Scheduler
	stop func()
}

// start runs a schedReplica until stop (or the end of the test).
func (w *schedWorld) start(owner string, tweak func(*SchedulerConfig)) *schedReplica {
	w.t.Helper()
	store := state.NewStore(w.client(), "t")
	h := &commands.Handler{Migrations: w.migs, Store: store}
	var sm []ScheduledMigration
	for _, m := range w.migs {
		sm = append(sm, ScheduledMigration{Name: m.Name, Channel: m.Channel, Schedule: m.ReportSchedule})
	}
	cfg := SchedulerConfig{Migrations: sm, Reports: h, Poster: w.poster, Ledger: store, Owner: owner}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := NewScheduler(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	h.NextReport = s.Next
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				w.t.Errorf("scheduler %s: Run returned %v, want nil", owner, err)
			}
		})
	}
	w.t.Cleanup(stop)
	synctest.Wait() // the catch-up at start is done
	return &schedReplica{s: s, stop: stop}
}

// seed claims and marks posted the latest occurrence of every migration before now, as a
// previous deployment would have left it, so a test counts only what it causes.
func (w *schedWorld) seed() {
	w.t.Helper()
	for _, m := range w.migs {
		sched, err := ParseSchedule(m.ReportSchedule)
		if err != nil {
			w.t.Fatal(err)
		}
		occ := latest(sched, time.Now())
		if occ.IsZero() {
			continue
		}
		ctx := context.Background()
		if _, err := w.admin.ClaimReport(ctx, m.Name, occ, "earlier"); err != nil {
			w.t.Fatal(err)
		}
		if err := w.admin.ReportPosted(ctx, m.Name, occ, "0.1"); err != nil {
			w.t.Fatal(err)
		}
	}
}

// checkClaim fails unless the claim of occurrence records ts.
func (w *schedWorld) checkClaim(name string, occ time.Time, ts string) {
	w.t.Helper()
	c, err := w.admin.GetReportClaim(context.Background(), name, occ)
	if err != nil {
		w.t.Errorf("%s: claim of %s: %v", name, occ.UTC().Format(time.RFC3339), err)
		return
	}
	if c.TS != ts {
		w.t.Errorf("%s: claim of %s: got ts %q (owner %s), want %q", name, occ.UTC().Format(time.RFC3339), c.TS, c.Owner, ts)
	}
}

func schedMig(name, channel, schedule string) *commands.Migration {
	return &commands.Migration{Name: name, Channel: channel, ReportSchedule: schedule, ConfidenceDays: 14, SourceHost: "source." + name}
}

func TestSchedulerThreeReplicasSevenDays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		alpha := schedMig("alpha", "C0ALPHA", "0 9 * * *")
		beta := schedMig("beta", "C0BETA", "CRON_TZ=America/New_York 30 7 * * *")
		w := newSchedWorld(t, start, alpha, beta)
		w.init("alpha", state.Record{Phase: state.Cutover, CutoverAt: start.Add(-24 * time.Hour)})
		w.init("beta", state.Record{Phase: state.Proxied})
		w.seed()
		var reps []*schedReplica
		for i := range 3 {
			reps = append(reps, w.start(fmt.Sprintf("schedReplica-%d", i), nil))
		}
		if a, _ := w.poster.count(); a != 0 {
			t.Fatalf("posts at start after a seeded (posted) occurrence: got %d, want 0", a)
		}
		for day := 1; day <= 7; day++ {
			if day == 4 {
				time.Sleep(11 * time.Hour) // mid-day: between alpha's 09:00 and beta's 12:30 UTC
				reps[0].stop()
				time.Sleep(13 * time.Hour)
			} else {
				time.Sleep(24 * time.Hour)
			}
			synctest.Wait()
			for _, m := range []*commands.Migration{alpha, beta} {
				posts := w.poster.in(m.Channel)
				if len(posts) != day {
					t.Fatalf("day %d: %s: got %d posts, want %d", day, m.Name, len(posts), day)
				}
				last := posts[len(posts)-1]
				sched, _ := ParseSchedule(m.ReportSchedule)
				occ := latest(sched, time.Now())
				if !last.at.Equal(occ) {
					t.Errorf("day %d: %s: posted at %s, want at the occurrence %s", day, m.Name, last.at, occ)
				}
				w.checkClaim(m.Name, occ, last.ts)
			}
		}
		alphaPosts, betaPosts := w.poster.in("C0ALPHA"), w.poster.in("C0BETA")
		if got := alphaPosts[2].text; !strings.HasPrefix(got, "alpha: phase cutover, day 4 of 14: confidence reminder") {
			t.Errorf("alpha's third report: got %q", schedFirstLine(got))
		}
		if got := betaPosts[0].text; !strings.HasPrefix(got, "beta: phase proxied: progress report") {
			t.Errorf("beta's first report: got %q", schedFirstLine(got))
		}
		for _, p := range betaPosts {
			ny, _ := time.LoadLocation("America/New_York")
			if l := p.at.In(ny); l.Hour() != 7 || l.Minute() != 30 {
				t.Errorf("beta posted at %s New York time, want 07:30", l)
			}
		}
		if a, n := w.poster.count(); a != n || n != 14 {
			t.Errorf("attempts %d, posts %d: want 14 and 14", a, n)
		}
	})
}

func schedFirstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

func TestSchedulerCatchUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Started at 12:00: today's 09:00 report was never posted.
		start := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
		alpha := schedMig("alpha", "C0ALPHA", "0 9 * * *")
		weekly := schedMig("weekly", "C0WEEKLY", "0 9 * * 1") // last one: Monday 2026-11-30, 4 days ago
		w := newSchedWorld(t, start, alpha, weekly)
		w.init("alpha", state.Record{Phase: state.Proxied})
		r := w.start("first", nil)
		posts := w.poster.in("C0ALPHA")
		if len(posts) != 1 {
			t.Fatalf("catch-up posts: got %d, want 1", len(posts))
		}
		occ := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
		if !posts[0].at.Equal(start) || !strings.Contains(posts[0].text, "catching up on the report due 2026-12-04 09:00 UTC") {
			t.Errorf("catch-up post at %s: %q", posts[0].at, schedFirstLine(posts[0].text))
		}
		w.checkClaim("alpha", occ, posts[0].ts)
		if n := len(w.poster.in("C0WEEKLY")); n != 0 {
			t.Errorf("weekly: an occurrence 4 days old was caught up (%d posts), want none", n)
		}
		r.stop()

		time.Sleep(time.Hour)
		w.start("second", nil).stop()
		time.Sleep(time.Hour)
		w.start("third", nil)
		if _, n := w.poster.count(); n != 1 {
			t.Fatalf("after two restarts: got %d posts, want still 1", n)
		}
		// The next day's report comes as usual.
		time.Sleep(21 * time.Hour)
		synctest.Wait()
		if n := len(w.poster.in("C0ALPHA")); n != 2 {
			t.Fatalf("next day: got %d posts, want 2", n)
		}
	})
}

func TestSchedulerCatchUpOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newSchedWorld(t, time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), schedMig("alpha", "C0ALPHA", "0 9 * * *"))
		w.start("shell", func(c *SchedulerConfig) { c.CatchUp = -1; c.Ledger = nil })
		if _, n := w.poster.count(); n != 0 {
			t.Fatalf("posts with catch-up off: got %d, want 0", n)
		}
	})
}

func TestSchedulerDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		start    time.Time
		schedule string
		hour     []int // the local hour of each post, in order (a gap time posts an hour late)
	}{
		{"spring 09:00", time.Date(2026, 3, 26, 0, 0, 0, 0, time.UTC), "CRON_TZ=Europe/Berlin 0 9 * * *", []int{9, 9, 9, 9, 9, 9, 9}},
		{"autumn 09:00", time.Date(2026, 10, 22, 0, 0, 0, 0, time.UTC), "CRON_TZ=Europe/Berlin 0 9 * * *", []int{9, 9, 9, 9, 9, 9, 9}},
		// 02:30 does not exist on 2026-03-29 (cron v3 alone skips the day) and exists twice on
		// 2026-10-25 (cron v3 alone posts twice).
		{"spring 02:30", time.Date(2026, 3, 26, 0, 0, 0, 0, time.UTC), "CRON_TZ=Europe/Berlin 30 2 * * *", []int{2, 2, 2, 3, 2, 2, 2}},
		{"autumn 02:30", time.Date(2026, 10, 22, 0, 0, 0, 0, time.UTC), "CRON_TZ=Europe/Berlin 30 2 * * *", []int{2, 2, 2, 2, 2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newSchedWorld(t, tt.start, schedMig("example", "C0MIG", tt.schedule))
				w.init("example", state.Record{Phase: state.Proxied})
				w.seed()
				w.start("a", nil)
				w.start("b", nil)
				time.Sleep(7 * 24 * time.Hour)
				synctest.Wait()
				posts := w.poster.in("C0MIG")
				days := map[string]bool{}
				var hours []int
				for _, p := range posts {
					l := p.at.In(berlin)
					days[l.Format("2006-01-02")] = true
					hours = append(hours, l.Hour())
				}
				if len(posts) != 7 || len(days) != 7 {
					t.Fatalf("got %d posts on %d days, want 7 on 7: %v", len(posts), len(days), posts)
				}
				if fmt.Sprint(hours) != fmt.Sprint(tt.hour) {
					t.Errorf("local hours: got %v, want %v", hours, tt.hour)
				}
			})
		})
	}
}

func TestParseScheduleDST(t *testing.T) {
	tests := []struct {
		spec  string
		from  time.Time
		wantN []string // next occurrences, UTC
	}{
		{"CRON_TZ=Europe/Berlin 30 2 * * *", time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC),
			[]string{"2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"}},
		{"CRON_TZ=Europe/Berlin 30 2 * * *", time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC),
			[]string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"CRON_TZ=America/New_York 30 1 * * *", time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC),
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"CRON_TZ=Europe/Berlin */30 2 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC),
			[]string{"2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:00:00Z"}},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC),
			[]string{"2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"}},
		{"0 9 * * *", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC),
			[]string{"2026-03-29T09:00:00Z", "2026-03-30T09:00:00Z"}},
		{"* * * * *", time.Date(2026, 3, 28, 12, 0, 30, 0, time.UTC),
			[]string{"2026-03-28T12:01:00Z", "2026-03-28T12:02:00Z"}},
		// Hourly and every minute in a zone: the repeated hour at fall-back is another real
		// hour, with its own occurrences (02:30 CEST = 00:30Z, 02:30 CET = 01:30Z).
		{"CRON_TZ=Europe/Berlin 30 * * * *", time.Date(2026, 10, 25, 0, 0, 0, 0, time.UTC),
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:30:00Z"}},
		{"CRON_TZ=Europe/Berlin * * * * *", time.Date(2026, 10, 25, 0, 58, 0, 0, time.UTC),
			[]string{"2026-10-25T00:59:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:01:00Z"}},
		{"CRON_TZ=Europe/Berlin 30 * * * *", time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC),
			[]string{"2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"}},
		// @every is aligned (the same occurrences on every replica), not relative to the start.
		{"@every 90m", time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC),
			[]string{"2026-03-28T13:30:00Z", "2026-03-28T15:00:00Z"}},
		{"@every 90m", time.Date(2026, 3, 28, 12, 17, 3, 0, time.UTC),
			[]string{"2026-03-28T13:30:00Z", "2026-03-28T15:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := ParseSchedule(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			at := tt.from
			var got []string
			for range tt.wantN {
				at = s.Next(at)
				got = append(got, at.UTC().Format(time.RFC3339))
			}
			if strings.Join(got, " ") != strings.Join(tt.wantN, " ") {
				t.Errorf("got %v, want %v", got, tt.wantN)
			}
		})
	}
}

func TestParseScheduleInvalid(t *testing.T) {
	for _, spec := range []string{"", "CRON_TZ=UTC", "CRON_TZ=Nowhere/Atlantis 0 9 * * *", "0 9 * *", "61 * * * *"} {
		if _, err := ParseSchedule(spec); err == nil {
			t.Errorf("ParseSchedule(%q): got nil error", spec)
		}
	}
}

func TestLatest(t *testing.T) {
	s, _ := ParseSchedule("0 9 * * *")
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		t, want time.Time
	}{
		{at, at},
		{at.Add(time.Second), at},
		{at.Add(-time.Second), at.Add(-24 * time.Hour)},
		{at.Add(23 * time.Hour), at},
	} {
		if got := latest(s, tt.t); !got.Equal(tt.want) {
			t.Errorf("latest(%s): got %s, want %s", tt.t, got, tt.want)
		}
	}
	every, _ := ParseSchedule("* * * * *")
	if got, want := latest(every, at.Add(90*time.Second)), at.Add(time.Minute); !got.Equal(want) {
		t.Errorf("every minute: got %s, want %s", got, want)
	}
}

func TestSchedulerNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)))
		s, err := NewScheduler(SchedulerConfig{Reports: &commands.Handler{}, Poster: &schedPoster{}, Migrations: []ScheduledMigration{
			{Name: "utc", Schedule: "0 9 * * *"},
			{Name: "berlin", Schedule: "CRON_TZ=Europe/Berlin 0 14 * * *"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"utc": "2026-12-05T09:00:00Z", "berlin": "2026-12-04T13:00:00Z", "nope": "0001-01-01T00:00:00Z"} {
			if got := s.Next(name).UTC().Format(time.RFC3339); got != want {
				t.Errorf("Next(%s): got %s, want %s", name, got, want)
			}
		}
	})
}

func TestSchedulerClosingReportOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"), schedMig("other", "C0OTHER", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Cutover, CutoverAt: start.Add(-20 * 24 * time.Hour)})
		w.init("other", state.Record{Phase: state.Proxied})
		w.seed()
		for i := range 3 {
			w.start(fmt.Sprint("r", i), nil)
		}
		time.Sleep(2 * 24 * time.Hour)
		synctest.Wait()
		rec, err := w.admin.Get(context.Background(), "example")
		if err != nil {
			t.Fatal(err)
		}
		next := rec
		next.Phase, next.Since, next.By = state.Decommissioned, time.Now(), "U0ADMIN"
		if _, err := w.admin.Apply(context.Background(), "example", state.Change{From: state.Cutover, Version: rec.Version, Next: next,
			Audit: state.Entry{At: time.Now(), By: "U0ADMIN", Event: "decommission"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * 24 * time.Hour)
		synctest.Wait()
		posts := w.poster.in("C0MIG")
		if len(posts) != 3 {
			t.Fatalf("got %d posts, want 2 reminders and 1 closing report", len(posts))
		}
		if !strings.Contains(posts[1].text, "decommissioning the source is now possible") {
			t.Errorf("reminder after the period: %q", posts[1].text)
		}
		if !strings.HasPrefix(posts[2].text, "example: phase decommissioned, closing report") {
			t.Errorf("third post: got %q, want the closing report", schedFirstLine(posts[2].text))
		}
		c, err := w.admin.GetClosingReportClaim(context.Background(), "example")
		if err != nil || c.TS != posts[2].ts {
			t.Errorf("closing claim: got %+v, %v; want ts %s", c, err, posts[2].ts)
		}
		if n := len(w.poster.in("C0OTHER")); n != 7 {
			t.Errorf("the other migration: got %d posts, want 7", n)
		}
		// A restart later posts nothing for example either.
		w.start("late", nil)
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if n := len(w.poster.in("C0MIG")); n != 3 {
			t.Errorf("after a restart: got %d posts, want still 3", n)
		}
	})
}

func TestSchedulerFailedPostReleasesClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.fail = func(n int) error {
			if n == 1 {
				return errors.New("slack: channel_not_found")
			}
			return nil
		}
		// One replica: a second one firing at the same instant could claim right after the
		// release and post, which is right but makes the released claim unobservable.
		w.start("a", func(c *SchedulerConfig) { c.Retries = []time.Duration{time.Minute} })
		occ := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		time.Sleep(time.Until(occ.Add(30 * time.Second)))
		synctest.Wait()
		// Between the failed attempt and the retry the claim is released: anyone may post.
		if _, err := w.admin.GetReportClaim(context.Background(), "example", occ); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("claim after the failed post: got %v, want it released", err)
		}
		time.Sleep(10 * time.Hour)
		synctest.Wait()
		attempts, n := w.poster.count()
		if attempts != 2 || n != 1 {
			t.Fatalf("attempts %d, posts %d: want 2 and 1", attempts, n)
		}
		p := w.poster.in("C0MIG")[0]
		if want := time.Date(2026, 12, 1, 9, 1, 0, 0, time.UTC); !p.at.Equal(want) {
			t.Errorf("retry posted at %s, want %s (one minute later)", p.at, want)
		}
		w.checkClaim("example", occ, p.ts)
	})
}

func TestSchedulerFailedPostReleasedForOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Without retries: the failed post leaves no claim, so a schedReplica starting later catches
		// the occurrence up.
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.fail = func(n int) error {
			if n == 1 {
				return errors.New("slack: internal_error")
			}
			return nil
		}
		w.start("a", func(c *SchedulerConfig) { c.Retries = []time.Duration{} })
		time.Sleep(10 * time.Hour)
		synctest.Wait()
		occ := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		if _, err := w.admin.GetReportClaim(context.Background(), "example", occ); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("claim after a failed post: got %v, want it released", err)
		}
		w.start("b", nil)
		if attempts, n := w.poster.count(); attempts != 2 || n != 1 {
			t.Fatalf("attempts %d, posts %d: want 2 and 1", attempts, n)
		}
		w.checkClaim("example", occ, w.poster.in("C0MIG")[0].ts)
	})
}

func TestSchedulerUncertainPostNotRepeated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.fail = func(n int) error {
			if n == 1 {
				return fmt.Errorf("post to C0MIG: %w: context deadline exceeded", ErrUncertain)
			}
			return nil
		}
		w.start("a", nil)
		w.start("b", nil)
		time.Sleep(10 * time.Hour)
		synctest.Wait()
		w.start("c", nil) // a restart does not catch it up either
		if attempts, n := w.poster.count(); attempts != 1 || n != 0 {
			t.Fatalf("attempts %d, posts %d: want 1 and 0", attempts, n)
		}
		c, err := w.admin.GetReportClaim(context.Background(), "example", time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
		if err != nil || c.Owner != "a" && c.Owner != "b" || !c.Uncertain() {
			t.Fatalf("claim: got %+v, %v; want kept by a or b, marked uncertain", c, err)
		}
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if _, n := w.poster.count(); n != 1 {
			t.Fatalf("next day: got %d posts, want 1", n)
		}
	})
}

func TestSchedulerRedisDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.start("a", func(c *SchedulerConfig) { c.Retries = []time.Duration{time.Minute, time.Minute} })
		time.Sleep(9*time.Hour - time.Second)
		w.m.SetError("LOADING Redis is loading the dataset in memory")
		time.Sleep(90 * time.Second) // the first attempt fails to claim
		w.m.SetError("")
		time.Sleep(time.Hour)
		synctest.Wait()
		posts := w.poster.in("C0MIG")
		if len(posts) != 1 {
			t.Fatalf("got %d posts, want 1 (posted by the retry once Redis answered)", len(posts))
		}
		// go-redis's own retries (with backoff) add a fraction of a second.
		if from, to := time.Date(2026, 12, 1, 9, 2, 0, 0, time.UTC), time.Date(2026, 12, 1, 9, 3, 0, 0, time.UTC); posts[0].at.Before(from) || !posts[0].at.Before(to) {
			t.Errorf("posted at %s, want within a second after %s", posts[0].at, from)
		}
	})
}

func TestSchedulerPanicRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.fail = func(n int) error {
			if n == 1 {
				panic("poster bug")
			}
			return nil
		}
		w.start("a", func(c *SchedulerConfig) { c.Retries = []time.Duration{} })
		time.Sleep(2 * 24 * time.Hour)
		synctest.Wait()
		if attempts, n := w.poster.count(); attempts != 2 || n != 1 {
			t.Fatalf("attempts %d, posts %d: want 2 and 1 (the process survived the panic)", attempts, n)
		}
	})
}

func TestShellPoster(t *testing.T) {
	var out strings.Builder
	p := &ShellPoster{Shell: &Shell{Out: &out}}
	ts, err := p.PostMessage(context.Background(), "C0MIG", Message{Text: "example: report by <@U0ADMIN>"})
	if err != nil || ts == "" {
		t.Fatalf("got %q, %v", ts, err)
	}
	if got, want := out.String(), "[report for #C0MIG]\nexample: report by @U0ADMIN\n\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSchedulerEveryMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newSchedWorld(t, time.Date(2026, 12, 1, 0, 0, 30, 0, time.UTC), schedMig("example", "C0MIG", "* * * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		for i := range 3 {
			w.start(fmt.Sprint("r", i), nil)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		posts := w.poster.in("C0MIG")
		minutes := map[time.Time]bool{}
		for _, p := range posts {
			minutes[p.at] = true
		}
		if len(posts) != 180 || len(minutes) != 180 {
			t.Fatalf("got %d posts in %d distinct minutes, want 180 in 180", len(posts), len(minutes))
		}
	})
}

// TestSchedulerDeadClaimant: a replica that claimed the 09:00 report and died before posting it
// (a deploy at report time) leaves a lease; the replica that replaces it posts the report once
// the lease is over.
func TestSchedulerDeadClaimant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		occ := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, occ.Add(30*time.Second), schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		if won, err := w.admin.ClaimReport(context.Background(), "example", occ, "dead"); err != nil || !won {
			t.Fatalf("claim for the dead replica: %v %v", won, err)
		}
		w.start("new", nil)
		if _, n := w.poster.count(); n != 0 {
			t.Fatalf("posted %d while the dead replica's lease runs, want 0", n)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		posts := w.poster.in("C0MIG")
		if len(posts) != 1 {
			t.Fatalf("after the lease: got %d posts, want 1", len(posts))
		}
		if lease := occ.Add(state.ReportLease); posts[0].at.Before(lease) {
			t.Errorf("posted at %s, before the lease ended at %s", posts[0].at, lease)
		}
		w.checkClaim("example", occ, posts[0].ts)
	})
}

// TestSchedulerEveryMinuteSlowPostReplicaStopped: posts take 3 seconds, so the replicas that lose
// a claim find it unsettled and wait out its lease; that wait must not cost any later occurrence,
// and stopping a replica mid-way changes nothing.
func TestSchedulerEveryMinuteSlowPostReplicaStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Date(2026, 12, 1, 0, 0, 30, 0, time.UTC)
		w := newSchedWorld(t, start, schedMig("example", "C0MIG", "* * * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.delay = 3 * time.Second
		var replicas []*schedReplica
		for i := range 3 {
			replicas = append(replicas, w.start(fmt.Sprint("r", i), nil))
		}
		time.Sleep(5*time.Minute + time.Second) // inside the 00:05 post
		replicas[0].stop()
		time.Sleep(25 * time.Minute)
		synctest.Wait()
		seen := map[string]int{}
		for _, p := range w.poster.in("C0MIG") {
			seen[p.at.Truncate(time.Minute).Format("15:04")]++
		}
		for m := 1; m <= 30; m++ {
			if k := fmt.Sprintf("00:%02d", m); seen[k] != 1 {
				t.Errorf("occurrence %s posted %d times, want 1", k, seen[k])
			}
		}
	})
}

// TestSchedulerUncertainAtDeadline: a post that hangs until the attempt's deadline is uncertain;
// recording that must not fail for the same deadline, or another replica would post it again
// once the lease is over.
func TestSchedulerUncertainAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		occ := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
		w := newSchedWorld(t, occ.Add(-time.Hour), schedMig("example", "C0MIG", "0 9 * * *"))
		w.init("example", state.Record{Phase: state.Proxied})
		w.seed()
		w.poster.hang = true
		short := func(c *SchedulerConfig) { c.JobTimeout = 30 * time.Second }
		w.start("a", short)
		w.start("b", short)
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		if attempts, _ := w.poster.count(); attempts != 1 {
			t.Fatalf("post attempts: %d, want 1 (an uncertain post is never sent again)", attempts)
		}
		c, err := w.admin.GetReportClaim(context.Background(), "example", occ)
		if err != nil || !c.Uncertain() {
			t.Fatalf("claim: %+v, %v; want it marked uncertain", c, err)
		}
	})
}
