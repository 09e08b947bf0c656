package checks

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testHost = "mail.example.org"

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "migrationbot test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for name valid from notBefore to notAfter.
func (ca *testCA) leaf(t *testing.T, name string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) validFor(t *testing.T, name string, d time.Duration) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, name, time.Now().Add(-time.Hour), time.Now().Add(d))}}
}

// listen opens a TCP listener on loopback, closed at the end of the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(t *testing.T, addr net.Addr) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// connSet closes every connection a test server accepted, at the end of
// the test, so that handlers blocked on reads return.
type connSet struct {
	mu    sync.Mutex
	lns   []net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newConnSet(t *testing.T) *connSet {
	cs := &connSet{}
	t.Cleanup(func() {
		cs.mu.Lock()
		for _, ln := range cs.lns {
			ln.Close()
		}
		for _, c := range cs.conns {
			c.Close()
		}
		cs.mu.Unlock()
		cs.wg.Wait()
	})
	return cs
}

// serve accepts on ln and runs handle for each connection.
func (cs *connSet) serve(ln net.Listener, handle func(net.Conn)) {
	cs.mu.Lock()
	cs.lns = append(cs.lns, ln)
	cs.mu.Unlock()
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			cs.mu.Lock()
			cs.conns = append(cs.conns, conn)
			cs.mu.Unlock()
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
}

// startHanging starts a TCP peer that accepts and never says anything.
func startHanging(t *testing.T) net.Addr {
	ln := listen(t)
	newConnSet(t).serve(ln, func(c net.Conn) {
		buf := make([]byte, 1024)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	return ln.Addr()
}

// mailServer is a small fake of a mail server speaking one protocol.
type mailServer struct {
	proto    string      // smtp, submission, submissions, imap, imaps, pop3, pop3s, managesieve, https
	tls      *tls.Config // certificate for implicit TLS and STARTTLS
	rcpt     string      // reply to RCPT TO; default "250 2.1.5 OK"
	greeting string      // overrides the greeting

	mu    sync.Mutex
	lines []string // commands received
}

func (m *mailServer) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

// start listens on loopback and returns the port.
func (m *mailServer) start(t *testing.T) int {
	t.Helper()
	ln := listen(t)
	newConnSet(t).serve(ln, m.handle)
	return portOf(t, ln.Addr())
}

func (m *mailServer) handle(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn = conn
	if protocols[m.proto] {
		tc := tls.Server(conn, m.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		c = tc
	}
	fam := family(m.proto)
	if fam == "https" {
		c.Read(make([]byte, 1)) // until the client hangs up
		return
	}
	greeting := map[string]string{
		"smtp":        "220 mx.test ESMTP Stalwart at your service",
		"imap":        "* OK [CAPABILITY IMAP4rev2 STARTTLS] Stalwart IMAP4rev2 at your service.",
		"pop3":        "+OK Stalwart POP3 at your service.",
		"managesieve": "\"IMPLEMENTATION\" \"Stalwart\"\r\n\"STARTTLS\"\r\nOK \"Stalwart ManageSieve at your service.\"",
	}[fam]
	if m.greeting != "" {
		greeting = m.greeting
	}
	fmt.Fprintf(c, "%s\r\n", greeting)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		m.mu.Lock()
		m.lines = append(m.lines, line)
		m.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		reply, upgrade, quit := m.reply(fam, verb, line)
		fmt.Fprintf(c, "%s\r\n", reply)
		if quit {
			return
		}
		if upgrade {
			tc := tls.Server(conn, m.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
			r = bufio.NewReader(c)
		}
	}
}

func (m *mailServer) reply(fam, verb, line string) (reply string, upgrade, quit bool) {
	switch fam {
	case "smtp":
		switch verb {
		case "EHLO":
			return "250-mx.test\r\n250-STARTTLS\r\n250 SIZE 1000000", false, false
		case "STARTTLS":
			return "220 2.0.0 Ready to start TLS", true, false
		case "RCPT":
			if m.rcpt != "" {
				return m.rcpt, false, false
			}
			return "250 2.1.5 OK", false, false
		case "DATA":
			return "354 go on", false, false
		case "QUIT":
			return "221 2.0.0 Bye", false, true
		}
		return "250 2.0.0 OK", false, false
	case "imap":
		if strings.EqualFold(line, "a1 STARTTLS") {
			return "a1 OK Begin TLS negotiation now", true, false
		}
		return "* BAD unexpected", false, false
	case "pop3":
		if verb == "STLS" {
			return "+OK Begin TLS negotiation", true, false
		}
		return "-ERR unexpected", false, false
	case "managesieve":
		if verb == "STARTTLS" {
			return "OK \"Begin TLS negotiation now\"", true, false
		}
		return "NO \"unexpected\"", false, false
	}
	return "", false, true
}

// startDNS serves A and AAAA records of zone (name -> addresses) over UDP
// on loopback and returns its address. Other names are NXDOMAIN.
func startDNS(t *testing.T, zone map[string][]string, ttl uint32) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		addrs, ok := zone[strings.TrimSuffix(strings.ToLower(q.Name), ".")]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, a := range addrs {
			ip := netip.MustParseAddr(a)
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case ip.Is4() && q.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
			case ip.Is6() && q.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
			}
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return pc.LocalAddr().String()
}

// startHangingDNS is a UDP socket that never answers.
func startHangingDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireStatus fails the test when res does not have status want.
func requireStatus(t *testing.T, res Result, want Status) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("got %s, want %s (%s)", res.Line(), want.Word(), res.Observed)
	}
}

func requireDetail(t *testing.T, res Result, substrs ...string) {
	t.Helper()
	for _, s := range substrs {
		if !strings.Contains(res.Detail, s) {
			t.Fatalf("got detail %q, want it to contain %q", res.Detail, s)
		}
	}
}
