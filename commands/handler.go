package commands

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/state"
)

// Migration is one configured migration.
type Migration struct {
	Name               string
	Channel            string // Slack channel ID for announcements and reports
	PublicHostname     string
	SourceHost         string
	NewAddresses       []string
	ProxyAddresses     []string
	Domains            []string
	ConfidenceDays     int
	ReportSchedule     string
	DecommissionPhrase string // default "decommission <source_host>"
	Checks             checks.Config
}

// Phrase is the text an admin types to confirm decommissioning.
func (m *Migration) Phrase() string {
	if m.DecommissionPhrase != "" {
		return m.DecommissionPhrase
	}
	return "decommission " + m.SourceHost
}

// Target is what the checks compare against in phase p.
func (m *Migration) Target(p state.Phase) checks.Target {
	return checks.Target{
		PublicHostname: m.PublicHostname,
		SourceHost:     m.SourceHost,
		NewAddresses:   m.NewAddresses,
		ProxyAddresses: m.ProxyAddresses,
		Domains:        m.Domains,
		Phase:          string(p),
	}
}

// Request is one command as it arrived.
type Request struct {
	UserID    string // Slack user ID of the caller
	ChannelID string // where it was typed; a channel bound to one migration needs no name
	Text      string // "status example", with or without the leading "/migration"
	RequestID string // for the audit log; generated when empty
	// DeliveryID is Slack's trigger_id: the same when Slack redelivers a request or it is
	// replayed, so a change is applied once per delivery. Empty: not checked (the shell).
	DeliveryID string
}

// Response is the answer to a command.
type Response struct {
	Text      string // plain text, one or more lines
	Migration string // the migration concerned, "" when none
	Channel   string // that migration's channel
	Announce  bool   // a transition: post Text to Channel as well
	Failed    bool   // refused or failed; nothing changed
	Checks    []checks.Result
	Actions   []Action // what the reader may do next (buttons in Slack)
	// Pending is the request id of a change whose outcome is unknown (Redis did not answer in
	// time): Settle tells later whether it was applied after all.
	Pending string
}

// Action is a follow-up a Response offers; Slack shows it as a button.
type Action string

// The actions a Response may offer.
const (
	ActionCheck        Action = "check"        // run every check now
	ActionRollback     Action = "rollback"     // roll back (asks for a reason)
	ActionDecommission Action = "decommission" // decommission (asks for the phrase)
)

// actionsFor lists the follow-ups that make sense for a migration in phase p at now.
func actionsFor(rec state.Record, now time.Time) []Action {
	switch rec.Phase {
	case state.Proxied:
		return []Action{ActionCheck}
	case state.Cutover:
		a := []Action{ActionCheck, ActionRollback}
		if !now.Before(rec.ConfidenceEnds()) {
			a = append(a, ActionDecommission)
		}
		return a
	}
	return nil
}

// Checker runs verification checks; *checks.Runner is one.
type Checker interface {
	Run(ctx context.Context, t checks.Target, cfg checks.Config, ids ...string) []checks.Result
}

// GroupResolver lists the members of a Slack user group (S...).
type GroupResolver interface {
	GroupMembers(ctx context.Context, group string) ([]string, error)
}

// Handler answers commands.
type Handler struct {
	Migrations []*Migration
	Admins     []string // Slack user IDs (U...) or user group IDs (S...)
	Operators  []string
	Store      *state.Store
	Checker    Checker       // nil: no checks configured
	Groups     GroupResolver // nil: user groups match nobody
	Now        func() time.Time
	Log        *slog.Logger
	// NextReport returns when the next report of a migration is due (zero when unknown).
	NextReport func(name string) time.Time
	// StoreTimeout bounds every Redis call (default 2s), so an answer comes in time.
	StoreTimeout time.Duration
}

