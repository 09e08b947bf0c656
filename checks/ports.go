package checks

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Port is one entry of the ports setting: a port number and the protocol
// spoken on it.
type Port struct {
	Number   int
	Protocol string
}

// String is the port as "993/imaps".
func (p Port) String() string { return strconv.Itoa(p.Number) + "/" + p.Protocol }

// wellKnownPorts are the port numbers that may be given without a protocol.
var wellKnownPorts = map[int]string{
	25:   "smtp",
	110:  "pop3",
	143:  "imap",
	443:  "https",
	465:  "submissions",
	587:  "submission",
	993:  "imaps",
	995:  "pop3s",
	4190: "managesieve",
}

// protocols maps each known protocol to whether it starts with TLS.
var protocols = map[string]bool{
	"smtp":        false,
	"submission":  false,
	"submissions": true,
	"imap":        false,
	"imaps":       true,
	"pop3":        false,
	"pop3s":       true,
	"managesieve": false,
	"https":       true,
}

func protocolNames() string {
	names := make([]string, 0, len(protocols))
	for p := range protocols {
		names = append(names, p)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// ParsePort parses one entry of the ports setting: an integer (int64 as
// decoded from TOML, or int) naming a well-known mail port, or a string
// "<port>/<protocol>" (a bare "<port>" string works for well-known ports).
func ParsePort(v any) (Port, error) {
	switch v := v.(type) {
	case int64:
		return portFromNumber(int(v))
	case int:
		return portFromNumber(v)
	case string:
		return parsePortString(v)
	default:
		return Port{}, fmt.Errorf("port %v: want a number or \"<port>/<protocol>\", got %T", v, v)
	}
}

// ParsePorts parses every entry of the ports setting.
func ParsePorts(vs []any) ([]Port, error) {
	ports := make([]Port, 0, len(vs))
	for _, v := range vs {
		p, err := ParsePort(v)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func portFromNumber(n int) (Port, error) {
	if n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %d: not a port number (1 to 65535)", n)
	}
	proto, ok := wellKnownPorts[n]
	if !ok {
		return Port{}, fmt.Errorf("port %d: not a well-known mail port, write it as \"%d/<protocol>\"", n, n)
	}
	return Port{Number: n, Protocol: proto}, nil
}

func parsePortString(s string) (Port, error) {
	num, proto, found := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %q: %q is not a port number", s, num)
	}
	if !found {
		return portFromNumber(n)
	}
	proto = strings.ToLower(strings.TrimSpace(proto))
	if _, ok := protocols[proto]; !ok {
		return Port{}, fmt.Errorf("port %q: unknown protocol %q, want one of %s", s, proto, protocolNames())
	}
	return Port{Number: n, Protocol: proto}, nil
}

// family is the dialogue spoken on a protocol: smtp, imap, pop3,
// managesieve or https.
func family(proto string) string {
	switch proto {
	case "smtp", "submission", "submissions":
		return "smtp"
	case "imap", "imaps":
		return "imap"
	case "pop3", "pop3s":
		return "pop3"
	}
	return proto
}

// watch makes conn's reads and writes fail when ctx ends: at its deadline
// and on cancellation. Call stop when done with conn.
func watch(ctx context.Context, conn net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

// short makes timeouts read "timed out" instead of a socket-level message.
func short(err error) string {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return "timed out"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error() // "connection refused"
		}
		return oe.Err.Error()
	}
	return err.Error()
}

// dialAny connects to the first address that answers on port.
func dialAny(ctx context.Context, addrs []netip.Addr, port int) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no address to dial")
	}
	var d net.Dialer
	var err error
	for _, a := range addrs {
		var conn net.Conn
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connect: %s", short(err))
}

