package commands

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/internal/testredis"
	"github.com/migrationbot/migrationbot/state"
)

// reportChecker returns canned results by id, recording what was asked.
type reportChecker struct {
	mu      sync.Mutex
	results map[string]checks.Result
	asked   [][]string
}

func (f *reportChecker) Run(_ context.Context, _ checks.Target, _ checks.Config, ids ...string) []checks.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, ids)
	var out []checks.Result
	for _, id := range ids {
		r, ok := f.results[id]
		if !ok {
			r = checks.Result{Status: checks.Skip, Detail: "not configured"}
		}
		r.ID = id
		out = append(out, r)
	}
	return out
}

func passingResults() map[string]checks.Result {
	return map[string]checks.Result{
		checks.IDMapping: {Status: checks.Pass, Detail: "no account left on old (2 entries, all on new)", Observed: map[string]string{"on_source": "0"}},
		checks.IDDNS:     {Status: checks.Pass, Detail: "mail.example.org -> 203.0.113.10 (new)"},
		checks.IDDirect:  {Status: checks.Pass, Detail: "6/6 ports answer from 203.0.113.10"},
		checks.IDTLS:     {Status: checks.Pass, Detail: "certificate valid until 2027-03-01"},
		checks.IDProxy:   {Status: checks.Pass, Detail: "proxy down, as expected after the cutover"},
		checks.IDCleanup: {Status: checks.Pass, Detail: "migration config removed"},
		checks.IDRelay:   {Status: checks.Pass, Detail: "relay refused (550)"},
		checks.IDSource:  {Status: checks.Pass, Detail: "source answers: * OK IMAP ready"},
	}
}

type reportFixture struct {
	h     *Handler
	check *reportChecker
	now   time.Time
}

func newReportFixture(t *testing.T) *reportFixture {
	t.Helper()
	_, rdb := testredis.Mini(t)
	f := &reportFixture{check: &reportChecker{results: passingResults()}, now: t0}
	f.h = &Handler{
		Migrations: []*Migration{{Name: "example", Channel: "C0MIG", SourceHost: "source.example.org", ConfidenceDays: 14}},
		Admins:     []string{admin},
		Store:      state.NewStore(rdb, "t"),
		Checker:    f.check,
		Now:        func() time.Time { return f.now },
	}
	return f
}

// put stores a record for example directly.
func (f *reportFixture) put(t *testing.T, rec state.Record) {
	t.Helper()
	rec.ConfidenceDays = 14
	rec.By = admin
	if rec.Since.IsZero() {
		rec.Since = f.now
	}
	_, err := f.h.Store.Apply(context.Background(), "example", state.Change{From: state.None, Next: rec,
		Audit: state.Entry{At: f.now, By: admin, Event: "init"}})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *reportFixture) report(t *testing.T, occ time.Time) ScheduledReport {
	t.Helper()
	r, err := f.h.ScheduledReport(context.Background(), "example", occ)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if r.Migration != "example" || r.Channel != "C0MIG" {
		t.Fatalf("report for %q in %q, want example in C0MIG", r.Migration, r.Channel)
	}
	return r
}

var reportCheckLineRE = regexp.MustCompile(`^(PASS|WARN|FAIL|SKIP) [a-z]+(: .*)?$`)

// reportCheckLines returns the lines of text that are check results, and fails on a line that looks
// like one but is indented or malformed.
func reportCheckLines(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if reportCheckLineRE.MatchString(l) {
			out = append(out, l)
		} else if regexp.MustCompile(`^\s+(PASS|WARN|FAIL|SKIP) `).MatchString(l) {
			t.Errorf("indented check line %q", l)
		}
	}
	return out
}

