package bot

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The vectors are shared/research/slack-signature-vectors.json: the Slack documentation's worked
// example and the official SDKs' test cases.
func TestVerifyVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/slack-signature-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		Source, Secret, Timestamp, Body, Signature string
		Valid                                      bool
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) != 8 {
		t.Fatalf("got %d vectors, want 8", len(vectors))
	}
	for i, v := range vectors {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			sec, _ := strconv.ParseInt(v.Timestamp, 10, 64)
			h := http.Header{}
			h.Set("X-Slack-Signature", v.Signature)
			h.Set("X-Slack-Request-Timestamp", v.Timestamp)
			err := Verify(v.Secret, h, []byte(v.Body), time.Unix(sec, 0))
			if (err == nil) != v.Valid {
				t.Errorf("Verify: got %v, want valid=%v (%s)", err, v.Valid, v.Source)
			}
			if !v.Valid && err != nil && !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("Verify: got %v, want ErrInvalidSignature", err)
			}
		})
	}
}

func TestVerifyDocExample(t *testing.T) {
	const (
		secret = "8f742231b10e8888abcd99yyyzzz85a5"
		ts     = "1531420618"
		body   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		sig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	)
	if got := Sign(secret, ts, []byte(body)); got != sig {
		t.Errorf("Sign: got %s, want %s", got, sig)
	}
	at := time.Unix(1531420618, 0)
	header := func(sig, ts string) http.Header {
		h := http.Header{}
		if sig != "" {
			h.Set("X-Slack-Signature", sig)
		}
		if ts != "" {
			h.Set("X-Slack-Request-Timestamp", ts)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		secret string
		h      http.Header
		now    time.Time
		want   error
	}{
		{"valid", secret, header(sig, ts), at, nil},
		{"valid 5 minutes later", secret, header(sig, ts), at.Add(5 * time.Minute), nil},
		{"valid 5 minutes before", secret, header(sig, ts), at.Add(-5 * time.Minute), nil},
		{"6 minutes old", secret, header(sig, ts), at.Add(6 * time.Minute), ErrStaleTimestamp},
		{"6 minutes ahead", secret, header(sig, ts), at.Add(-6 * time.Minute), ErrStaleTimestamp},
		{"today", secret, header(sig, ts), time.Now(), ErrStaleTimestamp},
		{"no signature", secret, header("", ts), at, ErrMissingHeaders},
		{"no timestamp", secret, header(sig, ""), at, ErrMissingHeaders},
		{"timestamp not a number", secret, header(sig, "15314206l8"), at, ErrBadTimestamp},
		{"v1 prefix", secret, header("v1="+sig[3:], ts), at, ErrInvalidSignature},
		{"upper-case hex is the same bytes", secret, header("v0=A2114D57B48EAC39B9AD189DD8316235A7B4A8D21A10BD27519666489C69B503", ts), at, nil},
		{"truncated", secret, header(sig[:40], ts), at, ErrInvalidSignature},
		{"wrong secret", "8f742231b10e8888abcd99yyyzzz85a6", header(sig, ts), at, ErrInvalidSignature},
		{"no secret", "", header(sig, ts), at, ErrNoSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.h, []byte(body), tc.now)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("Verify: got %v, want %v", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), sig[3:])) {
				t.Errorf("the error shows the secret or signature: %v", err)
			}
		})
	}
}

func TestIsSSLCheck(t *testing.T) {
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, contentType, body string
		want                    bool
	}{
		{"ssl_check=1", form, "ssl_check=1&token=abc", true},
		{"with charset", form + "; charset=utf-8", "token=abc&ssl_check=1", true},
		{"ssl_check=0", form, "ssl_check=0&token=abc", false},
		{"ssl_check=true", form, "ssl_check=true", false},
		{"empty", form, "ssl_check=", false},
		{"json", "application/json", `{"ssl_check":"1"}`, false},
		{"json body with form type", form, `{"ssl_check":"1"}`, false},
		{"no content type", "", "ssl_check=1", false},
		{"malformed form", form, "ssl_check=1&%zz", false},
		{"slash command", form, "command=%2Fmigration&text=status", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.contentType != "" {
				h.Set("Content-Type", tc.contentType)
			}
			if got := IsSSLCheck(h, []byte(tc.body)); got != tc.want {
				t.Errorf("IsSSLCheck: got %v, want %v", got, tc.want)
			}
		})
	}
}
