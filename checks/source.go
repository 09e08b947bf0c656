package checks

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"
)

// greetingWait is how long the source check waits for a greeting after
// connecting (less if the check's timeout comes first).
const greetingWait = 2 * time.Second

// tlsFirstPorts are the source ports where a client speaks first (TLS), so
// no plain-text greeting comes.
var tlsFirstPorts = map[string]bool{"465": true, "993": true, "995": true, "443": true}

// checkSource is D2/X2: the source still answers while a rollback is
// possible, and is gone after it was decommissioned. It only connects and
// reads a greeting; on implicit-TLS ports it does not handshake.
func (r *Runner) checkSource(ctx context.Context, t Target, cfg Config) Result {
	if cfg.SourceAddress == "" {
		return skip("source_address not set")
	}
	_, port, err := net.SplitHostPort(cfg.SourceAddress)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("source_address %q: want host:port", cfg.SourceAddress)}
	}
	obs := map[string]string{"address": cfg.SourceAddress}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.SourceAddress)
	if err != nil {
		reason := "connect: " + short(err)
		obs["error"] = reason
		if t.Phase == PhaseDecommissioned {
			return Result{Status: Pass, Observed: obs, Detail: "source gone (" + reason + ")"}
		}
		return Result{Status: Fail, Observed: obs, Detail: "source unreachable: rollback has no fallback (" + reason + ")"}
	}
	defer conn.Close()
	defer watch(ctx, conn)()
	obs["peer"] = peerAddr(conn).String()

	greeting, gerr := "", error(nil)
	if tlsFirstPorts[port] {
		obs["greeting"] = "(not read: TLS port)"
	} else {
		wait := time.Now().Add(greetingWait)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		conn.SetReadDeadline(wait)
		line, _, err := bufio.NewReader(conn).ReadLine()
		greeting, gerr = clip(string(line), 200), err
		if gerr == nil {
			obs["greeting"] = greeting
		} else {
			obs["error"] = "read greeting: " + short(gerr)
		}
	}

	if t.Phase == PhaseDecommissioned {
		return Result{Status: Warn, Observed: obs, Detail: "source still answers after decommissioning (" + cfg.SourceAddress + ")"}
	}
	if gerr != nil {
		return Result{Status: Warn, Observed: obs,
			Detail: fmt.Sprintf("source accepts connections on %s but sent no greeting (%s); check it still serves", port, short(gerr))}
	}
	detail := "source answers (fallback available)"
	if greeting != "" {
		detail += ": " + clip(greeting, 80)
	}
	return Result{Status: Pass, Observed: obs, Detail: detail}
}
