package checks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// cliWaitDelay bounds how long a killed stalwart-cli may keep its output
// pipes open.
const cliWaitDelay = 100 * time.Millisecond

// runCLI runs stalwart-cli with args and returns its stdout. A non-zero
// exit is an error carrying the first line of stderr (the CLI's "error: ...").
func (r *Runner) runCLI(ctx context.Context, cli string, args ...string) ([]byte, error) {
	name := "stalwart-cli " + strings.Join(args[:2], " ")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = r.Environ
	cmd.WaitDelay = cliWaitDelay
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%s: timed out", name)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if msg := stderrLine(stderr.String()); msg != "" {
				return nil, fmt.Errorf("%s: %s", name, msg)
			}
			return nil, fmt.Errorf("%s: %s", name, ee)
		}
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	return stdout.Bytes(), nil
}

// stderrLine picks the CLI's "error: ..." line, else the first non-empty
// line.
func stderrLine(s string) string {
	first := ""
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "error:") {
			return clip(line, 200)
		}
		if first == "" && line != "" {
			first = clip(line, 200)
		}
	}
	return first
}

// ndjson decodes each non-empty line of out as one JSON value.
func ndjson(out []byte) ([]any, error) {
	var values []any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			return nil, fmt.Errorf("decode %q: %w", clip(string(line), 80), err)
		}
		values = append(values, v)
	}
	return values, sc.Err()
}

// jsonText is v as compact JSON without HTML escaping, so quotes inside
// expressions read as written.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// cleanupState is what stalwart-cli shows of the migration config.
type cleanupState struct {
	relaying     []string // domains with allowRelaying true
	domains      int
	routePresent bool // an MtaRoute named relay exists
	routeUsed    bool // the outbound strategy's route expression names relay
}

func (r *Runner) readCleanup(ctx context.Context, cli, relay string) (cleanupState, error) {
	var st cleanupState
	out, err := r.runCLI(ctx, cli, "query", "Domain", "--fields", "id,name,allowRelaying", "--json")
	if err != nil {
		return st, err
	}
	domains, err := ndjson(out)
	if err != nil {
		return st, fmt.Errorf("stalwart-cli query Domain: %w", err)
	}
	st.domains = len(domains)
	for _, d := range domains {
		obj, _ := d.(map[string]any)
		if on, _ := obj["allowRelaying"].(bool); on {
			name, _ := obj["name"].(string)
			if name == "" {
				name = fmt.Sprint(obj["id"])
			}
			st.relaying = append(st.relaying, name)
		}
	}

	out, err = r.runCLI(ctx, cli, "query", "MtaRoute", "--where", "name="+relay, "--json")
	if err != nil {
		return st, err
	}
	routes, err := ndjson(out)
	if err != nil {
		return st, fmt.Errorf("stalwart-cli query MtaRoute: %w", err)
	}
	for _, rt := range routes {
		// Lines are ids (strings) or objects; an object naming another route
		// (a looser server-side match) does not count.
		if obj, ok := rt.(map[string]any); ok {
			if name, ok := obj["name"].(string); ok && !strings.EqualFold(name, relay) {
				continue
			}
		}
		st.routePresent = true
	}

	out, err = r.runCLI(ctx, cli, "get", "MtaOutboundStrategy", "--fields", "route", "--json")
	if err != nil {
		return st, err
	}
	strategy, err := ndjson(out)
	if err != nil {
		return st, fmt.Errorf("stalwart-cli get MtaOutboundStrategy: %w", err)
	}
	for _, s := range strategy {
		v := s
		if obj, ok := s.(map[string]any); ok {
			if route, ok := obj["route"]; ok {
				v = route
			}
		}
		if strings.Contains(jsonText(v), "'"+relay+"'") {
			st.routeUsed = true
		}
	}
	return st, nil
}

// checkCleanup is C1-C3: the migration config on the new server (route
// expression using the relay, the relay route, allowRelaying on domains)
// is in place while proxied and removed after the cutover.
func (r *Runner) checkCleanup(ctx context.Context, t Target, cfg Config) Result {
	if cfg.StalwartCLI == "" {
		return skip("stalwart_cli not set")
	}
	relay := cfg.RelayRoute
	if relay == "" {
		relay = "source"
	}
	st, err := r.readCleanup(ctx, cfg.StalwartCLI, relay)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	obs := map[string]string{
		"domains":             strconv.Itoa(st.domains),
		"domains_relaying":    strings.Join(st.relaying, ","),
		"relay_route_present": strconv.FormatBool(st.routePresent),
		"route_uses_relay":    strconv.FormatBool(st.routeUsed),
	}
	if st.routeUsed && !st.routePresent {
		return Result{Status: Fail, Observed: obs,
			Detail: fmt.Sprintf("route expression still returns '%s' but the relay route is gone: mail for those recipients cannot be delivered; reset the expression", relay)}
	}

	if afterCutover(t) {
		var left []string
		if st.routeUsed {
			left = append(left, fmt.Sprintf("route expression uses '%s'", relay))
		}
		if st.routePresent {
			left = append(left, fmt.Sprintf("relay route '%s' present", relay))
		}
		if len(st.relaying) > 0 {
			left = append(left, "allowRelaying on "+listSome(st.relaying, 5))
		}
		if len(left) > 0 {
			return Result{Status: Fail, Observed: obs, Detail: strings.Join(left, "; ")}
		}
		return Result{Status: Pass, Observed: obs, Detail: "migration config removed"}
	}

	var missing []string
	if !st.routeUsed {
		missing = append(missing, fmt.Sprintf("route expression does not use '%s'", relay))
	}
	if !st.routePresent {
		missing = append(missing, fmt.Sprintf("relay route '%s' missing", relay))
	}
	if off := notRelaying(t.Domains, st.relaying); len(off) > 0 {
		missing = append(missing, "allowRelaying off on "+listSome(off, 5))
	} else if len(t.Domains) == 0 && len(st.relaying) == 0 {
		missing = append(missing, "allowRelaying off on every domain")
	}
	if len(missing) > 0 {
		return Result{Status: Warn, Observed: obs,
			Detail: strings.Join(missing, "; ") + ": split delivery needs it, and a rollback needs it restored"}
	}
	return Result{Status: Pass, Observed: obs, Detail: "migration config in place"}
}

// notRelaying returns the domains not in relaying.
func notRelaying(domains, relaying []string) []string {
	on := map[string]bool{}
	for _, d := range relaying {
		on[strings.ToLower(d)] = true
	}
	var off []string
	for _, d := range domains {
		if !on[strings.ToLower(d)] {
			off = append(off, d)
		}
	}
	return off
}
