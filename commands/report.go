package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/state"
)

// ScheduledReport is one scheduled report of a migration, ready to post into its channel.
type ScheduledReport struct {
	Response
	// Closing marks the one report after decommissioning: the scheduler posts it once (claimed
	// under its own key) and nothing for later occurrences.
	Closing bool
}

// Report renders the scheduled report of migration name for occurrence (the time the schedule
// fell due; the report itself describes now). It depends on the phase: a progress report in
// proxied, the confidence reminder in cutover, the closing report after decommissioning, and a
// warning with the way to restore when the migration has no state. Checks run fresh (and are
// stored) when a Checker is configured. The error is the internal cause when the report could
// not be made (unknown migration, Redis unavailable): nothing is to be posted then.
func (h *Handler) Report(ctx context.Context, name string, occurrence time.Time) (Response, error) {
	r, err := h.ScheduledReport(ctx, name, occurrence)
	return r.Response, err
}

// ScheduledReport is Report, also saying whether it is the closing report.
func (h *Handler) ScheduledReport(ctx context.Context, name string, occurrence time.Time) (ScheduledReport, error) {
	m := h.Migration(name)
	if m == nil {
		return ScheduledReport{}, fmt.Errorf("report: unknown migration %q", name)
	}
	sctx, cancel := h.storeCtx(ctx)
	snap, err := h.Store.Snapshot(sctx, name, 1)
	cancel()
	if err != nil {
		return ScheduledReport{}, fmt.Errorf("report %s: %w", name, err)
	}
	c := &call{m: m, now: h.now(), log: h.log().With("report", name)}
	var r ScheduledReport
	switch {
	case !snap.Found:
		r.Text = h.missingReport(c, occurrence, len(snap.Events) > 0)
	case snap.Record.Phase == state.Proxied:
		r.Text, r.Checks = h.progressReport(ctx, c, snap.Record, occurrence)
	case snap.Record.Phase == state.Cutover:
		r.Text, r.Checks = h.confidenceReport(ctx, c, snap.Record, occurrence)
	case snap.Record.Phase == state.Decommissioned:
		r.Text = closingReport(c, snap.Record)
		r.Closing = true
	default:
		r.Text = fmt.Sprintf("%s: phase %q is unknown to this version of migrationbot; no report.", name, snap.Record.Phase)
	}
	r.Migration, r.Channel = m.Name, m.Channel
	if snap.Found {
		r.Actions = actionsFor(snap.Record, c.now)
	}
	return r, nil
}

// dueNote says which occurrence a report is for when it is posted late (a catch-up).
func dueNote(occurrence, now time.Time) string {
	if occurrence.IsZero() || now.Sub(occurrence) < 5*time.Minute {
		return ""
	}
	return fmt.Sprintf(" (catching up on the report due %s)", fmtTime(occurrence))
}

func (h *Handler) nextReportLine(b *strings.Builder, name string) {
	if h.NextReport == nil {
		return
	}
	if t := h.NextReport(name); !t.IsZero() {
		fmt.Fprintf(b, "\nNext report: %s", fmtTime(t))
		if m := h.Migration(name); m != nil {
			b.WriteString(localTime(t, m.ReportSchedule))
		}
	}
}