func peerAddr(conn net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// probeResult is what one connection to one port found.
type probeResult struct {
	port     Port
	peer     netip.Addr
	greeting string
	certs    []*x509.Certificate
	err      error
}

// probe connects to host's port p at one of addrs, completes an implicit TLS
// handshake, and reads the greeting. With upgrade it also runs STARTTLS on
// plain ports, so that certs is set for every protocol. The certificate is
// not verified here.
func (r *Runner) probe(ctx context.Context, addrs []netip.Addr, host string, p Port, upgrade bool) probeResult {
	res := probeResult{port: p}
	conn, err := dialAny(ctx, addrs, p.Number)
	if err != nil {
		res.err = err
		return res
	}
	defer conn.Close()
	defer watch(ctx, conn)()
	res.peer = peerAddr(conn)

	tlsConfig := &tls.Config{ServerName: host, InsecureSkipVerify: true} // verified by the caller
	var c net.Conn = conn
	fam := family(p.Protocol)
	if protocols[p.Protocol] {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			res.err = fmt.Errorf("tls handshake: %s", short(err))
			return res
		}
		res.certs = tc.ConnectionState().PeerCertificates
		if fam == "https" || upgrade {
			return res
		}
		c = tc
	}

	tp := textproto.NewReader(bufio.NewReader(c))
	res.greeting, err = readGreeting(tp, fam)
	if err != nil {
		res.err = fmt.Errorf("read greeting: %s", short(err))
		return res
	}
	if !upgrade {
		return res
	}
	if err := startTLS(c, tp, fam, r.ehloName()); err != nil {
		res.err = fmt.Errorf("starttls: %s", short(err))
		return res
	}
	tc := tls.Client(conn, tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		res.err = fmt.Errorf("tls handshake after starttls: %s", short(err))
		return res
	}
	res.certs = tc.ConnectionState().PeerCertificates
	return res
}

// readGreeting reads the first thing a server of family fam says, and
// checks that it is a welcome.
func readGreeting(tp *textproto.Reader, fam string) (string, error) {
	switch fam {
	case "smtp":
		code, msg, err := tp.ReadResponse(0)
		if err != nil {
			return "", err
		}
		g := fmt.Sprintf("%d %s", code, firstLine(msg))
		if code != 220 {
			return "", fmt.Errorf("unexpected greeting %q", g)
		}
		return g, nil
	case "imap":
		return expectLine(tp, "* OK")
	case "pop3":
		return expectLine(tp, "+OK")
	case "managesieve":
		// Capabilities first, then an OK line; the first line is the greeting.
		first := ""
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return "", err
			}
			if first == "" {
				first = clip(line, 200)
			}
			switch {
			case hasPrefixFold(line, "OK"):
				return first, nil
			case hasPrefixFold(line, "NO"), hasPrefixFold(line, "BYE"):
				return "", fmt.Errorf("unexpected greeting %q", clip(line, 200))
			}
		}
	}
	return "", fmt.Errorf("no greeting for protocol family %q", fam)
}

func expectLine(tp *textproto.Reader, prefix string) (string, error) {
	line, err := tp.ReadLine()
	if err != nil {
		return "", err
	}
	line = clip(line, 200)
	if !hasPrefixFold(line, prefix) {
		return "", fmt.Errorf("unexpected greeting %q", line)
	}
	return line, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// startTLS asks the server to start TLS, after the greeting was read.
func startTLS(w net.Conn, tp *textproto.Reader, fam, ehlo string) error {
	switch fam {
	case "smtp":
		if _, err := fmt.Fprintf(w, "EHLO %s\r\n", ehlo); err != nil {
			return err
		}
		if _, _, err := tp.ReadResponse(250); err != nil {
			return fmt.Errorf("ehlo: %w", err)
		}
		if _, err := fmt.Fprintf(w, "STARTTLS\r\n"); err != nil {
			return err
		}
		_, _, err := tp.ReadResponse(220)
		return err
	case "imap":
		if _, err := fmt.Fprintf(w, "a1 STARTTLS\r\n"); err != nil {
			return err
		}
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(line, "a1 ") {
				continue // untagged
			}
			if !hasPrefixFold(line, "a1 OK") {
				return fmt.Errorf("refused: %q", clip(line, 200))
			}
			return nil
		}
	case "pop3":
		if _, err := fmt.Fprintf(w, "STLS\r\n"); err != nil {
			return err
		}
		_, err := expectLine(tp, "+OK")
		return err
	case "managesieve":
		if _, err := fmt.Fprintf(w, "STARTTLS\r\n"); err != nil {
			return err
		}
		_, err := expectLine(tp, "OK")
		return err
	}
	return fmt.Errorf("no starttls for protocol family %q", fam)
}

// probeAll probes every port concurrently and returns the results in the
// order of ports.
func (r *Runner) probeAll(ctx context.Context, addrs []netip.Addr, host string, ports []Port, upgrade bool) []probeResult {
	results := make([]probeResult, len(ports))
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Go(func() { results[i] = r.probe(ctx, addrs, host, p, upgrade) })
	}
	wg.Wait()
	return results
}

