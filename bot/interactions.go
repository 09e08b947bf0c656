package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// The ids of the buttons Render makes, of their actions block, and of the modals they open.
const (
	ActionsBlockID       = "migrationbot_actions"
	ActionIDCheck        = "migrationbot_check"
	ActionIDRollback     = "migrationbot_rollback"
	ActionIDDecommission = "migrationbot_decommission"

	CallbackRollback     = "migrationbot_rollback"
	CallbackDecommission = "migrationbot_decommission"

	ReasonBlockID  = "rollback_reason" // the rollback modal's input block
	reasonActionID = "reason"
	PhraseBlockID  = "decommission_phrase" // the decommission modal's input block
	phraseActionID = "phrase"
)

// Time budget of a button that opens a modal: its trigger_id is valid for 3 seconds, so views.open
// must start well before that, whatever Redis does.
const (
	previewTimeout   = time.Second             // the rollback preview (one Redis read)
	triggerBudget    = 2200 * time.Millisecond // "decommission <name>" before views.open
	viewsOpenTimeout = 5 * time.Second
	maxModalError    = 500 // characters of an error shown under a modal's input
)

// ViewOpener opens modals (views.open); *SlackPoster is one.
type ViewOpener interface {
	OpenView(ctx context.Context, triggerID string, view slack.ModalViewRequest) error
}

// Replacer replaces the message an interaction came from through its response_url
// (replace_original); *ResponseURLPoster is one.
type Replacer interface {
	Replace(ctx context.Context, responseURL string, msg Message) error
}

// Interactive is what buttons need from the command handler besides Handle; *commands.Handler
// is one.
type Interactive interface {
	Migration(name string) *commands.Migration
	RollbackPreview(ctx context.Context, name string) (string, error)
}

// modalMeta is a modal's private_metadata: what the submission needs and does not carry (it has
// no channel and no response_url of its own).
type modalMeta struct {
	Migration   string `json:"m"`
	Channel     string `json:"c,omitempty"`
	ResponseURL string `json:"r,omitempty"`
}

