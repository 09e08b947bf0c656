package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/migrationbot/migrationbot/commands"
)

// maxAck is the largest acknowledgement sent over Socket Mode: Slack silently drops a response
// of 20 KB or more (slack-go refuses it), and the envelope adds a little around the payload.
const maxAck = 20*1024 - 256

// ackTimeout bounds queueing an acknowledgement for the WebSocket.
const ackTimeout = 2 * time.Second

// SocketMode receives slash commands and interactions over Slack's Socket Mode (an outbound
// WebSocket; needs an app-level token) and answers them through the Server's code paths: the
// acknowledgement carries the answer when it is ready within AckAfter, otherwise it follows
// through response_url. slack-go's client reconnects by itself (Slack asks it to regularly).
type SocketMode struct {
	Server *Server
	Client *socketmode.Client
	Log    *slog.Logger
}

// NewSocketMode returns a Socket Mode loop for srv. api must carry the app-level token
// (slack.OptionAppLevelToken); apps.connections.open is called at its API URL.
func NewSocketMode(api *slack.Client, srv *Server, log *slog.Logger) *SocketMode {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("transport", "socket_mode")
	return &SocketMode{
		Server: srv,
		Client: socketmode.New(api, socketmode.OptionLog(slogWriter{log})),
		Log:    log,
	}
}

// Run connects and answers until ctx is done, then waits for the requests being acknowledged
// and returns nil. It returns an error when the connection cannot be (re)established for good
// (an invalid app token, for one).
func (sm *SocketMode) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- sm.Client.RunContext(ctx) }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			<-errc
			return nil
		case err := <-errc:
			if ctx.Err() != nil || err == nil {
				return nil
			}
			return fmt.Errorf("socket mode: %w", err)
		case evt := <-sm.Client.Events:
			switch evt.Type {
			case socketmode.EventTypeSlashCommand, socketmode.EventTypeInteractive, socketmode.EventTypeEventsAPI:
				wg.Go(func() { sm.handle(ctx, evt) })
			default:
				sm.status(evt)
			}
		}
	}
}

// status logs the connection's life.
func (sm *SocketMode) status(evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		sm.Log.Info("socket mode connecting")
	case socketmode.EventTypeConnected:
		sm.Log.Info("socket mode connected")
	case socketmode.EventTypeConnectionError:
		if e, ok := evt.Data.(*slack.ConnectionErrorEvent); ok {
			sm.Log.Warn("socket mode connection failed; retrying", "attempt", e.Attempt, "backoff", e.Backoff.String(), "err", e.ErrorObj)
			sm.Server.Metrics.SlackError("apps.connections.open", e.ErrorObj)
		} else {
			sm.Log.Warn("socket mode connection failed; retrying")
		}
	case socketmode.EventTypeInvalidAuth:
		sm.Log.Error("socket mode: the app-level token is not accepted")
	case socketmode.EventTypeHello:
		sm.Log.Debug("socket mode hello")
	case socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		sm.Log.Warn("socket mode message problem", "type", string(evt.Type), "data", fmt.Sprintf("%T", evt.Data))
	default:
		sm.Log.Debug("socket mode event", "type", string(evt.Type))
	}
}

// handle answers one request envelope.
func (sm *SocketMode) handle(ctx context.Context, evt socketmode.Event) {
	start := time.Now()
	if evt.Request == nil {
		return
	}
	envelope := evt.Request.EnvelopeID
	log := sm.Log.With("envelope", envelope)
	if evt.Request.RetryAttempt > 0 {
		log = log.With("retry", evt.Request.RetryAttempt, "retry_reason", evt.Request.RetryReason)
	}
	s := sm.Server
	switch data := evt.Data.(type) {
	case slack.SlashCommand:
		if data.UserID == "" {
			log.Warn("slash command without user_id ignored")
			sm.ack(ctx, log, envelope, nil)
			return
		}
		req := commands.Request{UserID: data.UserID, ChannelID: data.ChannelID, Text: data.Text, RequestID: commands.NewRequestID(), DeliveryID: data.TriggerID}
		msg, started := s.slashCommand(ctx.Done(), log, req, data.ResponseURL, start)
		if !started {
			msg = Message{Text: "migrationbot is restarting: nothing was done. Try again in a moment."}
		}
		p := replyOf(msg)
		if b, err := json.Marshal(p); err == nil && len(b) > maxAck {
			// Too large for an acknowledgement: acknowledge, and send the answer through
			// response_url instead.
			log.Info("answer too large for a socket mode acknowledgement; it follows through response_url", "bytes", len(b))
			sm.ack(ctx, log, envelope, replyOf(Message{Text: WorkingText}))
			s.jobs.start(deliverTimeout, func(jctx context.Context) {
				s.respondLater(jctx, log, data.ResponseURL, answer{msg: msg})
			})
			return
		}
		sm.ack(ctx, log, envelope, p)
	case slack.InteractionCallback:
		ack := s.interact(ctx.Done(), log, data, start)
		if ack == nil {
			sm.ack(ctx, log, envelope, nil)
			return
		}
		sm.ack(ctx, log, envelope, ack)
	default:
		sm.ack(ctx, log, envelope, nil) // events we do not subscribe to: acknowledged, ignored
	}
}

func (sm *SocketMode) ack(ctx context.Context, log *slog.Logger, envelope string, payload any) {
	actx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	if err := sm.Client.AckCtx(actx, envelope, payload); err != nil {
		log.Warn("socket mode acknowledgement failed", "err", err)
	}
}

// replyOf is a slash command's answer as Slack reads it, with Block Kit as JSON values.
// It goes to the caller only: transitions reach the channel through chat.postMessage.
func replyOf(msg Message) reply {
	return reply{ResponseType: "ephemeral", Text: msg.Text, Blocks: msg.Blocks}
}

// slogWriter passes slack-go's socketmode log lines (debug output, off by default) to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Output(_ int, s string) error {
	w.log.Debug("slack-go: " + strings.TrimRight(s, "\n"))
	return nil
}
