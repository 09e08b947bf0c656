package checks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const testToken = "s3cret-admin-token-0123456789abcdefghijklmnop"

// startProxyAdmin fakes the proxy's admin API: /healthz without auth,
// /stats with the bearer token.
func startProxyAdmin(t *testing.T, statsStatus int) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "ok\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if statsStatus != http.StatusOK {
			// A misbehaving server echoing the credentials it got.
			http.Error(w, "boom "+r.Header.Get("Authorization"), statsStatus)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"cache_hits":90,"cache_misses":10,"hit_rate_pct":90.0,"cache_entries":42,"active_connections":3}`)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func certPin(srv *httptest.Server) string {
	sum := sha256.Sum256(srv.Certificate().Raw)
	return hex.EncodeToString(sum[:])
}

func TestProxy(t *testing.T) {
	up := startProxyAdmin(t, http.StatusOK)
	broken := startProxyAdmin(t, http.StatusInternalServerError)
	tokenFile := writeFile(t, "admin.token", "  "+testToken+"\n")
	wrongToken := writeFile(t, "wrong.token", "not-the-token-not-the-token-not-the-token")
	down := "https://" + closedAddr(t)
	hanging := "https://" + startHanging(t).String()

	roots := newCA(t).pool
	roots.AddCert(up.Certificate())

	tests := []struct {
		name       string
		phase      string
		cfg        Config
		roots      bool
		want       Status
		wantDetail []string
	}{
		{"proxied up, pinned", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyCertSHA256: certPin(up)},
			false, Pass, []string{"proxy up: 3 active connections, cache hit rate 90.0%"}},
		{"proxied up, pin with colons and upper case", PhaseProxied,
			Config{ProxyAdminURL: up.URL + "/", ProxyTokenFile: tokenFile, ProxyCertSHA256: colons(strings.ToUpper(certPin(up)))},
			false, Pass, []string{"3 active connections"}},
		{"proxied up, insecure", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Pass, []string{"3 active connections"}},
		{"proxied up, verified by RootCAs", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile},
			true, Pass, []string{"3 active connections"}},
		{"proxied up, no token file", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyInsecure: true},
			false, Pass, []string{"proxy up (healthz ok; proxy_token_file not set"}},
		{"self-signed without insecure or pin", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile},
			false, Fail, []string{"proxy down", "certificate"}},
		{"wrong pin", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyCertSHA256: strings.Repeat("ab", 32)},
			false, Fail, []string{"does not match proxy_cert_sha256"}},
		{"malformed pin", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyCertSHA256: "abc"},
			false, Fail, []string{"proxy_cert_sha256: want 64 hex digits"}},
		{"proxied wrong token", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: wrongToken, ProxyInsecure: true},
			false, Fail, []string{"admin token rejected"}},
		{"proxied stats error echoing the token", PhaseProxied,
			Config{ProxyAdminURL: broken.URL, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Fail, []string{"stats answered 500", "[redacted]"}},
		{"proxied missing token file", PhaseProxied,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: "/nonexistent/admin.token", ProxyInsecure: true},
			false, Fail, []string{"read proxy token file"}},
		{"proxied down", PhaseProxied,
			Config{ProxyAdminURL: down, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Fail, []string{"proxy down", "connection refused"}},
		{"proxied hanging", PhaseProxied,
			Config{ProxyAdminURL: hanging, ProxyTokenFile: tokenFile, ProxyInsecure: true, Timeout: 300 * time.Millisecond},
			false, Fail, []string{"proxy down", "timed out"}},
		{"cutover stopped", PhaseCutover,
			Config{ProxyAdminURL: down, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Pass, []string{"proxy stopped"}},
		{"decommissioned stopped", PhaseDecommissioned,
			Config{ProxyAdminURL: down, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Pass, []string{"proxy stopped"}},
		{"cutover still running", PhaseCutover,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyInsecure: true},
			false, Warn, []string{"proxy still running (3 active connections); stop it once clients reach the new server directly"}},
		{"cutover wrong token", PhaseCutover,
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: wrongToken, ProxyInsecure: true},
			false, Fail, []string{"admin token rejected"}},
		{"cutover hanging", PhaseCutover,
			Config{ProxyAdminURL: hanging, ProxyTokenFile: tokenFile, ProxyInsecure: true, Timeout: 300 * time.Millisecond},
			false, Warn, []string{"still accepts connections", "timed out"}},
		{"not configured", PhaseProxied, Config{ProxyTokenFile: tokenFile}, false, Skip, []string{"proxy_admin_url not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runner{}
			if tt.roots {
				r.RootCAs = roots
			}
			start := time.Now()
			res := run1(t, r, Target{Phase: tt.phase}, tt.cfg, IDProxy)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			if took := time.Since(start); took > 700*time.Millisecond {
				t.Errorf("took %v, want well under a second", took)
			}
			if strings.Contains(res.Line(), testToken) {
				t.Errorf("got the token in %q", res.Line())
			}
			for k, v := range res.Observed {
				if strings.Contains(v, testToken) {
					t.Errorf("got the token in observed %s=%q", k, v)
				}
			}
		})
	}
	t.Run("observed stats", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{Phase: PhaseProxied},
			Config{ProxyAdminURL: up.URL, ProxyTokenFile: tokenFile, ProxyInsecure: true}, IDProxy)
		want := map[string]string{"active_connections": "3", "cache_hits": "90", "cache_misses": "10",
			"cache_entries": "42", "hit_rate_pct": "90.0", "healthz": "ok", "admin_url": up.URL}
		for k, v := range want {
			if res.Observed[k] != v {
				t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
			}
		}
	})
}

func colons(hex string) string {
	var parts []string
	for i := 0; i < len(hex); i += 2 {
		parts = append(parts, hex[i:i+2])
	}
	return strings.Join(parts, ":")
}
