package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/state"
)

// MaxReasonLen bounds a reason kept in the audit log.
const MaxReasonLen = 500

func (h *Handler) noArgs(c *call) error {
	if len(c.args) > 0 {
		return h.stray(c, c.args[0])
	}
	return nil
}

// stray answers a word a subcommand did not expect at the place where a migration name may
// stand: when no name was given, the word was most likely meant as one.
func (h *Handler) stray(c *call, word string) error {
	if !c.named {
		return &UsageError{Msg: fmt.Sprintf("%q is not a configured migration (%s)", clip(word, 40), strings.Join(h.names(), ", "))}
	}
	return h.unexpected(word)
}

// strayOrNumber answers a first word that is not the number expected there, when no migration
// was named: followed by a number it was meant as a name ("extend exmaple 7 ..."); otherwise it
// could be either ("extend ten days"), and the answer says so.
func (h *Handler) strayOrNumber(c *call, number string) error {
	if len(c.args) > 1 {
		if _, err := strconv.Atoi(c.args[1]); err == nil {
			return h.stray(c, c.args[0])
		}
	}
	return &UsageError{Msg: fmt.Sprintf("%q is neither %s nor a configured migration (%s)", clip(c.args[0], 40), number, strings.Join(h.names(), ", "))}
}

func (h *Handler) unexpected(word string) error {
	return &UsageError{Msg: fmt.Sprintf("unexpected %q", clip(word, 40))}
}

func reasonOf(words []string, what string) (string, error) {
	r := strings.Join(words, " ")
	// Empty quotes, or only punctuation, say nothing: a reason has a letter or digit.
	if !strings.ContainsFunc(r, func(c rune) bool { return unicode.IsLetter(c) || unicode.IsDigit(c) }) {
		return "", &UsageError{Msg: what + " needs a reason"}
	}
	if len(r) > MaxReasonLen {
		return "", &UsageError{Msg: fmt.Sprintf("reason too long (%d characters, at most %d)", len(r), MaxReasonLen)}
	}
	return r, nil
}