// handleInteraction answers POST /slack/interactions: a signed form whose payload field is the
// interaction's JSON. The signature is verified before anything is parsed.
func (s *Server) handleInteraction(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := s.log().With("remote", r.RemoteAddr)
	refusing := log.With("request", commands.NewRequestID()) // an accepted one gets its own in interact
	body, ok := s.readVerified(w, r, refusing, false)
	if !ok {
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		s.refuse(w, refusing, "malformed interaction", errors.Join(err, errors.New("no payload")))
		return
	}
	var ic slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &ic); err != nil {
		s.refuse(w, refusing, "malformed interaction payload", err)
		return
	}
	ack := s.interact(r.Context().Done(), log, ic, start)
	if ack == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	b, err := json.Marshal(ack)
	if err != nil {
		log.Error("encode interaction answer", "err", err)
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// interact handles one interaction, however it arrived (HTTP or Socket Mode), and returns what to
// acknowledge it with: nil for an empty acknowledgement, or a view_submission response (inline
// errors). Buttons are acknowledged at once; their work (views.open first) goes on in the
// background, answered through the interaction's response_url.
func (s *Server) interact(cancel <-chan struct{}, log *slog.Logger, ic slack.InteractionCallback, start time.Time) any {
	reqID := commands.NewRequestID()
	log = log.With("request", reqID, "user", ic.User.ID, "interaction", string(ic.Type))
	switch ic.Type {
	case slack.InteractionTypeBlockActions:
		for _, act := range ic.ActionCallback.BlockActions {
			switch act.ActionID {
			case ActionIDCheck, ActionIDRollback, ActionIDDecommission:
				s.Metrics.Interaction(strings.TrimPrefix(act.ActionID, "migrationbot_"))
				s.blockAction(log.With("action", act.ActionID, "migration", clipRunes(act.Value, 100)), reqID, ic, act)
				return nil
			}
		}
		log.Debug("interaction ignored: no button of ours")
	case slack.InteractionTypeViewSubmission:
		switch ic.View.CallbackID {
		case CallbackRollback:
			s.Metrics.Interaction("rollback_submit")
			return s.submitRollback(cancel, log, reqID, ic, start)
		case CallbackDecommission:
			s.Metrics.Interaction("decommission_submit")
			return s.submitDecommission(cancel, log, reqID, ic, start)
		}
		log.Debug("view submission ignored: not our modal", "callback_id", clipRunes(ic.View.CallbackID, 100))
	default:
		log.Debug("interaction ignored")
	}
	return nil
}

// blockAction starts the work of a button in the background; the caller acknowledges at once.
func (s *Server) blockAction(log *slog.Logger, reqID string, ic slack.InteractionCallback, act *slack.BlockAction) {
	received := time.Now()
	name := act.Value
	user := ic.User.ID
	channel := ic.Channel.ID
	if channel == "" {
		channel = ic.Container.ChannelID
	}
	req := func(text string) commands.Request {
		return commands.Request{UserID: user, ChannelID: channel, Text: text, RequestID: reqID}
	}
	started := s.jobs.start(s.jobTimeout(), func(ctx context.Context) {
		ih, ok := s.Commands.(Interactive)
		if !ok || ih.Migration(name) == nil || strings.ContainsAny(name, " \t\n") {
			log.Warn("button for an unknown migration")
			s.respondNow(ctx, log, ic.ResponseURL, Message{Text: fmt.Sprintf("%q is not a configured migration (the configuration changed?). Try /migration status.", clipRunes(name, 100))})
			return
		}
		switch act.ActionID {
		case ActionIDCheck:
			s.markUsed(ctx, log, ic, fmt.Sprintf("%s ran the checks of %s at %s; the results follow.", mentionUser(user), name, clock(received)))
			a := s.run(ctx, log, req("check "+name))
			s.respondLater(ctx, log, ic.ResponseURL, a)
		case ActionIDRollback:
			pctx, cancel := context.WithTimeout(ctx, previewTimeout)
			preview, err := ih.RollbackPreview(pctx, name)
			cancel()
			if err != nil {
				log.Warn("rollback preview failed", "err", err)
				preview = "The preview is unavailable right now (the state store did not answer): the rollback itself says what to do."
			}
			meta := modalMeta{Migration: name, Channel: channel, ResponseURL: ic.ResponseURL}
			if err := s.openView(ctx, ic.TriggerID, rollbackModal(name, preview, meta)); err != nil {
				log.Error("opening the rollback form failed", "err", err, "after_ms", time.Since(received).Milliseconds())
				s.respondNow(ctx, log, ic.ResponseURL, Message{Text: fmt.Sprintf("The rollback form could not be opened. Roll back with: /migration rollback %s <reason>", name)})
				return
			}
			s.markUsed(ctx, log, ic, fmt.Sprintf("%s opened the rollback form of %s at %s.", mentionUser(user), name, clock(received)))
		case ActionIDDecommission:
			// Issue the challenge first (bound to this user), within the trigger's budget.
			cctx, cancel := context.WithTimeout(ctx, triggerBudget-time.Since(received))
			a := s.run(cctx, log, req("decommission "+name))
			cancel()
			if a.failed {
				s.respondLater(ctx, log, ic.ResponseURL, a) // the refusal instead of a modal
				return
			}
			phrase := ih.Migration(name).Phrase()
			meta := modalMeta{Migration: name, Channel: channel, ResponseURL: ic.ResponseURL}
			if err := s.openView(ctx, ic.TriggerID, decommissionModal(name, phrase, meta)); err != nil {
				log.Error("opening the decommission form failed; answering with the phrase to type", "err", err, "after_ms", time.Since(received).Milliseconds())
				s.respondLater(ctx, log, ic.ResponseURL, a)
				return
			}
			s.markUsed(ctx, log, ic, fmt.Sprintf("%s asked to decommission %s at %s; the phrase is waiting in a form.", mentionUser(user), name, clock(received)))
		}
	})
	if !started {
		log.Warn("button ignored: shutting down")
	}
}

// submitRollback answers the rollback modal's submission: "rollback <name> <reason>" as the
// submitting user. A refusal that is ready in time is shown in the modal; otherwise the modal
// closes and the answer follows through the original button's response_url.
func (s *Server) submitRollback(cancel <-chan struct{}, log *slog.Logger, reqID string, ic slack.InteractionCallback, start time.Time) any {
	meta, ok := s.modalMeta(log, ic)
	if !ok {
		return modalErrors(ReasonBlockID, "This form is out of date (the configuration changed?). Close it and use /migration rollback.")
	}
	reason := strings.Join(strings.Fields(inputValue(ic, ReasonBlockID, reasonActionID)), " ")
	if reason == "" {
		return modalErrors(ReasonBlockID, "A reason is required: it goes into the audit log and the announcement.")
	}
	req := commands.Request{UserID: ic.User.ID, ChannelID: meta.Channel, Text: "rollback " + meta.Migration + " " + reason, RequestID: reqID, DeliveryID: ic.TriggerID}
	return s.submit(cancel, log, req, meta, ReasonBlockID, start)
}

// submitDecommission answers the decommission modal's submission. The typed text must be the
// phrase exactly (surrounding blanks aside); anything else is shown as an error in the modal (and,
// as with the typed command, recorded as a refused attempt). The phrase runs
// "decommission <name> confirm <phrase>" as the submitting user.
func (s *Server) submitDecommission(cancel <-chan struct{}, log *slog.Logger, reqID string, ic slack.InteractionCallback, start time.Time) any {
	meta, ok := s.modalMeta(log, ic)
	if !ok {
		return modalErrors(PhraseBlockID, "This form is out of date (the configuration changed?). Close it and use /migration decommission.")
	}
	phrase := s.Commands.(Interactive).Migration(meta.Migration).Phrase()
	typed := strings.TrimSpace(inputValue(ic, PhraseBlockID, phraseActionID))
	if typed != phrase {
		// The command path compares words, not blanks: record the attempt only when it cannot
		// match there either.
		if words := strings.Join(strings.Fields(typed), " "); words != "" && words != phrase {
			audit := commands.Request{UserID: ic.User.ID, ChannelID: meta.Channel, Text: "decommission " + meta.Migration + " confirm " + words, RequestID: reqID}
			s.jobs.start(s.jobTimeout(), func(ctx context.Context) { s.run(ctx, log, audit) })
		}
		return modalErrors(PhraseBlockID, fmt.Sprintf("That is not the phrase. Type exactly: %s", phrase))
	}
	req := commands.Request{UserID: ic.User.ID, ChannelID: meta.Channel, Text: "decommission " + meta.Migration + " confirm " + phrase, RequestID: reqID}
	return s.submit(cancel, log, req, meta, PhraseBlockID, start)
}

// submit runs a modal's command. Ready in time and refused: the refusal is shown under the
// modal's input (block). Otherwise the modal closes (an empty acknowledgement) and the answer
// goes through the button's response_url.
func (s *Server) submit(cancel <-chan struct{}, log *slog.Logger, req commands.Request, meta modalMeta, block string, start time.Time) any {
	log = log.With("migration", meta.Migration, "text", clipRunes(req.Text, 200))
	a, ready, started := s.dispatch(cancel, log, req, meta.ResponseURL, start.Add(s.ackAfter()))
	if !started {
		return modalErrors(block, "migrationbot is restarting: nothing changed. Submit again in a moment.")
	}
	if !ready {
		return nil
	}
	if a.failed {
		return modalErrors(block, clipRunes(a.msg.Text, maxModalError))
	}
	s.jobs.start(deliverTimeout, func(ctx context.Context) { s.respondLater(ctx, log, meta.ResponseURL, a) })
	return nil
}

func (s *Server) modalMeta(log *slog.Logger, ic slack.InteractionCallback) (modalMeta, bool) {
	var meta modalMeta
	if err := json.Unmarshal([]byte(ic.View.PrivateMetadata), &meta); err != nil {
		log.Warn("modal without readable private_metadata", "err", err)
		return meta, false
	}
	ih, ok := s.Commands.(Interactive)
	if !ok || ih.Migration(meta.Migration) == nil {
		log.Warn("modal for an unknown migration", "migration", clipRunes(meta.Migration, 100))
		return meta, false
	}
	return meta, true
}

func inputValue(ic slack.InteractionCallback, block, action string) string {
	if ic.View.State == nil {
		return ""
	}
	return ic.View.State.Values[block][action].Value
}

func modalErrors(block, msg string) *slack.ViewSubmissionResponse {
	return slack.NewErrorsViewSubmissionResponse(map[string]string{block: msg})
}

func (s *Server) openView(ctx context.Context, triggerID string, view slack.ModalViewRequest) error {
	if s.Views == nil {
		return errors.New("no views.open configured")
	}
	if triggerID == "" {
		return errors.New("the interaction has no trigger_id")
	}
	ctx, cancel := context.WithTimeout(ctx, viewsOpenTimeout)
	defer cancel()
	return s.Views.OpenView(ctx, triggerID, view)
}

// markUsed replaces the buttons of the clicker's own (ephemeral) answer with a note saying who did
// what, so that a used button never looks dead; the message keeps its other blocks when Slack
// sent them, and becomes the note when it did not.
func (s *Server) markUsed(ctx context.Context, log *slog.Logger, ic slack.InteractionCallback, note string) {
	rp, ok := s.Responder.(Replacer)
	if !ok || ic.ResponseURL == "" || !ic.Container.IsEphemeral {
		// A message in the channel (a report) serves everyone: its buttons stay; one person
		// running the checks or opening (and perhaps cancelling) a form must not take them away.
		return
	}
	msg := Message{Text: note, Blocks: []slack.Block{slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, note, false, false))}}
	if orig := ic.Message.Blocks.BlockSet; len(orig) > 0 {
		blocks := make([]slack.Block, 0, len(orig))
		for _, b := range orig {
			if b.ID() == ActionsBlockID {
				b = slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, note, false, false))
			}
			blocks = append(blocks, b)
		}
		msg = Message{Text: ic.Message.Text, Blocks: blocks}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deliverTimeout)
	defer cancel()
	if err := rp.Replace(dctx, ic.ResponseURL, msg); err != nil {
		log.Warn("replacing the used button failed", "err", err)
	}
}

