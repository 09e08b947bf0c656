package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// Defaults of SlackPoster.
const (
	DefaultPostInterval = time.Second      // chat.postMessage: about one message per second per channel
	DefaultMaxRetryWait = 30 * time.Second // total time a post may wait out HTTP 429s
)

// SlackPoster is a Poster that calls chat.postMessage. It paces posts into one channel to at
// most one per Interval (the announcements of commands and the scheduler's reports share it),
// waits out HTTP 429 (Retry-After) and retries, at most MaxRetryWait in all and never past the
// context's deadline, and retries nothing else. A post that failed after it was sent (a timeout)
// returns an error wrapping ErrUncertain and is not sent again. Safe for concurrent use.
type SlackPoster struct {
	API          *slack.Client
	Interval     time.Duration // default DefaultPostInterval
	MaxRetryWait time.Duration // default DefaultMaxRetryWait
	Metrics      *Metrics      // counts failed calls and 429s; nil: not counted

	mu   sync.Mutex
	next map[string]time.Time // channel -> earliest time of its next post
}

// NewSlackPoster returns a poster with the default pacing and retry budget.
func NewSlackPoster(api *slack.Client) *SlackPoster { return &SlackPoster{API: api} }

// PostMessage posts msg into channel and returns the message's ts.
func (p *SlackPoster) PostMessage(ctx context.Context, channel string, msg Message) (string, error) {
	blocks, err := toBlocks(msg.Blocks)
	if err != nil {
		return "", fmt.Errorf("post to %s: %w", channel, err)
	}
	opts := []slack.MsgOption{slack.MsgOptionText(msg.Text, false)}
	if len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	maxWait := p.MaxRetryWait
	if maxWait <= 0 {
		maxWait = DefaultMaxRetryWait
	}
	var waited time.Duration
	for {
		if err := p.pace(ctx, channel); err != nil {
			return "", fmt.Errorf("post to %s: %w", channel, err)
		}
		_, ts, err := p.API.PostMessageContext(ctx, channel, opts...)
		if err == nil {
			return ts, nil
		}
		p.Metrics.SlackError("chat.postMessage", err)
		var rle *slack.RateLimitedError
		if errors.As(err, &rle) {
			// A 429 was not posted: waiting and sending again is safe.
			wait := max(rle.RetryAfter, time.Second)
			if waited+wait > maxWait {
				return "", fmt.Errorf("post to %s: rate limited, gave up after waiting %s: %w", channel, waited, err)
			}
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return "", fmt.Errorf("post to %s: rate limited for %s, beyond the deadline: %w", channel, wait, err)
			}
			if err := sleep(ctx, wait); err != nil {
				return "", fmt.Errorf("post to %s: %w", channel, err)
			}
			waited += wait
			continue
		}
		if sentThenTimedOut(err) {
			return "", fmt.Errorf("post to %s: %w: %w", channel, ErrUncertain, err)
		}
		return "", fmt.Errorf("post to %s: %w", channel, err)
	}
}

// OpenView opens a modal with views.open (through the same API client and URL as the posts).
// triggerID is valid for 3 seconds after the interaction that carried it.
func (p *SlackPoster) OpenView(ctx context.Context, triggerID string, view slack.ModalViewRequest) error {
	_, err := p.API.OpenViewContext(ctx, triggerID, view)
	if err != nil {
		p.Metrics.SlackError("views.open", err)
		return fmt.Errorf("views.open: %w", err)
	}
	return nil
}

// pace waits for channel's next free slot and takes it.
func (p *SlackPoster) pace(ctx context.Context, channel string) error {
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultPostInterval
	}
	p.mu.Lock()
	now := time.Now()
	if p.next == nil {
		p.next = map[string]time.Time{}
	}
	if len(p.next) > 1000 { // forget channels whose slot is long past
		for ch, t := range p.next {
			if t.Before(now) {
				delete(p.next, ch)
			}
		}
	}
	at := p.next[channel]
	if at.Before(now) {
		at = now
	}
	p.next[channel] = at.Add(interval)
	p.mu.Unlock()
	return sleep(ctx, at.Sub(now))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sentThenTimedOut reports whether err means the request may have reached Slack.
func sentThenTimedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// toBlocks turns Message.Blocks into slack-go blocks: []slack.Block as Render makes them, or
// anything that marshals to a Block Kit JSON array.
func toBlocks(v any) ([]slack.Block, error) {
	switch b := v.(type) {
	case nil:
		return nil, nil
	case []slack.Block:
		return b, nil
	case slack.Blocks:
		return b.BlockSet, nil
	case *slack.Blocks:
		return b.BlockSet, nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	var bs slack.Blocks
	if err := json.Unmarshal(raw, &bs); err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	return bs.BlockSet, nil
}

// ResponseURLPoster answers a slash command through its response_url (usable 5 times within
// 30 minutes of the command).
type ResponseURLPoster struct {
	HTTP    *http.Client // default: a client with a 10-second timeout
	Metrics *Metrics     // counts failed posts; nil: not counted
}

var defaultHTTP = &http.Client{Timeout: 10 * time.Second}

// Respond posts msg to responseURL, ephemeral unless inChannel.
func (p *ResponseURLPoster) Respond(ctx context.Context, responseURL string, msg Message, inChannel bool) error {
	return p.send(ctx, responseURL, msg, inChannel, false)
}

// Replace replaces the message an interaction came from (replace_original) with msg.
func (p *ResponseURLPoster) Replace(ctx context.Context, responseURL string, msg Message) error {
	return p.send(ctx, responseURL, msg, false, true)
}

func (p *ResponseURLPoster) send(ctx context.Context, responseURL string, msg Message, inChannel, replace bool) error {
	blocks, err := toBlocks(msg.Blocks)
	if err != nil {
		return err
	}
	wm := &slack.WebhookMessage{Text: msg.Text, ResponseType: slack.ResponseTypeEphemeral, ReplaceOriginal: replace}
	if inChannel {
		wm.ResponseType = slack.ResponseTypeInChannel
	}
	if len(blocks) > 0 {
		wm.Blocks = &slack.Blocks{BlockSet: blocks}
	}
	hc := p.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	if err := slack.PostWebhookCustomHTTPContext(ctx, responseURL, hc, wm); err != nil {
		p.Metrics.SlackError("response_url", err)
		return fmt.Errorf("response_url: %w", withoutURL(err))
	}
	return nil
}

// Defaults of GroupCache.
const (
	DefaultGroupTTL     = 5 * time.Minute
	DefaultGroupTimeout = 2 * time.Second
)

// GroupCache resolves Slack user groups (S...) with usergroups.users.list and keeps each answer
// for TTL. A failed lookup is not cached (the caller logs it and counts the user as not a
// member). It implements commands.GroupResolver.
type GroupCache struct {
	API     *slack.Client
	Metrics *Metrics         // counts failed lookups; nil: not counted
	TTL     time.Duration    // default DefaultGroupTTL
	Timeout time.Duration    // per lookup, default DefaultGroupTimeout
	Now     func() time.Time // default time.Now

	mu      sync.Mutex
	entries map[string]groupEntry
}

// DefaultGroupStale is how long after expiry a group's last known members are still used when
// Slack cannot be asked.
const DefaultGroupStale = 24 * time.Hour

type groupEntry struct {
	members []string
	expires time.Time
}

// GroupMembers returns the user IDs in group.
func (g *GroupCache) GroupMembers(ctx context.Context, group string) ([]string, error) {
	now := g.now()
	g.mu.Lock()
	e, ok := g.entries[group]
	g.mu.Unlock()
	if ok && now.Before(e.expires) {
		return slices.Clone(e.members), nil
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = DefaultGroupTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	members, err := g.API.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		g.Metrics.SlackError("usergroups.users.list", err)
		if ok && now.Sub(e.expires) < DefaultGroupStale {
			// Slack is down or slow: the last known members beat locking the on-call out.
			return slices.Clone(e.members), nil
		}
		return nil, fmt.Errorf("usergroups.users.list %s: %w", group, err)
	}
	ttl := g.TTL
	if ttl <= 0 {
		ttl = DefaultGroupTTL
	}
	g.mu.Lock()
	if g.entries == nil {
		g.entries = map[string]groupEntry{}
	}
	// The map holds only the groups named in [roles], so it stays small without pruning.
	g.entries[group] = groupEntry{members: slices.Clone(members), expires: now.Add(ttl)}
	g.mu.Unlock()
	return members, nil
}

func (g *GroupCache) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}
