package bot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far a request's timestamp may be from now, either way.
const MaxClockSkew = 5 * time.Minute

// Verification errors; every one of them means 401 and nothing done.
var (
	ErrNoSecret         = errors.New("no signing secret configured")
	ErrMissingHeaders   = errors.New("missing X-Slack-Signature or X-Slack-Request-Timestamp")
	ErrBadTimestamp     = errors.New("malformed X-Slack-Request-Timestamp")
	ErrStaleTimestamp   = errors.New("timestamp outside the 5-minute window")
	ErrInvalidSignature = errors.New("invalid signature")
)

// Verify checks a request from Slack: X-Slack-Signature must be
// "v0=" + hex(HMAC-SHA256(secret, "v0:" + X-Slack-Request-Timestamp + ":" + body)), compared in
// constant time, and the timestamp must be within MaxClockSkew of now. body is the raw body,
// exactly as received. Errors never carry the secret or the expected signature.
func Verify(secret string, header http.Header, body []byte, now time.Time) error {
	if secret == "" {
		return ErrNoSecret
	}
	sig := header.Get("X-Slack-Signature")
	ts := header.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) > 12 {
		return ErrBadTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return ErrStaleTimestamp
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok {
		return ErrInvalidSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return ErrInvalidSignature
	}
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", ts)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrInvalidSignature
	}
	return nil
}

// Sign returns the X-Slack-Signature value for body at timestamp ts; tests and tools use it.
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// IsSSLCheck reports whether a request is Slack's unsigned ssl_check probe, sent when a Request
// URL is saved: a form body (application/x-www-form-urlencoded) whose ssl_check field is exactly
// "1". As in bolt-js, anything else (ssl_check=0, JSON, another content type) must be signed,
// and an ssl_check request is answered 200 with nothing else done, whatever else it carries.
func IsSSLCheck(header http.Header, body []byte) bool {
	mt, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return false
	}
	form, err := url.ParseQuery(string(body))
	return err == nil && form.Get("ssl_check") == "1"
}