// localTime renders t in the zone of a "CRON_TZ=<zone> ..." schedule, as " (09:00
// Europe/Berlin)"; "" for a schedule in UTC.
func localTime(t time.Time, schedule string) string {
	spec, ok := strings.CutPrefix(schedule, "CRON_TZ=")
	if !ok {
		spec, ok = strings.CutPrefix(schedule, "TZ=")
	}
	zone, _, _ := strings.Cut(spec, " ")
	if !ok || zone == "" || zone == "UTC" {
		return ""
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (%s %s)", t.In(loc).Format("15:04"), zone)
}

// missingReport is the report of a migration without state: never initialised (nothing in the
// audit log either), or lost (the audit log remembers it).
func (h *Handler) missingReport(c *call, occurrence time.Time, hadEvents bool) string {
	name := c.m.Name
	var b strings.Builder
	if !hadEvents {
		fmt.Fprintf(&b, "%s: scheduled report%s: not initialised yet.", name, dueNote(occurrence, c.now))
		fmt.Fprintf(&b, "\nThe migration is configured but was never started: an admin starts it with /migration init %s (in proxied), or /migration init %s <phase> <since> if it is further along.", name, name)
		h.nextReportLine(&b, name)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: scheduled report%s: NO STATE in Redis.", name, dueNote(occurrence, c.now))
	fmt.Fprintf(&b, "\nRedis has lost this migration's record (restarted without persistence, flushed, failed over), though its audit log remembers it. Commands that change it are refused until an admin restores it with /migration init %s <phase> <since>, using the phase and time of the last transition: see /migration history %s.", name, name)
	h.nextReportLine(&b, name)
	return b.String()
}

func (h *Handler) progressReport(ctx context.Context, c *call, rec state.Record, occurrence time.Time) (string, []checks.Result) {
	name := c.m.Name
	var b strings.Builder
	fmt.Fprintf(&b, "%s: progress report%s", headline(rec, c.now), dueNote(occurrence, c.now))
	fmt.Fprintf(&b, "\nSince %s by %s", fmtTime(rec.Since), mention(rec.By))
	if rec.Reason != "" {
		fmt.Fprintf(&b, " (%s)", rec.Reason)
	}
	if h.Checker == nil {
		b.WriteString("\nNo checks are configured: the source-empty gate cannot be verified.")
		h.nextReportLine(&b, name)
		return b.String(), nil
	}
	results := h.runChecks(ctx, c, state.Proxied, checks.Gate...)
	failing := 0
	for _, r := range results {
		if r.ID != checks.IDMapping {
			continue
		}
		switch n, ok := r.Observed["on_source"]; {
		case ok && n == "0":
			b.WriteString("\nAccounts still on the source: none")
		case ok:
			fmt.Fprintf(&b, "\nAccounts still on the source: %s", n)
		default:
			b.WriteString("\nAccounts still on the source: unknown (the mapping table could not be read)")
		}
	}
	b.WriteString("\nCutover gate (source empty):")
	for _, r := range results {
		b.WriteString("\n" + r.Line())
		if r.Status == checks.Fail {
			failing++
		}
	}
	if !gateRan(results) {
		b.WriteString("\n" + gateNotConfigured)
	} else if failing == 0 {
		fmt.Fprintf(&b, "\nThe gate passes: an operator can move to cutover with /migration cutover %s.", name)
	} else {
		b.WriteString("\nThe gate fails: move the remaining accounts before the cutover.")
	}
	h.nextReportLine(&b, name)
	return b.String(), results
}

func checklistIDs() []string {
	var ids []string
	for _, item := range Checklist {
		ids = append(ids, item.IDs...)
	}
	return ids
}

func (h *Handler) confidenceReport(ctx context.Context, c *call, rec state.Record, occurrence time.Time) (string, []checks.Result) {
	name := c.m.Name
	var results []checks.Result
	byID := map[string]checks.Result{}
	if h.Checker != nil {
		results = h.runChecks(ctx, c, state.Cutover, checklistIDs()...)
		for _, r := range results {
			byID[r.ID] = r
		}
	}
	var b strings.Builder
	src, srcChecked := byID[checks.IDSource]
	if srcChecked && src.Status == checks.Fail {
		fmt.Fprintf(&b, "ALERT: the source (the fallback) does not answer: %s. A rollback would have nowhere to go: bring it back before anything else.\n", src.Detail)
	}
	fmt.Fprintf(&b, "%s: confidence reminder%s", headline(rec, c.now), dueNote(occurrence, c.now))
	fmt.Fprintf(&b, "\nSince %s by %s", fmtTime(rec.Since), mention(rec.By))
	if rec.Reason != "" {
		fmt.Fprintf(&b, " (%s)", rec.Reason)
	}
	ends := rec.ConfidenceEnds()
	switch left := ends.Sub(c.now); {
	case left <= 0:
		fmt.Fprintf(&b, "\nThe confidence period ended %s: decommissioning the source is now possible. An admin starts it with /migration decommission %s (it asks for a typed phrase; it is final).", fmtTime(ends), name)
	case left <= 24*time.Hour:
		fmt.Fprintf(&b, "\nLast day: the confidence period ends %s (in %s). From then decommissioning is possible: an admin starts it with /migration decommission %s (final).", fmtTime(ends), until(left), name)
	default:
		fmt.Fprintf(&b, "\nEarliest decommission: %s (in %s)", fmtTime(ends), until(left))
	}
	if h.Checker == nil {
		b.WriteString("\nNo checks are configured: the checklist and the source's reachability cannot be verified.")
	} else {
		b.WriteString("\nChecklist:")
		for _, item := range Checklist {
			fmt.Fprintf(&b, "\n- %s", item.Label)
			for _, id := range item.IDs {
				if r, ok := byID[id]; ok {
					b.WriteString("\n" + r.Line())
				}
			}
		}
		switch {
		case !srcChecked:
		case src.Status == checks.Pass:
			fmt.Fprintf(&b, "\nFallback: the source still answers (%s).", orText(c.m.SourceHost, "source"))
		case src.Status == checks.Skip:
			b.WriteString("\nFallback: not checked (set source_address): confirm by hand that the source still answers.")
		case src.Status == checks.Warn:
			fmt.Fprintf(&b, "\nFallback: %s.", src.Detail)
		default:
			b.WriteString("\nFallback: the source does NOT answer (see the alert above).")
		}
	}
	fmt.Fprintf(&b, "\nTo roll back (until decommissioning): /migration rollback %s <reason>", name)
	h.nextReportLine(&b, name)
	return b.String(), results
}

func closingReport(c *call, rec state.Record) string {
	name := c.m.Name
	var b strings.Builder
	fmt.Fprintf(&b, "%s: phase decommissioned, closing report", name)
	fmt.Fprintf(&b, "\nDecommissioned %s by %s.", fmtTime(rec.Since), mention(rec.By))
	fmt.Fprintf(&b, " The migration is complete: %s is no longer a fallback and rollback is no longer possible.", orText(c.m.SourceHost, "the source"))
	if !rec.CutoverAt.IsZero() {
		fmt.Fprintf(&b, "\nCutover %s; confidence period %d days.", fmtTime(rec.CutoverAt), rec.ConfidenceDays)
	}
	fmt.Fprintf(&b, "\nThis is the last scheduled report for %s.", name)
	return b.String()
}