func TestReportByPhase(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name      string
		rec       *state.Record // nil: no state
		at        time.Duration // time since t0 when the report runs
		results   map[string]checks.Result
		noChecker bool
		want      []string // substrings, in order
		wantFirst string   // prefix of the first line
		not       []string
		lines     int // check lines
		closing   bool
	}{
		{
			name: "never initialised",
			want: []string{"example: scheduled report: not initialised yet.", "an admin starts it with /migration init example"},
		},
		{
			name: "proxied, accounts left",
			rec:  &state.Record{Phase: state.Proxied},
			at:   day,
			results: map[string]checks.Result{checks.IDMapping: {Status: checks.Fail, Detail: "3 accounts still on old: a, b, c",
				Observed: map[string]string{"on_source": "3"}}},
			wantFirst: "example: phase proxied: progress report",
			want:      []string{"Accounts still on the source: 3", "Cutover gate (source empty):", "\nFAIL mapping: 3 accounts still on old: a, b, c\n", "The gate fails"},
			lines:     1,
		},
		{
			name:      "proxied, gate passes",
			rec:       &state.Record{Phase: state.Proxied},
			want:      []string{"Accounts still on the source: none", "\nPASS mapping: no account left", "/migration cutover example"},
			lines:     1,
			wantFirst: "example: phase proxied",
		},
		{
			name:      "proxied without checks",
			rec:       &state.Record{Phase: state.Proxied},
			noChecker: true,
			want:      []string{"No checks are configured"},
		},
		{
			name:      "cutover day 3",
			rec:       &state.Record{Phase: state.Cutover, CutoverAt: t0},
			at:        2*day + time.Hour,
			wantFirst: "example: phase cutover, day 3 of 14: confidence reminder",
			want: []string{"Earliest decommission: 2026-12-15 09:00 UTC (in 11 days 23 hours)", "Checklist:", "- DNS repointed",
				"\nPASS dns: mail.example.org -> 203.0.113.10 (new)\n", "- Source alive as the fallback\nPASS source: source answers",
				"Fallback: the source still answers", "/migration rollback example <reason>"},
			not:   []string{"ALERT", "/migration decommission"},
			lines: 7,
		},
		{
			name: "cutover, source down",
			rec:  &state.Record{Phase: state.Cutover, CutoverAt: t0},
			at:   5 * day,
			results: func() map[string]checks.Result {
				r := passingResults()
				r[checks.IDSource] = checks.Result{Status: checks.Fail, Detail: "source unreachable: rollback has no fallback (connection refused)"}
				return r
			}(),
			wantFirst: "ALERT: the source (the fallback) does not answer: source unreachable",
			want:      []string{"example: phase cutover, day 6 of 14", "\nFAIL source: source unreachable", "/migration rollback example <reason>"},
			lines:     7,
		},
		{
			name:      "cutover, last day",
			rec:       &state.Record{Phase: state.Cutover, CutoverAt: t0.Add(5 * time.Hour)},
			at:        14 * day,
			wantFirst: "example: phase cutover, day 14 of 14",
			want:      []string{"Last day: the confidence period ends 2026-12-15 14:00 UTC (in 5 hours)", "/migration decommission example", "/migration rollback example"},
			lines:     7,
		},
		{
			name:      "cutover, period over",
			rec:       &state.Record{Phase: state.Cutover, CutoverAt: t0},
			at:        16 * day,
			wantFirst: "example: phase cutover, day 17 (the 14-day confidence period is over)",
			want:      []string{"decommissioning the source is now possible", "/migration decommission example", "/migration rollback example"},
			lines:     7,
		},
		{
			name:      "cutover without checks",
			rec:       &state.Record{Phase: state.Cutover, CutoverAt: t0},
			noChecker: true,
			want:      []string{"day 1 of 14", "No checks are configured", "/migration rollback example"},
			not:       []string{"Checklist:", "ALERT"},
		},
		{
			name:      "decommissioned",
			rec:       &state.Record{Phase: state.Decommissioned, CutoverAt: t0.Add(-20 * day)},
			wantFirst: "example: phase decommissioned, closing report",
			want:      []string{"rollback is no longer possible", "last scheduled report"},
			closing:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newReportFixture(t)
			if tt.results != nil {
				f.check.results = tt.results
			}
			if tt.noChecker {
				f.h.Checker = nil
			}
			if tt.rec != nil {
				f.put(t, *tt.rec)
			}
			f.now = t0.Add(tt.at)
			r := f.report(t, f.now)
			if r.Closing != tt.closing {
				t.Errorf("closing: got %v, want %v", r.Closing, tt.closing)
			}
			if tt.wantFirst != "" && !strings.HasPrefix(r.Text, tt.wantFirst) {
				t.Errorf("first line: got %q, want it to start with %q", strings.SplitN(r.Text, "\n", 2)[0], tt.wantFirst)
			}
			rest := r.Text
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("report lacks %q (in order); text:\n%s", w, r.Text)
					continue
				}
				rest = rest[i:]
			}
			for _, w := range tt.not {
				if strings.Contains(r.Text, w) {
					t.Errorf("report contains %q; text:\n%s", w, r.Text)
				}
			}
			if got := reportCheckLines(t, r.Text); len(got) != tt.lines {
				t.Errorf("check lines: got %d %q, want %d; text:\n%s", len(got), got, tt.lines, r.Text)
			}
			for _, res := range r.Checks {
				if !strings.Contains("\n"+r.Text+"\n", "\n"+res.Line()+"\n") {
					t.Errorf("result %q is not a line of the text", res.Line())
				}
			}
		})
	}
}