// respondNow posts an ephemeral message through responseURL.
func (s *Server) respondNow(ctx context.Context, log *slog.Logger, responseURL string, msg Message) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deliverTimeout)
	defer cancel()
	s.respondLater(dctx, log, responseURL, answer{msg: msg})
}

// rollbackModal asks for the reason of a rollback and shows what it would mean.
func rollbackModal(name, preview string, meta modalMeta) slack.ModalViewRequest {
	b, _ := json.Marshal(meta)
	input := slack.NewPlainTextInputBlockElement(plain("What went wrong? (recorded and announced)"), reasonActionID).
		WithMinLength(1).WithMaxLength(500)
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackRollback,
		PrivateMetadata: string(b),
		Title:           plain("Roll back"),
		Submit:          plain("Roll back"),
		Close:           plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType,
				clipRunes(fmt.Sprintf("*Roll back %s*\n%s", name, escapeMrkdwn(preview)), maxSectionText), false, false), nil, nil),
			slack.NewInputBlock(ReasonBlockID, plain("Reason"), nil, input),
		}},
	}
}

// decommissionModal asks for the confirmation phrase.
func decommissionModal(name, phrase string, meta modalMeta) slack.ModalViewRequest {
	b, _ := json.Marshal(meta)
	input := slack.NewPlainTextInputBlockElement(plain(clipRunes(phrase, 150)), phraseActionID)
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackDecommission,
		PrivateMetadata: string(b),
		Title:           plain("Decommission"),
		Submit:          plain("Decommission"),
		Close:           plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, clipRunes(fmt.Sprintf(
				"*Decommission %s: this is final.*\nThe source stops being the fallback and rollback becomes impossible.\nTo go ahead, type this phrase exactly within 10 minutes:\n`%s`",
				name, escapeMrkdwn(phrase)), maxSectionText), false, false), nil, nil),
			slack.NewInputBlock(PhraseBlockID, plain("Confirmation phrase"), nil, input),
		}},
	}
}

func mentionUser(id string) string {
	if id == "" {
		return "someone"
	}
	return "<@" + id + ">"
}

func clock(t time.Time) string { return t.UTC().Format("15:04 UTC") }
