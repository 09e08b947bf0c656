package checks

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Status is the outcome of one check.
type Status string

// The four outcomes of a check.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip" // not configured
)

// Word is the status as shown at the start of a result line: "PASS", "WARN",
// "FAIL" or "SKIP".
func (s Status) Word() string { return strings.ToUpper(string(s)) }

// Check ids, in display order.
const (
	IDMapping = "mapping"
	IDProxy   = "proxy"
	IDDNS     = "dns"
	IDDirect  = "direct"
	IDTLS     = "tls"
	IDRelay   = "relay"
	IDCleanup = "cleanup"
	IDSource  = "source"
)

// All is every check id, in display order.
var All = []string{IDMapping, IDProxy, IDDNS, IDDirect, IDTLS, IDRelay, IDCleanup, IDSource}

// Gate is the source-empty checks that gate the cutover.
var Gate = []string{IDMapping}

// Phases a Target can be in.
const (
	PhaseProxied        = "proxied"
	PhaseCutover        = "cutover"
	PhaseDecommissioned = "decommissioned"
)

// DefaultTimeout is the time a check gets when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Result is what one check found.
type Result struct {
	ID       string
	Status   Status
	Detail   string            // one line
	Observed map[string]string // what the check saw: addresses, counts, greeting, expiry, ttl...
	At       time.Time         // when the check started
	Took     time.Duration
	Phase    string // the phase the check judged against (Target.Phase, "proxied" when empty)
}

// Line is the result as one line of plain text: "FAIL dns: <detail>".
func (r Result) Line() string {
	if r.Detail == "" {
		return r.Status.Word() + " " + r.ID
	}
	return r.Status.Word() + " " + r.ID + ": " + r.Detail
}

// Config holds one migration's [migration.checks] keys. Every key is
// optional; a check whose settings are missing returns Skip.
type Config struct {
	ProxyAdminURL    string        // proxy_admin_url, e.g. https://127.0.0.1:9443
	ProxyTokenFile   string        // proxy_token_file: bearer token, surrounding space trimmed
	ProxyInsecure    bool          // proxy_insecure: accept any admin certificate
	ProxyCertSHA256  string        // proxy_cert_sha256: hex SHA-256 of the admin leaf certificate (DER)
	ProxyConfig      string        // proxy_config: path of the proxy's TOML config
	MappingFile      string        // mapping_file
	MappingRedisURL  string        // mapping_redis_url
	MappingKeyPrefix string        // mapping_key_prefix, default "route:"
	DNSServer        string        // dns_server "host:port"; default the system resolver
	Ports            []Port        // ports
	SMTPAddress      string        // smtp_address host:port for the relay-closed probe
	StalwartCLI      string        // stalwart_cli path
	RelayRoute       string        // relay_route, default "source"
	SourceAddress    string        // source_address host:port
	Timeout          time.Duration // timeout per check, default 5s
}

// Target is what the checks compare against: the migration's addresses and
// names and its current phase.
type Target struct {
	PublicHostname string
	SourceHost     string
	NewAddresses   []string
	ProxyAddresses []string
	Domains        []string
	Phase          string // "proxied", "cutover" or "decommissioned"; "" counts as proxied
}

// Runner runs checks. Its zero value is ready to use.
type Runner struct {
	Now     func() time.Time // nil: time.Now
	RootCAs *x509.CertPool   // nil: the system roots (SSL_CERT_FILE works)

	// Environ is the environment of stalwart-cli; nil inherits the process
	// environment (STALWART_URL, STALWART_TOKEN).
	Environ []string
	// ResolvConf is read for the system resolver's servers when
	// Config.DNSServer is empty; "" means /etc/resolv.conf.
	ResolvConf string
	// EHLOName is the name sent in EHLO; "" means "migrationbot.invalid".
	EHLOName string

	checks map[string]checkFunc // tests: replaces checkFuncs
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) ehloName() string {
	if r.EHLOName != "" {
		return r.EHLOName
	}
	return "migrationbot.invalid"
}

type checkFunc func(r *Runner, ctx context.Context, t Target, cfg Config) Result

var checkFuncs = map[string]checkFunc{
	IDMapping: (*Runner).checkMapping,
	IDProxy:   (*Runner).checkProxy,
	IDDNS:     (*Runner).checkDNS,
	IDDirect:  (*Runner).checkDirect,
	IDTLS:     (*Runner).checkTLS,
	IDRelay:   (*Runner).checkRelay,
	IDCleanup: (*Runner).checkCleanup,
	IDSource:  (*Runner).checkSource,
}