// checkDirect is R3: the public hostname's ports answer, from the address
// the phase expects.
func (r *Runner) checkDirect(ctx context.Context, t Target, cfg Config) Result {
	if len(cfg.Ports) == 0 {
		return skip("ports not set")
	}
	if t.PublicHostname == "" {
		return skip("public_hostname not set")
	}
	obs := map[string]string{}
	addrs, err := r.resolve(ctx, cfg, t.PublicHostname)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("resolve %s: %s", t.PublicHostname, short(err)), Observed: obs}
	}
	want, wantLabel := expected(t)
	wantSet := newAddrSet(want)

	var failed []string
	peers := map[string]int{}
	for _, pr := range r.probeAll(ctx, addrs, t.PublicHostname, cfg.Ports, false) {
		key := pr.port.String()
		if pr.peer.IsValid() {
			obs[key+".peer"] = pr.peer.String()
		}
		if pr.greeting != "" {
			obs[key+".greeting"] = pr.greeting
		}
		if pr.err != nil {
			obs[key+".error"] = pr.err.Error()
			failed = append(failed, key+" "+pr.err.Error())
			continue
		}
		peer := fmt.Sprintf("%s (%s)", pr.peer, label(pr.peer, t))
		if len(wantSet) > 0 && !wantSet.has(pr.peer) {
			failed = append(failed, fmt.Sprintf("%s peer %s, want %s", key, peer, wantLabel))
			continue
		}
		peers[peer]++
	}
	obs["peers"] = strings.Join(sortedKeys(peers), ", ")
	if len(failed) > 0 {
		return Result{Status: Fail, Observed: obs,
			Detail: fmt.Sprintf("%d of %d ports failed: %s", len(failed), len(cfg.Ports), strings.Join(failed, "; "))}
	}
	return Result{Status: Pass, Observed: obs,
		Detail: fmt.Sprintf("%s: %d ports answer from %s", t.PublicHostname, len(cfg.Ports), obs["peers"])}
}

// expiryWarning is how close to its expiry a certificate gets a warning.
const expiryWarning = 14 * 24 * time.Hour

// checkTLS is R4: every port presents a valid certificate for the public
// hostname, not about to expire.
func (r *Runner) checkTLS(ctx context.Context, t Target, cfg Config) Result {
	if len(cfg.Ports) == 0 {
		return skip("ports not set")
	}
	if t.PublicHostname == "" {
		return skip("public_hostname not set")
	}
	obs := map[string]string{}
	addrs, err := r.resolve(ctx, cfg, t.PublicHostname)
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("resolve %s: %s", t.PublicHostname, short(err)), Observed: obs}
	}
	now := r.now()
	var failed, expiring []string
	var earliest time.Time
	for _, pr := range r.probeAll(ctx, addrs, t.PublicHostname, cfg.Ports, true) {
		key := pr.port.String()
		if pr.err == nil && len(pr.certs) == 0 {
			pr.err = errors.New("no certificate presented")
		}
		if pr.err != nil {
			obs[key+".error"] = pr.err.Error()
			failed = append(failed, key+" "+pr.err.Error())
			continue
		}
		leaf := pr.certs[0]
		obs[key+".not_after"] = leaf.NotAfter.UTC().Format(time.DateOnly)
		obs[key+".subject"] = leaf.Subject.String()
		if err := r.verify(pr.certs, t.PublicHostname, now); err != nil {
			obs[key+".error"] = err.Error()
			failed = append(failed, key+" "+err.Error())
			continue
		}
		if earliest.IsZero() || leaf.NotAfter.Before(earliest) {
			earliest = leaf.NotAfter
		}
		if left := leaf.NotAfter.Sub(now); left < expiryWarning {
			expiring = append(expiring, fmt.Sprintf("%s expires %s (%s)", key, leaf.NotAfter.UTC().Format(time.DateOnly), days(left)))
		}
	}
	if !earliest.IsZero() {
		obs["not_after"] = earliest.UTC().Format(time.DateOnly)
	}
	switch {
	case len(failed) > 0:
		return Result{Status: Fail, Observed: obs,
			Detail: fmt.Sprintf("%d of %d ports failed: %s", len(failed), len(cfg.Ports), strings.Join(failed, "; "))}
	case len(expiring) > 0:
		return Result{Status: Warn, Observed: obs, Detail: strings.Join(expiring, "; ")}
	}
	return Result{Status: Pass, Observed: obs,
		Detail: fmt.Sprintf("%s: valid certificate on %d ports, earliest expiry %s (%s)",
			t.PublicHostname, len(cfg.Ports), obs["not_after"], days(earliest.Sub(now)))}
}

// verify checks the chain against RootCAs, the name and the validity
// period at now.
func (r *Runner) verify(certs []*x509.Certificate, host string, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         r.RootCAs,
		Intermediates: inter,
		CurrentTime:   now,
	})
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	if n == 1 {
		return "1 day left"
	}
	return fmt.Sprintf("%d days left", n)
}
