package checks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/textproto"
	"strings"
)

// rcptReply is the server's answer to RCPT TO for one domain.
type rcptReply struct {
	domain string
	code   int
	text   string
}

func (r rcptReply) String() string { return fmt.Sprintf("%s %d %s", r.domain, r.code, r.text) }

// checkRelay is C4: an SMTP session to the new server offers a random,
// unknown recipient in each migrated domain (never DATA). While proxied it
// is accepted and relayed to the source (split delivery); after the
// migration config is removed it must be refused.
func (r *Runner) checkRelay(ctx context.Context, t Target, cfg Config) Result {
	if cfg.SMTPAddress == "" {
		return skip("smtp_address not set")
	}
	if len(t.Domains) == 0 {
		return skip("domains not set")
	}
	obs := map[string]string{"smtp_address": cfg.SMTPAddress}
	replies, err := r.probeRecipients(ctx, cfg.SMTPAddress, t.Domains, obs)
	if err != nil {
		return Result{Status: Fail, Observed: obs, Detail: err.Error()}
	}

	var accepted, refused, deferred []rcptReply
	for _, rp := range replies {
		obs["rcpt."+rp.domain] = fmt.Sprintf("%d %s", rp.code, rp.text)
		switch rp.code / 100 {
		case 2:
			accepted = append(accepted, rp)
		case 5:
			refused = append(refused, rp)
		default:
			deferred = append(deferred, rp)
		}
	}

	if afterCutover(t) {
		switch {
		case len(accepted) > 0:
			return Result{Status: Fail, Observed: obs,
				Detail: fmt.Sprintf("new server still accepts unknown recipients in %s (%d): migration config not removed",
					domainsOf(accepted), accepted[0].code)}
		case len(deferred) > 0:
			return Result{Status: Warn, Observed: obs,
				Detail: "unknown recipients deferred, not refused: " + joinReplies(deferred)}
		}
		return Result{Status: Pass, Observed: obs, Detail: "relay closed: " + joinReplies(refused)}
	}
	switch {
	case len(refused) > 0:
		return Result{Status: Warn, Observed: obs,
			Detail: "unknown recipients refused while proxied: split delivery to the source is off (" + joinReplies(refused) + ")"}
	case len(deferred) > 0:
		return Result{Status: Warn, Observed: obs,
			Detail: "unknown recipients deferred while proxied: " + joinReplies(deferred)}
	}
	return Result{Status: Pass, Observed: obs, Detail: "split delivery active: " + joinReplies(accepted)}
}

// probeRecipients runs the SMTP session: greeting, EHLO, MAIL FROM:<>, one
// RCPT TO per domain, RSET, QUIT.
func (r *Runner) probeRecipients(ctx context.Context, addr string, domains []string, obs map[string]string) ([]rcptReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %s", addr, short(err))
	}
	defer conn.Close()
	defer watch(ctx, conn)()
	obs["peer"] = peerAddr(conn).String()
	tp := textproto.NewConn(conn)

	cmd := func(format string, args ...any) (int, string, error) {
		if err := tp.PrintfLine(format, args...); err != nil {
			return 0, "", err
		}
		code, msg, err := tp.ReadResponse(0)
		return code, firstLine(msg), err
	}

	code, msg, err := tp.ReadResponse(0)
	if err != nil {
		return nil, fmt.Errorf("read greeting: %s", short(err))
	}
	obs["greeting"] = fmt.Sprintf("%d %s", code, firstLine(msg))
	if code != 220 {
		return nil, fmt.Errorf("unexpected greeting %s", obs["greeting"])
	}
	code, msg, err = cmd("EHLO %s", r.ehloName())
	if err == nil && code/100 != 2 {
		code, msg, err = cmd("HELO %s", r.ehloName())
	}
	if err != nil {
		return nil, fmt.Errorf("ehlo: %s", short(err))
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("ehlo refused: %d %s", code, msg)
	}
	code, msg, err = cmd("MAIL FROM:<>")
	if err != nil {
		return nil, fmt.Errorf("mail from: %s", short(err))
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("MAIL FROM:<> refused: %d %s", code, msg)
	}

	local := probeLocalPart()
	obs["probe_local_part"] = local
	var replies []rcptReply
	for _, domain := range domains {
		code, msg, err := cmd("RCPT TO:<%s@%s>", local, domain)
		if err != nil {
			return nil, fmt.Errorf("rcpt to %s: %s", domain, short(err))
		}
		replies = append(replies, rcptReply{domain: domain, code: code, text: msg})
	}
	cmd("RSET")
	cmd("QUIT")
	return replies, nil
}

// probeLocalPart is a recipient nobody has: migrationbot-probe-<hex>.
func probeLocalPart() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "migrationbot-probe-" + hex.EncodeToString(b)
}

func joinReplies(rs []rcptReply) string {
	parts := make([]string, len(rs))
	for i, rp := range rs {
		parts[i] = rp.String()
	}
	return strings.Join(parts, ", ")
}

func domainsOf(rs []rcptReply) string {
	parts := make([]string, len(rs))
	for i, rp := range rs {
		parts[i] = rp.domain
	}
	return strings.Join(parts, ", ")
}