// ChallengeTTL is how long a decommission phrase stays valid.
const ChallengeTTL = 10 * time.Minute

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (h *Handler) storeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := h.StoreTimeout
	if d <= 0 {
		d = 2 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// Migration returns the configured migration called name, or nil.
func (h *Handler) Migration(name string) *Migration {
	for _, m := range h.Migrations {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func (h *Handler) names() []string {
	out := make([]string, len(h.Migrations))
	for i, m := range h.Migrations {
		out[i] = m.Name
	}
	return out
}

// call is one command being answered.
type call struct {
	req  Request
	sub  *Subcommand
	m    *Migration
	args []string
	role Role
	now  time.Time
	// unchecked lists user groups whose members Slack could not tell.
	unchecked []string
	named     bool         // the text named the migration
	log       *slog.Logger // the handler's; logger() adds the request id
}

// logger is the call's logger, with the request id. Made when something is logged (rarely: a
// warning), not for every command.
func (c *call) logger() *slog.Logger {
	if c.req.RequestID == "" {
		return c.log
	}
	return c.log.With("request", c.req.RequestID)
}

// IsSlow reports whether the command in text may take longer than Slack's 3-second ack.
func (h *Handler) IsSlow(text string) bool {
	p, err := Parse(text, h.names())
	return err == nil && p.Sub.Slow
}

// Handle answers one command. The Response is always filled in for the user; the error, when
// not nil, is the internal cause to log (the user already has a clear message).
func (h *Handler) Handle(ctx context.Context, req Request) (Response, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	p, err := Parse(req.Text, h.names())
	if err != nil {
		return usageResponse(err), nil
	}
	c := &call{req: req, sub: p.Sub, args: p.Args, now: h.now(), log: h.log()}
	// Read-only commands need no role: no user group lookup delays them.
	if p.Sub.Role > Anyone || p.Sub.Name == "help" {
		c.role, c.unchecked = h.roleOf(ctx, c.logger, req.UserID)
	}
	if p.Sub.Name == "help" {
		return h.help(c), nil
	}
	if c.role < p.Sub.Role {
		if p.Sub.Name == "decommission" {
			h.auditDenied(ctx, c, p)
		}
		return h.denied(c, p.Sub.Role), nil
	}
	c.named = p.Migration != ""
	c.m, err = h.pick(p.Migration, req.ChannelID)
	if err != nil && len(p.Args) > 0 {
		err = fmt.Errorf("which migration? %q is not one of: %s", clip(p.Args[0], 40), strings.Join(h.names(), ", "))
	}
	if err != nil {
		return usageResponse(&UsageError{Msg: err.Error(), Sub: p.Sub}), nil
	}
	var resp Response
	switch p.Sub.Name {
	case "status":
		resp, err = h.status(ctx, c)
	case "check":
		resp, err = h.check(ctx, c)
	case "history":
		resp, err = h.history(ctx, c)
	case "cutover":
		resp, err = h.cutover(ctx, c)
	case "rollback":
		resp, err = h.rollback(ctx, c)
	case "decommission":
		resp, err = h.decommission(ctx, c)
	case "extend":
		resp, err = h.extend(ctx, c)
	case "init":
		resp, err = h.init(ctx, c)
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		if ue.Sub == nil {
			ue.Sub = p.Sub
		}
		return usageResponse(ue), nil
	}
	if err != nil {
		resp = h.storeError(c, err)
		if errors.Is(err, state.ErrNotFound) {
			err = nil // the user's answer says it all; nothing failed inside
		}
	}
	resp.Migration = c.m.Name
	resp.Channel = c.m.Channel
	return resp, err
}

// auditDenied records a decommission attempt by someone who is not an admin: the one step that
// cannot be undone leaves a trace of every try. Best effort: the caller is refused either way.
func (h *Handler) auditDenied(ctx context.Context, c *call, p Parsed) {
	m, err := h.pick(p.Migration, c.req.ChannelID)
	if err != nil {
		return
	}
	event := "decommission request"
	if len(p.Args) > 0 && strings.EqualFold(p.Args[0], "confirm") {
		event = string(state.EventDecommission)
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	err = h.Store.Audit(sctx, m.Name, state.Entry{At: c.now, By: c.req.UserID, Event: event,
		Result: "refused: not an admin", RequestID: c.req.RequestID})
	if err != nil {
		c.logger().Warn("could not record a refused decommission attempt", "migration", m.Name, "user", c.req.UserID, "err", err)
	}
}

// pick finds the migration a command is about.
func (h *Handler) pick(named, channel string) (*Migration, error) {
	if named != "" {
		return h.Migration(named), nil
	}
	if len(h.Migrations) == 1 {
		return h.Migrations[0], nil
	}
	var bound *Migration
	for _, m := range h.Migrations {
		if channel != "" && m.Channel == channel {
			if bound != nil {
				bound = nil // two migrations share the channel: ambiguous
				break
			}
			bound = m
		}
	}
	if bound != nil {
		return bound, nil
	}
	return nil, fmt.Errorf("which migration? name one of: %s", strings.Join(h.names(), ", "))
}

func usageResponse(err error) Response {
	var ue *UsageError
	msg := err.Error()
	text := "Error: " + msg
	if errors.As(err, &ue) && ue.Sub != nil {
		text += "\nUsage: /migration " + ue.Sub.Usage + "\nExample: /migration " + ue.Sub.Example
	} else {
		text += "\nSubcommands: " + subcommandNames() + ". Try /migration help."
	}
	return Response{Text: text, Failed: true}
}

func subcommandNames() string {
	names := make([]string, len(Registry))
	for i, s := range Registry {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// storeError turns a store failure into the user's message.
func (h *Handler) storeError(c *call, err error) Response {
	name := c.m.Name
	var text string
	switch {
	case errors.Is(err, state.ErrNotFound):
		text = fmt.Sprintf("%s has no state in Redis: it was never initialised, or Redis lost its data. Nothing changed.\nAn admin restores it with /migration init %s <phase> <since>, using the phase and time of the last transition: see the announcements in %s, or /migration history %s if the audit log survived.",
			name, name, channelMention(c.m.Channel), name)
	case errors.Is(err, state.ErrMaybeApplied):
		text = fmt.Sprintf("The state store (Redis) did not answer in time: the %s may or may not have been applied (never half-written). If it turns out applied, it will be announced in %s; check /migration status %s before retrying.", c.sub.Name, channelMention(c.m.Channel), name)
		if c.sub.Name == "rollback" {
			text += "\nIf you must roll back now, do it by hand:\n" + rollbackRunbook(c.m, nil)
		}
		return Response{Failed: true, Pending: c.req.RequestID, Text: text}
	case c.sub.Role > Anyone:
		text = fmt.Sprintf("The state store (Redis) is unavailable, so %s was not applied: nothing changed. Try again in a moment; /migration help still works.", c.sub.Name)
	default:
		return Response{Failed: true, Text: fmt.Sprintf("The state store (Redis) is unavailable, so %s cannot be answered right now. Try again in a moment.", c.sub.Name)}
	}
	if c.sub.Name == "rollback" {
		// Mid-incident the rollback must not wait for Redis: the runbook is known without it.
		later := "record it once Redis is back"
		if errors.Is(err, state.ErrNotFound) {
			later = "then have an admin restore the state with /migration init " + name + " proxied"
		}
		text += "\nIf you must roll back now, do it by hand, and " + later + ":\n" + rollbackRunbook(c.m, nil)
	}
	return Response{Failed: true, Text: text}
}

func channelMention(id string) string {
	if id == "" {
		return "the migration's channel"
	}
	return "<#" + id + ">"
}

// Settle tells whether the change made by request id (answered with Response.Pending) was
// applied after all. When it was, the Response announces it (Announce, with the runbook that
// follows from it); when not yet known, applied is false.
func (h *Handler) Settle(ctx context.Context, name, requestID string) (resp Response, applied bool, err error) {
	m := h.Migration(name)
	if m == nil || requestID == "" {
		return Response{}, false, fmt.Errorf("settle: unknown migration %q or no request id", name)
	}
	sctx, cancel := h.storeCtx(ctx)
	defer cancel()
	snap, err := h.Store.Snapshot(sctx, name, 20)
	if err != nil {
		return Response{}, false, err
	}
	for _, e := range snap.Events {
		if e.RequestID != requestID || e.Result != "ok" {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Update: the %s of %s by %s at %s was applied after all (the state store was slow): %s -> %s.",
			e.Event, name, mention(e.By), fmtTime(e.At), orNone(e.From), e.To)
		if snap.Found && snap.Record.RequestID != requestID {
			fmt.Fprintf(&b, " It has been changed since: now %s, by %s at %s.", snap.Record.Phase, mention(snap.Record.By), fmtTime(snap.Record.Since))
		} else {
			switch e.To {
			case state.Cutover:
				if e.From == state.Proxied {
					b.WriteString("\nNext steps:\n" + nextSteps(m))
				}
			case state.Proxied:
				if e.From == state.Cutover {
					b.WriteString("\n" + rollbackRunbook(m, decodeChecks(snap.Checks)))
				}
			}
		}
		return Response{Text: b.String(), Migration: name, Channel: m.Channel, Announce: true}, true, nil
	}
	return Response{}, false, nil
}

// NewRequestID returns a random id for the audit log.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