func (h *Handler) status(ctx context.Context, c *call) (Response, error) {
	if err := h.noArgs(c); err != nil {
		return Response{}, err
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	snap, err := h.Store.Snapshot(sctx, c.m.Name, 5)
	if err != nil {
		return Response{}, err
	}
	var b strings.Builder
	if !snap.Found {
		if _, _, ok := lastPhase(snap.Events); !ok {
			fmt.Fprintf(&b, "%s: no state in Redis: not initialised yet, or Redis lost everything about it (its audit log too).\nAn admin starts it with /migration init %s, or restores it with /migration init %s <phase> <since> (the phase and time of the last transition are in the announcements in %s). Commands that change it are refused until then.",
				c.m.Name, c.m.Name, c.m.Name, channelMention(c.m.Channel))
			return Response{Text: b.String(), Failed: true}, nil
		}
		fmt.Fprintf(&b, "%s: no state in Redis.\nRedis lost this migration's record (restarted without persistence, flushed, failed over). Commands that change it are refused until an admin restores it with /migration init %s <phase> <since>, from the last transition below.", c.m.Name, c.m.Name)
		b.WriteString("\nThe audit log survived; its last events:")
		writeEvents(&b, snap.Events)
		return Response{Text: b.String(), Failed: true}, nil
	}
	rec := snap.Record
	last := decodeChecks(snap.Checks)
	b.WriteString(headline(rec, c.now))
	fmt.Fprintf(&b, "\nSince %s by %s", fmtTime(rec.Since), mention(rec.By))
	if rec.Reason != "" {
		fmt.Fprintf(&b, " (%s)", rec.Reason)
	}
	switch rec.Phase {
	case state.Cutover:
		ends := rec.ConfidenceEnds()
		if c.now.Before(ends) {
			fmt.Fprintf(&b, "\nEarliest decommission: %s (in %s)", fmtTime(ends), until(ends.Sub(c.now)))
		} else {
			fmt.Fprintf(&b, "\nConfidence period over since %s: decommissioning is possible (/migration decommission %s)", fmtTime(ends), c.m.Name)
		}
		b.WriteString("\nChecklist:")
		for _, item := range Checklist {
			if !anyResult(last, item.IDs) {
				fmt.Fprintf(&b, "\n  %s: not checked yet", item.Label)
				continue
			}
			fmt.Fprintf(&b, "\n  %s", item.Label)
			writeLast(&b, last, item.IDs, rec.Phase, c.now, "    ")
		}
		if r, ok := last[checks.IDMapping]; ok {
			// The gate is judged in proxied; its last result is history worth seeing.
			fmt.Fprintf(&b, "\nMapping table (the cutover gate):\n  %s (%s ago, while %s)", r.Line(), ago(c.now.Sub(r.At)), orText(r.Phase, "proxied"))
		}
	case state.Proxied:
		b.WriteString("\nCutover gate (source empty):")
		writeLast(&b, last, checks.Gate, rec.Phase, c.now, "  ")
	case state.Decommissioned:
		b.WriteString("\nFinal: the source is decommissioned; there is nothing to roll back to.")
	}
	if rec.Phase != state.Decommissioned {
		h.nextReportLine(&b, c.m.Name)
	}
	if len(snap.Events) > 0 {
		b.WriteString("\nLast events:")
		writeEvents(&b, snap.Events)
	}
	return Response{Text: b.String(), Actions: actionsFor(rec, c.now)}, nil
}

// RollbackPreview says what rolling back migration name would mean now: the phase it would
// leave and the runbook shaped by the last check results. It changes nothing.
func (h *Handler) RollbackPreview(ctx context.Context, name string) (string, error) {
	m := h.Migration(name)
	if m == nil {
		return "", fmt.Errorf("rollback preview: unknown migration %q", name)
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	snap, err := h.Store.Snapshot(sctx, name, 0)
	if err != nil {
		return "", fmt.Errorf("rollback preview %s: %w", name, err)
	}
	if !snap.Found {
		return "", fmt.Errorf("rollback preview %s: %w", name, state.ErrNotFound)
	}
	if _, err := state.Next(snap.Record.Phase, state.EventRollback); err != nil {
		return fmt.Sprintf("%s: %s; rolling back is not possible.", name, err), nil
	}
	return fmt.Sprintf("%s goes back to proxied: the proxy is started again and %s points to it.\n%s",
		name, orText(m.PublicHostname, "the public hostname"), rollbackRunbook(m, decodeChecks(snap.Checks))), nil
}

// ChecklistItem is one step of the runbook inside cutover and the checks that verify it.
type ChecklistItem struct {
	Label string
	IDs   []string
}

// Checklist is the runbook inside cutover, in order.
var Checklist = []ChecklistItem{
	{"DNS repointed to the new deployment", []string{checks.IDDNS}},
	{"Clients reach the new server directly", []string{checks.IDDirect, checks.IDTLS}},
	{"Proxy stopped", []string{checks.IDProxy}},
	{"Migration config removed", []string{checks.IDCleanup, checks.IDRelay}},
	{"Source alive as the fallback", []string{checks.IDSource}},
}

func headline(rec state.Record, now time.Time) string {
	s := fmt.Sprintf("%s: phase %s", rec.Name, rec.Phase)
	if rec.Phase == state.Cutover {
		day := int(now.Sub(rec.CutoverAt)/(24*time.Hour)) + 1
		if day < 1 {
			day = 1
		}
		if day > rec.ConfidenceDays {
			s += fmt.Sprintf(", day %d (the %d-day confidence period is over)", day, rec.ConfidenceDays)
		} else {
			s += fmt.Sprintf(", day %d of %d", day, rec.ConfidenceDays)
		}
	}
	return s
}

// writeLast writes the last result of each check; a result judged against another phase (taken
// before the last transition) is not shown as current.
func writeLast(b *strings.Builder, last map[string]checks.Result, ids []string, phase state.Phase, now time.Time, indent string) {
	for _, id := range ids {
		r, ok := current(last, id, phase)
		switch {
		case ok:
			fmt.Fprintf(b, "\n%s%s (%s ago)", indent, r.Line(), ago(now.Sub(r.At)))
		case r.ID != "":
			fmt.Fprintf(b, "\n%s%s %s: not checked since the move to %s (last %s, while %s)", indent, checks.Skip.Word(), id, phase, ago(now.Sub(r.At))+" ago", r.Phase)
		default:
			fmt.Fprintf(b, "\n%s%s %s: not checked yet", indent, checks.Skip.Word(), id)
		}
	}
}

// anyResult reports whether any of the checks ids has a stored result.
func anyResult(last map[string]checks.Result, ids []string) bool {
	for _, id := range ids {
		if _, ok := last[id]; ok {
			return true
		}
	}
	return false
}

// current returns the last result of check id if it was judged against phase; otherwise ok is
// false and the result (if any) is returned for reference.
func current(last map[string]checks.Result, id string, phase state.Phase) (checks.Result, bool) {
	r, ok := last[id]
	return r, ok && (r.Phase == "" || r.Phase == string(phase))
}

func writeEvents(b *strings.Builder, events []state.Entry) {
	for _, e := range events {
		fmt.Fprintf(b, "\n  %s", eventLine(e))
	}
}

func eventLine(e state.Entry) string {
	s := fmt.Sprintf("%s %s by %s", fmtTime(e.At), e.Event, mention(e.By))
	if e.From != e.To {
		s += fmt.Sprintf(": %s -> %s", orNone(e.From), e.To)
	}
	if e.Result != "" && e.Result != "ok" {
		s += " [" + e.Result + "]"
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

func orNone(p state.Phase) string {
	if p == state.None {
		return "none"
	}
	return string(p)
}

func decodeChecks(stored map[string]string) map[string]checks.Result {
	out := make(map[string]checks.Result, len(stored))
	for id, js := range stored {
		var r checks.Result
		if json.Unmarshal([]byte(js), &r) == nil {
			out[id] = r
		}
	}
	return out
}

func encodeChecks(results []checks.Result) map[string]string {
	out := make(map[string]string, len(results))
	for _, r := range results {
		if js, err := json.Marshal(r); err == nil {
			out[r.ID] = string(js)
		}
	}
	return out
}

// runChecks runs the named checks (all when none) for phase p and stores the results.
func (h *Handler) runChecks(ctx context.Context, c *call, p state.Phase, ids ...string) []checks.Result {
	results := h.probe(ctx, c, p, ids...)
	h.saveChecks(ctx, c, results)
	return results
}

// probe runs the named checks (all when none) for phase p, each under the migration's timeout.
func (h *Handler) probe(ctx context.Context, c *call, p state.Phase, ids ...string) []checks.Result {
	if h.Checker == nil {
		return nil
	}
	timeout := c.m.Checks.Timeout
	if timeout <= 0 {
		timeout = checks.DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	defer cancel()
	return h.Checker.Run(cctx, c.m.Target(p), c.m.Checks, ids...)
}

// saveChecks stores check results for status and the reports; a failure is only logged.
func (h *Handler) saveChecks(ctx context.Context, c *call, results []checks.Result) {
	if len(results) == 0 {
		return
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	if err := h.Store.SaveChecks(sctx, c.m.Name, encodeChecks(results)); err != nil {
		c.logger().Warn("saving check results failed", "migration", c.m.Name, "err", err)
	}
}

func (h *Handler) check(ctx context.Context, c *call) (Response, error) {
	if err := h.noArgs(c); err != nil {
		return Response{}, err
	}
	sctx, cancel := h.storeCtx(ctx)
	rec, err := h.Store.Get(sctx, c.m.Name)
	cancel()
	if err != nil {
		return Response{}, err
	}
	if h.Checker == nil {
		return Response{Text: fmt.Sprintf("%s: no checks are configured.", c.m.Name)}, nil
	}
	results := h.runChecks(ctx, c, rec.Phase)
	counts := map[checks.Status]int{}
	for _, r := range results {
		counts[r.Status]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: checks in phase %s: %d pass, %d warn, %d fail, %d skipped", c.m.Name, rec.Phase,
		counts[checks.Pass], counts[checks.Warn], counts[checks.Fail], counts[checks.Skip])
	for _, r := range results {
		b.WriteString("\n" + r.Line())
	}
	return Response{Text: b.String(), Checks: results}, nil
}

func (h *Handler) history(ctx context.Context, c *call) (Response, error) {
	n := 10
	if len(c.args) > 0 {
		v, err := strconv.Atoi(c.args[0])
		if err != nil && !c.named {
			return Response{}, h.strayOrNumber(c, "a number of events")
		}
		if err != nil || v < 1 || v > 100 {
			return Response{}, &UsageError{Msg: fmt.Sprintf("n must be a number from 1 to 100, not %q", clip(c.args[0], 20))}
		}
		n = v
	}
	if len(c.args) > 1 {
		return Response{}, h.unexpected(c.args[1])
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	events, err := h.Store.History(sctx, c.m.Name, int64(n))
	if err != nil {
		return Response{}, err
	}
	if len(events) == 0 {
		return Response{Text: fmt.Sprintf("%s: no events recorded.", c.m.Name)}, nil
	}
	var b strings.Builder
	if len(events) == 1 {
		fmt.Fprintf(&b, "%s: last event:", c.m.Name)
	} else {
		fmt.Fprintf(&b, "%s: last %d events, newest first:", c.m.Name, len(events))
	}
	writeEvents(&b, events)
	return Response{Text: b.String()}, nil
}

// refusal answers a change that does not apply to the record's phase (err from state.Next).
func refusal(name string, rec state.Record, err error) Response {
	if te := (*state.TransitionError)(nil); errors.As(err, &te) && te.Repeated {
		// "already in cutover (by X at T)": who moved it there, and when.
		return Response{Failed: true, Text: fmt.Sprintf("%s: %s (by %s at %s); nothing changed.", name, err, mention(rec.By), fmtTime(rec.Since))}
	}
	return Response{Failed: true, Text: fmt.Sprintf("%s: %s; nothing changed. It is in phase %s since %s (by %s).", name, err, rec.Phase, fmtTime(rec.Since), mention(rec.By))}
}

// conflict answers a change that lost a race: the record moved since it was read.
func conflict(name string, ev state.Event, cur state.Record) Response {
	if _, err := state.Next(cur.Phase, ev); err != nil {
		return refusal(name, cur, err)
	}
	return Response{Failed: true, Text: fmt.Sprintf("%s changed while this ran (now %s, by %s at %s); nothing changed. Check /migration status %s and try again.",
		name, cur.Phase, mention(cur.By), fmtTime(cur.Since), name)}
}

// duplicate answers a Slack request that arrived again after it was applied.
func duplicate(name string, cur state.Record) Response {
	return Response{Failed: true, Text: fmt.Sprintf("%s: this request arrived twice (Slack delivered it again) and was applied the first time only; nothing changed now. It is in phase %s since %s (by %s).",
		name, cur.Phase, fmtTime(cur.Since), mention(cur.By))}
}

// applied maps the outcome of Store.Apply to a response, or returns the store error.
func applied(name string, ev state.Event, err error) (Response, bool, error) {
	var ce *state.ConflictError
	if errors.As(err, &ce) {
		return conflict(name, ev, ce.Current), false, nil
	}
	var de *state.DuplicateError
	if errors.As(err, &de) {
		return duplicate(name, de.Current), false, nil
	}
	if err != nil {
		return Response{}, false, err
	}
	return Response{}, true, nil
}

func (h *Handler) cutover(ctx context.Context, c *call) (Response, error) {
	force := false
	reason := ""
	if len(c.args) > 0 {
		if !strings.EqualFold(c.args[0], "force") {
			return Response{}, h.stray(c, c.args[0])
		}
		if c.role < Admin {
			return h.denied(&call{req: c.req, sub: &Subcommand{Name: "cutover force"}, unchecked: c.unchecked}, Admin), nil
		}
		r, err := reasonOf(c.args[1:], "cutover force")
		if err != nil {
			return Response{}, err
		}
		force, reason = true, r
	}
	// The gate is read-only and quick (the mapping table), so it runs first and the transition
	// is one round trip that checks the phase; a repeated cutover learns "already in cutover"
	// from the script's reply.
	gate := h.probe(ctx, c, state.Proxied, checks.Gate...)
	var failing []checks.Result
	for _, r := range gate {
		if r.Status == checks.Fail {
			failing = append(failing, r)
		}
	}
	if len(failing) > 0 && !force {
		// Refuse for the phase first if the gate is moot: no state, or not in proxied.
		sctx, cancel := h.storeCtx(ctx)
		rec, err := h.Store.Get(sctx, c.m.Name)
		cancel()
		if err != nil {
			return Response{}, err
		}
		if _, err := state.Next(rec.Phase, state.EventCutover); err != nil {
			return refusal(c.m.Name, rec, err), nil
		}
		h.saveChecks(ctx, c, gate)
		var b strings.Builder
		fmt.Fprintf(&b, "%s: cutover refused, the source-empty gate failed; nothing changed.", c.m.Name)
		for _, r := range failing {
			b.WriteString("\n" + r.Line())
		}
		fmt.Fprintf(&b, "\nFix these, or an admin overrides with /migration cutover %s force <reason>.", c.m.Name)
		return Response{Text: b.String(), Failed: true, Checks: gate}, nil
	}
	// A force past a gate that did not fail is a normal cutover; the reason is kept.
	needless := ""
	if force && len(failing) == 0 {
		force, needless = false, reason
	}
	event := string(state.EventCutover)
	switch {
	case force:
		event = "cutover force"
	case !gateRan(gate):
		reason = "source-empty gate not configured: nothing was checked"
	default:
		reason = "source-empty gate passed"
	}
	if needless != "" {
		reason += "; force not needed: " + needless
	}
	now := h.now()
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	// The gate's results are stored with the transition, in its one round trip.
	next, _, err := h.Store.ApplyWithChecks(sctx, c.m.Name, state.Change{
		From: state.Proxied,
		Next: state.Record{Phase: state.Cutover, Since: now, By: c.req.UserID, Reason: reason,
			RequestID: c.req.RequestID, CutoverAt: now, ConfidenceDays: c.m.ConfidenceDays},
		Audit:    state.Entry{At: now, By: c.req.UserID, Event: event, Reason: reason, RequestID: c.req.RequestID},
		Delivery: c.req.DeliveryID,
	}, encodeChecks(gate))
	if resp, ok, err := applied(c.m.Name, state.EventCutover, err); !ok {
		return resp, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s moved to cutover by %s", c.m.Name, mention(c.req.UserID))
	if force {
		fmt.Fprintf(&b, ", FORCED past a failing gate: %s", reason)
	}
	if needless != "" {
		fmt.Fprintf(&b, " (the gate did not fail, so force was not needed: recorded as a normal cutover, with your reason %q)", needless)
	}
	fmt.Fprintf(&b, ".\nConfidence period: %d days; earliest decommission %s.", next.ConfidenceDays, fmtTime(next.ConfidenceEnds()))
	for _, r := range gate {
		b.WriteString("\n" + r.Line())
	}
	if !gateRan(gate) {
		b.WriteString("\n" + gateNotConfigured)
	}
	b.WriteString("\nNext steps:\n" + nextSteps(c.m))
	return Response{Text: b.String(), Announce: true, Checks: gate}, nil
}

// gateNotConfigured warns that the cutover gate checked nothing.
const gateNotConfigured = "WARNING: the source-empty gate is not configured (proxy_config with mapping_file or mapping_redis_url): nothing checked that no account is left on the source."

// gateRan reports whether any gate check actually ran (was configured).
func gateRan(gate []checks.Result) bool {
	for _, r := range gate {
		if r.Status != checks.Skip {
			return true
		}
	}
	return false
}

func nextSteps(m *Migration) string {
	host := orText(m.PublicHostname, "the public hostname")
	relay := orText(m.Checks.RelayRoute, "source")
	source := orText(m.SourceHost, "the source")
	steps := []string{
		fmt.Sprintf("Repoint %s from the proxy (%s) to the new deployment (%s).", host, orText(strings.Join(m.ProxyAddresses, ", "), "proxy addresses"), orText(strings.Join(m.NewAddresses, ", "), "new addresses")),
		fmt.Sprintf("Confirm clients reach the new server directly: /migration check %s (dns, direct, tls).", m.Name),
		"Stop the proxy: systemctl stop proxy.",
		fmt.Sprintf("Remove the migration config on the new server: first stalwart-cli snapshot MtaOutboundStrategy MtaRoute Domain SystemSettings --output before-cleanup.ndjson, then reset the outbound route expression, delete the relay route %q, set allowRelaying=false on %s.", relay, orText(strings.Join(m.Domains, ", "), "every domain")),
		fmt.Sprintf("Keep %s running, idle, as the fallback until decommissioning.", source),
	}
	var b strings.Builder
	for i, s := range steps {
		fmt.Fprintf(&b, "%d. %s\n", i+1, s)
	}
	fmt.Fprintf(&b, "Roll back at any time before then: /migration rollback %s <reason>.", m.Name)
	return b.String()
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func (h *Handler) rollback(ctx context.Context, c *call) (Response, error) {
	reason, err := reasonOf(c.args, "rollback")
	if err != nil {
		return Response{}, err
	}
	now := h.now()
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	// Incident time: one round trip, no checks; the phase check in the script is the guard, and
	// the reply carries the last check results that shape the runbook.
	_, stored, err := h.Store.ApplyWithChecks(sctx, c.m.Name, state.Change{
		From: state.Cutover,
		Next: state.Record{Phase: state.Proxied, Since: now, By: c.req.UserID, Reason: reason,
			RequestID: c.req.RequestID, ConfidenceDays: c.m.ConfidenceDays},
		Audit:    state.Entry{At: now, By: c.req.UserID, Event: string(state.EventRollback), Reason: reason, RequestID: c.req.RequestID},
		Delivery: c.req.DeliveryID,
	}, nil)
	if resp, ok, err := applied(c.m.Name, state.EventRollback, err); !ok {
		return resp, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s rolled back to proxied by %s: %s\n", c.m.Name, mention(c.req.UserID), reason)
	b.WriteString(rollbackRunbook(c.m, decodeChecks(stored)))
	return Response{Text: b.String(), Announce: true}, nil
}

func rollbackRunbook(m *Migration, last map[string]checks.Result) string {
	host := orText(m.PublicHostname, "the public hostname")
	restore := fmt.Sprintf("restore the migration configuration on the new server: re-apply the snapshot taken before cleanup (stalwart-cli apply --file before-cleanup.ndjson): the proxy's trusted network, the relay route %q, allowRelaying=true on %s. Without the trusted network the restarted proxy's PROXY headers break every session.",
		orText(m.Checks.RelayRoute, "source"), orText(strings.Join(m.Domains, ", "), "every domain"))
	// Only a check made in cutover says anything about the cleanup done since the cutover.
	var first string
	if cleanup, ok := current(last, checks.IDCleanup, state.Cutover); ok && cleanup.Status == checks.Pass {
		first = "First, " + restore + " (The last check saw it removed.)"
	} else {
		first = "If the migration config was already removed (cutover step 4), first " + restore
	}
	steps := []string{
		first,
		"Start the proxy: systemctl start proxy; check its admin /healthz answers ok.",
		fmt.Sprintf("Repoint %s back to the proxy (%s).", host, orText(strings.Join(m.ProxyAddresses, ", "), "the proxy addresses")),
		"Accounts created since the cutover need mapping entries pointing at the new destination, or the proxy sends them to the source.",
		fmt.Sprintf("Verify: /migration check %s.", m.Name),
	}
	var b strings.Builder
	b.WriteString("Rollback runbook:")
	for i, s := range steps {
		fmt.Fprintf(&b, "\n%d. %s", i+1, s)
	}
	switch src, ok := current(last, checks.IDSource, state.Cutover); {
	case ok && src.Status == checks.Fail:
		fmt.Fprintf(&b, "\nWARNING: the source looked unreachable at the last check (%s ago): %s", ago(time.Since(src.At)), src.Detail)
	case !ok || src.Status == checks.Skip:
		b.WriteString("\nThe source's reachability was not checked since the cutover: confirm it answers before repointing.")
	}
	return b.String()
}

func (h *Handler) decommission(ctx context.Context, c *call) (Response, error) {
	if len(c.args) > 0 {
		if !strings.EqualFold(c.args[0], "confirm") {
			return Response{}, h.stray(c, c.args[0])
		}
		phrase := strings.Join(c.args[1:], " ")
		if phrase == "" {
			return Response{}, &UsageError{Msg: "decommission confirm needs the phrase"}
		}
		return h.confirm(ctx, c, phrase)
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	rec, err := h.Store.Get(sctx, c.m.Name)
	if err != nil {
		return Response{}, err
	}
	if _, err := state.Next(rec.Phase, state.EventDecommission); err != nil {
		return refusal(c.m.Name, rec, err), nil
	}
	now := h.now()
	audit := state.Entry{At: now, By: c.req.UserID, Event: "decommission request", From: rec.Phase, To: rec.Phase, RequestID: c.req.RequestID}
	if ends := rec.ConfidenceEnds(); now.Before(ends) {
		audit.Result = "refused: " + state.RefusedEarly
		if err := h.Store.Audit(sctx, c.m.Name, audit); err != nil {
			return Response{}, err
		}
		return Response{Failed: true, Text: fmt.Sprintf("%s: decommission refused, the confidence period runs until %s (%s, %s left); nothing changed, and this request is recorded.",
			c.m.Name, fmtTime(ends), strings.TrimPrefix(headline(rec, now), c.m.Name+": phase cutover, "), until(ends.Sub(now)))}, nil
	}
	expires := now.Add(ChallengeTTL)
	phrase := c.m.Phrase()
	_, replaced, err := h.Store.Challenge(sctx, c.m.Name, rec.Version, c.req.UserID, phrase, expires, ChallengeTTL, audit)
	if resp, ok, err := applied(c.m.Name, state.EventDecommission, err); !ok {
		return resp, err
	}
	note := ""
	if replaced != "" {
		note = fmt.Sprintf("\nThis replaces the pending decommission phrase of %s, who can no longer confirm it.", mention(replaced))
	}
	return Response{Text: fmt.Sprintf("Decommissioning %s is final: %s stops being the fallback and rollback becomes impossible.\nTo go ahead, type this within 10 minutes (until %s); only you (%s) can, exactly as written:\n/migration decommission %s confirm %s%s",
		c.m.Name, orText(c.m.SourceHost, "the source"), fmtTime(expires), mention(c.req.UserID), c.m.Name, phrase, note)}, nil
}

func (h *Handler) confirm(ctx context.Context, c *call, phrase string) (Response, error) {
	now := h.now()
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	_, err := h.Store.Confirm(sctx, c.m.Name, c.req.UserID, phrase, now, state.Entry{
		At: now, Event: string(state.EventDecommission), RequestID: c.req.RequestID,
	})
	if err != nil && phrase != c.m.Phrase() && !errors.As(err, new(*state.RefusedError)) {
		// Redis did not answer, but a wrong phrase could never have applied: say so plainly.
		return Response{Failed: true, Text: fmt.Sprintf("%s: decommission refused, the phrase does not match; nothing changed. The state store (Redis) did not answer, so this attempt could not be recorded.", c.m.Name)}, nil
	}
	var re *state.RefusedError
	if errors.As(err, &re) {
		name := c.m.Name
		msg := ""
		switch re.Why {
		case state.RefusedPhase:
			_, terr := state.Next(re.Current.Phase, state.EventDecommission)
			resp := refusal(name, re.Current, terr)
			resp.Text += " This attempt is recorded."
			return resp, nil
		case state.RefusedNoChallenge:
			if ends := re.Current.ConfidenceEnds(); now.Before(ends) {
				msg = fmt.Sprintf("no decommission is pending, and none can be before the confidence period ends at %s", fmtTime(ends))
			} else {
				msg = fmt.Sprintf("no decommission is pending: run /migration decommission %s first to get the phrase", name)
			}
		case state.RefusedExpired:
			msg = fmt.Sprintf("the phrase expired (it is valid for 10 minutes): run /migration decommission %s again", name)
		case state.RefusedOtherUser:
			msg = fmt.Sprintf("this decommission was requested by %s, and only they can confirm it (or run /migration decommission %s for a phrase of your own, which replaces theirs)", mention(re.Owner), name)
		case state.RefusedPhrase:
			msg = fmt.Sprintf("the phrase does not match; type exactly: /migration decommission %s confirm %s", name, c.m.Phrase())
		case state.RefusedEarly:
			msg = fmt.Sprintf("the confidence period runs until %s", fmtTime(re.Current.ConfidenceEnds()))
		default:
			msg = re.Why
		}
		return Response{Failed: true, Text: fmt.Sprintf("%s: decommission refused, %s. Nothing changed; this attempt is recorded.", name, msg)}, nil
	}
	if err != nil {
		return Response{}, err
	}
	return Response{Announce: true, Text: fmt.Sprintf("%s decommissioned by %s. This is final: %s is no longer a fallback and rollback is no longer possible. Shut the source down and remove its DNS names when ready.",
		c.m.Name, mention(c.req.UserID), orText(c.m.SourceHost, "the source"))}, nil
}

func (h *Handler) extend(ctx context.Context, c *call) (Response, error) {
	if len(c.args) == 0 {
		return Response{}, &UsageError{Msg: "extend needs a number of days and a reason"}
	}
	days, err := strconv.Atoi(c.args[0])
	if err != nil && !c.named && strings.TrimLeft(c.args[0], "+-0123456789") == c.args[0] {
		return Response{}, h.strayOrNumber(c, "a number of days")
	}
	if err != nil || days == 0 || days < -365 || days > 365 {
		return Response{}, &UsageError{Msg: fmt.Sprintf("days must be a whole number from -365 to 365 other than 0, not %q", clip(c.args[0], 20))}
	}
	reason, err := reasonOf(c.args[1:], "extend")
	if err != nil {
		return Response{}, err
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	rec, err := h.Store.Get(sctx, c.m.Name)
	if err != nil {
		return Response{}, err
	}
	if _, err := state.Next(rec.Phase, state.EventExtend); err != nil {
		return refusal(c.m.Name, rec, err), nil
	}
	total := rec.ConfidenceDays + days
	if total < 0 {
		return Response{}, &UsageError{Msg: fmt.Sprintf("the confidence period is %d days; shortening it by %d would make it negative", rec.ConfidenceDays, -days)}
	}
	now := h.now()
	next := rec
	next.ConfidenceDays = total
	next.RequestID = c.req.RequestID
	next, err = h.Store.Apply(sctx, c.m.Name, state.Change{
		From: state.Cutover, Version: rec.Version, Next: next,
		Audit:    state.Entry{At: now, By: c.req.UserID, Event: fmt.Sprintf("extend %+d", days), Reason: reason, RequestID: c.req.RequestID},
		Delivery: c.req.DeliveryID,
	})
	if resp, ok, err := applied(c.m.Name, state.EventExtend, err); !ok {
		return resp, err
	}
	verb := "extended"
	if days < 0 {
		verb = "shortened"
	}
	text := fmt.Sprintf("%s: confidence period %s by %d days to %d by %s: %s\nEarliest decommission: %s.",
		c.m.Name, verb, abs(days), total, mention(c.req.UserID), reason, fmtTime(next.ConfidenceEnds()))
	if !now.Before(next.ConfidenceEnds()) {
		text += fmt.Sprintf(" The period is over: decommissioning is possible now (/migration decommission %s).", c.m.Name)
	}
	return Response{Announce: true, Text: text}, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// sinceLayouts are the forms init accepts for [since], all read as UTC unless they carry a zone.
var sinceLayouts = []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"}

// earliestSince is the earliest time init accepts: anything older is a typo, and the Unix
// epoch would read as "unknown time".
var earliestSince = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func parseSince(s string, now time.Time) (time.Time, error) {
	for _, l := range sinceLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.After(now) {
				return time.Time{}, &UsageError{Msg: fmt.Sprintf("since %q is in the future", clip(s, 40))}
			}
			if t.Before(earliestSince) {
				return time.Time{}, &UsageError{Msg: fmt.Sprintf("since %q is before 2000: give the time of the last transition, as in its announcement", clip(s, 40))}
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, &UsageError{Msg: fmt.Sprintf("since must be a time like 2026-12-01T09:00:00Z or 2026-12-01, not %q", clip(s, 40))}
}

func (h *Handler) init(ctx context.Context, c *call) (Response, error) {
	now := h.now()
	phase, since := state.Proxied, now
	args := c.args
	bare := len(args) == 0
	if len(args) > 0 {
		p, err := state.ParsePhase(strings.ToLower(args[0]))
		if err != nil {
			if !c.named {
				err = fmt.Errorf("%q is neither a phase (proxied, cutover, decommissioned) nor a configured migration (%s)", clip(args[0], 40), strings.Join(h.names(), ", "))
			}
			return Response{}, &UsageError{Msg: err.Error()}
		}
		phase, args = p, args[1:]
	}
	if len(args) > 0 && !strings.EqualFold(args[0], "confirm") {
		t, err := parseSince(args[0], now)
		if err != nil {
			return Response{}, err
		}
		since, args = t, args[1:]
	}
	if phase == state.Decommissioned {
		// Restoring the final phase makes rollback impossible: it takes the typed phrase too.
		if len(args) == 0 || !strings.EqualFold(args[0], "confirm") || strings.Join(args[1:], " ") != c.m.Phrase() {
			return Response{Failed: true, Text: fmt.Sprintf("%s: init decommissioned is final: rollback becomes impossible and the reports stop; nothing changed.\nIf %s really is decommissioned, type exactly:\n/migration init %s decommissioned %s confirm %s",
				c.m.Name, orText(c.m.SourceHost, "the source"), c.m.Name, since.Format(time.RFC3339), c.m.Phrase())}, nil
		}
		args = nil
	}
	if len(args) > 0 {
		return Response{}, h.unexpected(args[0])
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	if bare {
		// A bare init after a state loss would silently reset the phase to proxied: when the
		// audit log survived, it says where the migration really was.
		snap, err := h.Store.Snapshot(sctx, c.m.Name, 20)
		if err != nil {
			return Response{}, err
		}
		if !snap.Found {
			if p, t, ok := lastPhase(snap.Events); ok {
				return Response{Failed: true, Text: fmt.Sprintf("%s: its state is missing but its audit log survived, and the last transition moved it to %s at %s; nothing changed.\nRestore that with /migration init %s %s %s, or say the phase and time explicitly if the log is wrong.",
					c.m.Name, p, fmtTime(t), c.m.Name, p, t.Format(time.RFC3339))}, nil
			}
		}
	}
	rec := state.Record{Phase: phase, Since: since, By: c.req.UserID, Reason: "initialised", RequestID: c.req.RequestID, ConfidenceDays: c.m.ConfidenceDays}
	if phase != state.Proxied {
		rec.CutoverAt = since
	}
	rec, err := h.Store.Apply(sctx, c.m.Name, state.Change{
		From: state.None, Next: rec,
		Audit:    state.Entry{At: now, By: c.req.UserID, Event: string(state.EventInit), Reason: fmt.Sprintf("%s since %s", phase, fmtTime(since)), RequestID: c.req.RequestID},
		Delivery: c.req.DeliveryID,
	})
	var de *state.DuplicateError
	if errors.As(err, &de) {
		return duplicate(c.m.Name, de.Current), nil
	}
	var ce *state.ConflictError
	if errors.As(err, &ce) {
		return Response{Failed: true, Text: fmt.Sprintf("%s: already initialised, in phase %s since %s (by %s); nothing changed. See /migration status %s.",
			c.m.Name, ce.Current.Phase, fmtTime(ce.Current.Since), mention(ce.Current.By), c.m.Name)}, nil
	}
	if err != nil {
		return Response{}, err
	}
	text := fmt.Sprintf("%s initialised by %s: phase %s since %s.", c.m.Name, mention(c.req.UserID), rec.Phase, fmtTime(rec.Since))
	if rec.Phase == state.Cutover {
		text += fmt.Sprintf(" Confidence period: %s; earliest decommission %s.", strings.TrimPrefix(headline(rec, now), c.m.Name+": phase cutover, "), fmtTime(rec.ConfidenceEnds()))
	}
	return Response{Announce: true, Text: text}, nil
}

// lastPhase finds, in events (newest first), the phase the last applied transition moved to
// and since when.
func lastPhase(events []state.Entry) (state.Phase, time.Time, bool) {
	for _, e := range events {
		if e.Result != "ok" || e.To == "" || (e.From == e.To && e.Event != string(state.EventInit)) {
			continue
		}
		at := e.At
		if e.Event == string(state.EventInit) {
			// init records "<phase> since <time>": the restored time, not the typing time.
			if _, s, ok := strings.Cut(e.Reason, " since "); ok {
				if t, err := time.Parse(timeLayout, s); err == nil {
					at = t
				}
			}
		}
		return e.To, at, true
	}
	return "", time.Time{}, false
}

// timeLayout is how answers write a time; lastPhase reads init's audit reason back with it.
const timeLayout = "2006-01-02 15:04 UTC"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "unknown time"
	}
	return t.UTC().Format(timeLayout)
}

// ago renders a past duration coarsely: "40s", "5m", "3h", "2d".
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// until renders a future duration: "13 days 23 hours", "5 hours", "20 minutes".
func until(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if hours == 0 {
			return fmt.Sprintf("%d days", days)
		}
		return fmt.Sprintf("%d days %d hours", days, hours)
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return fmt.Sprintf("%d minutes", max(1, int(d/time.Minute)))
}