func TestReportStoresFreshChecks(t *testing.T) {
	f := newReportFixture(t)
	f.put(t, state.Record{Phase: state.Cutover, CutoverAt: t0})
	f.report(t, t0)
	snap, err := f.h.Store.Snapshot(context.Background(), "example", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range checklistIDs() {
		if _, ok := snap.Checks[id]; !ok {
			t.Errorf("check %s not stored after the report", id)
		}
	}
	if len(f.check.asked) != 1 {
		t.Fatalf("checker runs: got %d, want 1", len(f.check.asked))
	}
	// status now shows what the report ran.
	resp, _ := f.h.Handle(context.Background(), Request{UserID: admin, Text: "status"})
	if !strings.Contains(resp.Text, "PASS source: source answers") {
		t.Errorf("status after the report lacks the source result:\n%s", resp.Text)
	}
}

func TestReportProxiedRunsOnlyTheGate(t *testing.T) {
	f := newReportFixture(t)
	f.put(t, state.Record{Phase: state.Proxied})
	f.report(t, t0)
	if len(f.check.asked) != 1 || strings.Join(f.check.asked[0], ",") != strings.Join(checks.Gate, ",") {
		t.Fatalf("checks asked: got %v, want %v", f.check.asked, checks.Gate)
	}
}

func TestReportCatchUpNote(t *testing.T) {
	f := newReportFixture(t)
	f.put(t, state.Record{Phase: state.Proxied})
	f.now = t0.Add(3 * time.Hour)
	r := f.report(t, t0)
	if !strings.Contains(r.Text, "catching up on the report due 2026-12-01 09:00 UTC") {
		t.Errorf("late report lacks the catch-up note:\n%s", r.Text)
	}
	if r := f.report(t, f.now); strings.Contains(r.Text, "catching up") {
		t.Errorf("report on time has a catch-up note:\n%s", r.Text)
	}
}

func TestReportNextReport(t *testing.T) {
	f := newReportFixture(t)
	f.put(t, state.Record{Phase: state.Proxied})
	f.h.NextReport = func(string) time.Time { return t0.Add(24 * time.Hour) }
	if r := f.report(t, t0); !strings.Contains(r.Text, "\nNext report: 2026-12-02 09:00 UTC") {
		t.Errorf("report lacks the next report time:\n%s", r.Text)
	}
}

func TestReportErrors(t *testing.T) {
	f := newReportFixture(t)
	if _, err := f.h.Report(context.Background(), "nope", t0); err == nil {
		t.Error("report of an unknown migration: got nil error")
	}
	m, rdb := testredis.Mini(t)
	f.h.Store = state.NewStore(rdb, "t")
	m.SetError("LOADING")
	_, err := f.h.Report(context.Background(), "example", t0)
	if !errors.Is(err, state.ErrUnavailable) {
		t.Errorf("report with Redis failing: got %v, want ErrUnavailable", err)
	}
}

// TestReportStateLost: a migration whose record is gone but whose audit log remembers it is
// reported as lost, not as new.
func TestReportStateLost(t *testing.T) {
	_, rdb := testredis.Mini(t)
	f := newFixture(t, rdb, "lost")
	ctx := context.Background()
	f.ok(t, admin, "init")
	if err := rdb.Del(ctx, f.h.Store.Prefix()+":{example}:state").Err(); err != nil {
		t.Fatal(err)
	}
	r, err := f.h.Report(ctx, "example", f.now)
	if err != nil {
		t.Fatal(err)
	}
	contains(t, r.Text, "example: scheduled report: NO STATE in Redis.", "its audit log remembers it", "/migration history example")
}