// giveUpGrace is how long Run waits past a check's own timeout before it
// stops waiting for a check that does not return.
const giveUpGrace = 250 * time.Millisecond

// Run runs the named checks (none: All) concurrently, each under
// cfg.Timeout and all under ctx, and returns one Result per id in the order
// given. It never blocks past ctx's deadline: a check still running then
// is reported as Fail "timed out after ...". An unknown id is Fail "unknown
// check".
func (r *Runner) Run(ctx context.Context, t Target, cfg Config, ids ...string) []Result {
	if len(ids) == 0 {
		ids = All
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	start := r.now()
	began := time.Now() // wall clock for Took, whatever Now says
	chans := make([]chan Result, len(ids))
	for i, id := range ids {
		ch := make(chan Result, 1)
		chans[i] = ch
		fn, ok := r.lookupCheck(id)
		if !ok {
			ch <- Result{ID: id, Status: Fail, Detail: "unknown check"}
			continue
		}
		go func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			ch <- r.runOne(cctx, fn, id, t, cfg)
		}()
	}

	giveUp := time.NewTimer(timeout + giveUpGrace)
	defer giveUp.Stop()
	gaveUp := false
	results := make([]Result, len(ids))
	for i, id := range ids {
		var res Result
		select {
		case res = <-chans[i]: // finished already: prefer it to a timeout
		default:
			if gaveUp {
				res = timedOut(id, time.Since(began))
				break
			}
			select {
			case res = <-chans[i]:
			case <-ctx.Done():
				gaveUp = true
				res = timedOut(id, time.Since(began))
			case <-giveUp.C:
				gaveUp = true
				res = timedOut(id, time.Since(began))
			}
		}
		res.ID = id
		res.Phase = t.Phase
		if res.Phase == "" {
			res.Phase = PhaseProxied
		}
		if res.At.IsZero() {
			res.At = start
		}
		if res.Took == 0 {
			res.Took = time.Since(began)
		}
		if res.Observed == nil {
			res.Observed = map[string]string{}
		}
		results[i] = res
	}
	return results
}

func (r *Runner) lookupCheck(id string) (checkFunc, bool) {
	if r.checks != nil {
		fn, ok := r.checks[id]
		return fn, ok
	}
	fn, ok := checkFuncs[id]
	return fn, ok
}

func timedOut(id string, took time.Duration) Result {
	return Result{ID: id, Status: Fail, Detail: "timed out after " + took.Round(time.Millisecond).String(), Took: took}
}

// runOne runs one check, turning a panic into a Fail.
func (r *Runner) runOne(ctx context.Context, fn checkFunc, id string, t Target, cfg Config) (res Result) {
	at := r.now()
	began := time.Now()
	defer func() {
		if p := recover(); p != nil {
			res = Result{Status: Fail, Detail: fmt.Sprintf("check panicked: %v", p)}
		}
		res.ID, res.At, res.Took = id, at, time.Since(began)
	}()
	if !validPhase(t.Phase) {
		return Result{Status: Fail, Detail: fmt.Sprintf("unknown phase %q", t.Phase)}
	}
	return fn(r, ctx, t, cfg)
}

func validPhase(p string) bool {
	switch p {
	case "", PhaseProxied, PhaseCutover, PhaseDecommissioned:
		return true
	}
	return false
}

// afterCutover reports whether the public hostname should point at the new
// deployment and the proxy be stopped.
func afterCutover(t Target) bool {
	return t.Phase == PhaseCutover || t.Phase == PhaseDecommissioned
}

func skip(detail string) Result { return Result{Status: Skip, Detail: detail} }

// addrSet is a set of IP addresses compared in canonical form.
type addrSet map[netip.Addr]bool

func newAddrSet(addrs []string) addrSet {
	s := addrSet{}
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(strings.TrimSpace(a)); err == nil {
			s[ip.Unmap()] = true
		}
	}
	return s
}

func (s addrSet) has(ip netip.Addr) bool { return s[ip.Unmap()] }

// label names which side of the migration an address belongs to.
func label(ip netip.Addr, t Target) string {
	switch {
	case newAddrSet(t.NewAddresses).has(ip):
		return "new"
	case newAddrSet(t.ProxyAddresses).has(ip):
		return "proxy"
	}
	return "unknown"
}

// expected returns the addresses the public hostname should lead to in the
// target's phase, and their label.
func expected(t Target) ([]string, string) {
	if afterCutover(t) {
		return t.NewAddresses, "new"
	}
	return t.ProxyAddresses, "proxy"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return clip(s, 200)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// listSome joins the first n items and says how many more there are.
func listSome(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
