package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// answer is the A and AAAA records of one name.
type answer struct {
	addrs  []netip.Addr
	ttl    uint32 // lowest TTL seen
	server string
}

// nameservers returns the servers to ask: cfg.DNSServer, or those of the
// system's resolv.conf.
func (r *Runner) nameservers(cfg Config) ([]string, error) {
	if cfg.DNSServer != "" {
		s := cfg.DNSServer
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, "53")
		}
		return []string{s}, nil
	}
	path := r.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolver config: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", path)
	}
	servers := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	return servers, nil
}

// lookup asks servers, in turn until one answers, for the A and AAAA
// records of name.
func lookup(ctx context.Context, servers []string, name string) (answer, error) {
	var err error
	for _, server := range servers {
		var ans answer
		ans, err = lookupAt(ctx, server, name)
		if err == nil {
			return ans, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return answer{}, err
}

func lookupAt(ctx context.Context, server, name string) (answer, error) {
	ans := answer{server: server}
	first := true
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		in, err := exchange(ctx, server, name, qtype)
		if err != nil {
			return answer{}, fmt.Errorf("%s %s at %s: %s", dns.TypeToString[qtype], name, server, short(err))
		}
		if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
			return answer{}, fmt.Errorf("%s %s at %s: %s", dns.TypeToString[qtype], name, server, dns.RcodeToString[in.Rcode])
		}
		for _, rr := range in.Answer {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			default:
				continue // CNAMEs: their targets' records follow in the answer
			}
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			ans.addrs = append(ans.addrs, a.Unmap())
			if ttl := rr.Header().Ttl; first || ttl < ans.ttl {
				ans.ttl, first = ttl, false
			}
		}
	}
	return ans, nil
}

func exchange(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp"}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	return in, err
}

// resolve returns host's addresses: host itself when it is an address,
// else through cfg.DNSServer when set, else through the system resolver.
func (r *Runner) resolve(ctx context.Context, cfg Config, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if cfg.DNSServer == "" {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, err
	}
	servers, err := r.nameservers(cfg)
	if err != nil {
		return nil, err
	}
	ans, err := lookup(ctx, servers, host)
	if err != nil {
		return nil, err
	}
	if len(ans.addrs) == 0 {
		return nil, errors.New("no A or AAAA record")
	}
	return ans.addrs, nil
}

// checkDNS is R1: the public hostname resolves only to the addresses the
// phase expects (the proxy while proxied, the new deployment after).
func (r *Runner) checkDNS(ctx context.Context, t Target, cfg Config) Result {
	if t.PublicHostname == "" {
		return skip("public_hostname not set")
	}
	want, wantLabel := expected(t)
	if len(want) == 0 {
		return skip(wantLabel + "_addresses not set")
	}
	servers, err := r.nameservers(cfg)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	ans, err := lookup(ctx, servers, t.PublicHostname)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	obs := map[string]string{"server": ans.server}
	if len(ans.addrs) == 0 {
		return Result{Status: Fail, Observed: obs,
			Detail: fmt.Sprintf("%s has no A or AAAA record, want %s", t.PublicHostname, strings.Join(want, ", "))}
	}
	wantSet := newAddrSet(want)
	var shown, plain []string
	ok := true
	for _, a := range ans.addrs {
		shown = append(shown, fmt.Sprintf("%s (%s)", a, label(a, t)))
		plain = append(plain, a.String())
		if !wantSet.has(a) {
			ok = false
		}
	}
	obs["addresses"] = strings.Join(plain, ",")
	obs["ttl"] = strconv.FormatUint(uint64(ans.ttl), 10)
	got := t.PublicHostname + " -> " + strings.Join(shown, ", ")
	if !ok {
		return Result{Status: Fail, Observed: obs, Detail: got + ", want " + strings.Join(want, ", ")}
	}
	return Result{Status: Pass, Observed: obs, Detail: fmt.Sprintf("%s, TTL %ds", got, ans.ttl)}
}
