package checks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// proxyStats is the admin API's GET /stats answer.
type proxyStats struct {
	CacheHits         int64   `json:"cache_hits"`
	CacheMisses       int64   `json:"cache_misses"`
	HitRatePct        float64 `json:"hit_rate_pct"`
	CacheEntries      int64   `json:"cache_entries"`
	ActiveConnections int64   `json:"active_connections"`
}

// errTokenRejected is a 401 from the admin API.
var errTokenRejected = errors.New("admin token rejected")

// adminClient talks to the proxy's admin API.
type adminClient struct {
	base      string
	token     string
	http      *http.Client
	connected atomic.Bool // a TCP connection was made at least once
}

func (r *Runner) newAdminClient(cfg Config) (*adminClient, error) {
	c := &adminClient{base: strings.TrimRight(cfg.ProxyAdminURL, "/")}
	if cfg.ProxyTokenFile != "" {
		b, err := os.ReadFile(cfg.ProxyTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read proxy token file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	tlsConfig := &tls.Config{RootCAs: r.RootCAs}
	switch {
	case cfg.ProxyCertSHA256 != "":
		pin, err := parsePin(cfg.ProxyCertSHA256)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain and name verification.
		tlsConfig.InsecureSkipVerify = true
		tlsConfig.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("no certificate presented")
			}
			sum := sha256.Sum256(rawCerts[0])
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return fmt.Errorf("certificate sha256 %x does not match proxy_cert_sha256", sum)
			}
			return nil
		}
	case cfg.ProxyInsecure:
		tlsConfig.InsecureSkipVerify = true
	}
	var d net.Dialer
	c.http = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := d.DialContext(ctx, network, addr)
				if err == nil {
					c.connected.Store(true)
				}
				return conn, err
			},
			TLSClientConfig:   tlsConfig,
			DisableKeepAlives: true,
			Proxy:             nil, // the admin API is local; never through HTTPS_PROXY
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// parsePin reads a hex SHA-256, with or without colons.
func parsePin(s string) ([]byte, error) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	pin, err := hex.DecodeString(s)
	if err != nil || len(pin) != sha256.Size {
		return nil, errors.New("proxy_cert_sha256: want 64 hex digits")
	}
	return pin, nil
}

// get fetches path and returns the status and at most 64 KiB of body.
func (c *adminClient) get(ctx context.Context, path string, auth bool) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("get %s: %w", path, err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL: admin_url is in Observed
		}
		return 0, nil, fmt.Errorf("get %s: %s", path, short(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("get %s: read body: %s", path, short(err))
	}
	return resp.StatusCode, body, nil
}

// health is GET /healthz: nil when it answers 200 "ok".
func (c *adminClient) health(ctx context.Context) error {
	code, body, err := c.get(ctx, "/healthz", false)
	if err != nil {
		return err
	}
	if code != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("healthz answered %d %q", code, clip(strings.TrimSpace(string(body)), 80))
	}
	return nil
}

// stats is GET /stats with the bearer token.
func (c *adminClient) stats(ctx context.Context) (proxyStats, error) {
	var st proxyStats
	code, body, err := c.get(ctx, "/stats", true)
	if err != nil {
		return st, err
	}
	switch code {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return st, errTokenRejected
	case http.StatusTooManyRequests:
		return st, errors.New("stats answered 429: this address is locked out after failed logins")
	default:
		return st, fmt.Errorf("stats answered %d %q", code, clip(strings.TrimSpace(string(body)), 80))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("stats: decode: %w", err)
	}
	return st, nil
}

// checkProxy is P1/S1 with R6: the proxy's admin API answers while
// proxied, and is gone once clients reach the new server directly.
func (r *Runner) checkProxy(ctx context.Context, t Target, cfg Config) Result {
	if cfg.ProxyAdminURL == "" {
		return skip("proxy_admin_url not set")
	}
	c, err := r.newAdminClient(cfg)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	res := r.proxyResult(ctx, t, c)
	return redact(res, c.token)
}

func (r *Runner) proxyResult(ctx context.Context, t Target, c *adminClient) Result {
	obs := map[string]string{"admin_url": c.base}
	herr := c.health(ctx)
	up := herr == nil
	obs["healthz"] = "ok"
	if !up {
		obs["healthz"] = herr.Error()
	}
	var st proxyStats
	var serr error
	haveStats := false
	if up && c.token != "" {
		st, serr = c.stats(ctx)
		if serr == nil {
			haveStats = true
			obs["active_connections"] = strconv.FormatInt(st.ActiveConnections, 10)
			obs["cache_hits"] = strconv.FormatInt(st.CacheHits, 10)
			obs["cache_misses"] = strconv.FormatInt(st.CacheMisses, 10)
			obs["cache_entries"] = strconv.FormatInt(st.CacheEntries, 10)
			obs["hit_rate_pct"] = strconv.FormatFloat(st.HitRatePct, 'f', 1, 64)
		} else {
			obs["stats"] = serr.Error()
		}
	}
	if errors.Is(serr, errTokenRejected) {
		return Result{Status: Fail, Observed: obs, Detail: "admin token rejected (401 from /stats)"}
	}

	if afterCutover(t) {
		switch {
		case !up && !c.connected.Load():
			return Result{Status: Pass, Observed: obs, Detail: "proxy stopped (" + herr.Error() + ")"}
		case !up:
			return Result{Status: Warn, Observed: obs,
				Detail: "proxy admin port still accepts connections but " + herr.Error() + "; make sure the proxy is stopped"}
		case haveStats:
			return Result{Status: Warn, Observed: obs,
				Detail: fmt.Sprintf("proxy still running (%d active connections); stop it once clients reach the new server directly", st.ActiveConnections)}
		}
		return Result{Status: Warn, Observed: obs,
			Detail: "proxy still running; stop it once clients reach the new server directly"}
	}

	switch {
	case !up:
		return Result{Status: Fail, Observed: obs, Detail: "proxy down: " + herr.Error()}
	case serr != nil:
		return Result{Status: Fail, Observed: obs, Detail: "proxy up but " + serr.Error()}
	case !haveStats:
		return Result{Status: Pass, Observed: obs, Detail: "proxy up (healthz ok; proxy_token_file not set, no stats)"}
	}
	return Result{Status: Pass, Observed: obs,
		Detail: fmt.Sprintf("proxy up: %d active connections, cache hit rate %.1f%%", st.ActiveConnections, st.HitRatePct)}
}

// redact removes the token from everything a result shows.
func redact(res Result, token string) Result {
	if token == "" {
		return res
	}
	res.Detail = strings.ReplaceAll(res.Detail, token, "[redacted]")
	for k, v := range res.Observed {
		res.Observed[k] = strings.ReplaceAll(v, token, "[redacted]")
	}
	return res
}
