package bot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics, and accepts a request only when it is correctly signed with
// a non-empty secret and its timestamp is inside the window. With sign set, the fuzzer's
// signature is replaced by the right one, so the accepting path is explored as well.
func FuzzVerify(f *testing.F) {
	const now = 1700000000
	f.Add("secret", "1700000000", "v0=00", []byte("token=x&text=status"), true)
	f.Add("secret", "1700000000", "v0=", []byte(""), false)
	f.Add("", "1700000000", "", []byte("a=b"), true)
	f.Add("s", "+1700000000", "V0=ab", []byte("\x00\xff"), true)
	f.Add("s", "1699999000", "v0="+strings.Repeat("a", 64), []byte("ssl_check=1"), false)
	f.Add("s", "17000000000000000000", "v0=zz", []byte("x"), true)
	f.Add("s", "-1", "v0=", []byte{}, true)
	f.Fuzz(func(t *testing.T, secret, ts, sig string, body []byte, sign bool) {
		if sign {
			sig = Sign(secret, ts, body)
		}
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", sig)
		err := Verify(secret, h, body, time.Unix(now, 0))
		if err != nil {
			return
		}
		// Accepted: every rule must hold, checked here independently of Verify.
		if secret == "" {
			t.Fatal("accepted without a secret")
		}
		ts, sig = h.Get("X-Slack-Request-Timestamp"), h.Get("X-Slack-Signature")
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil {
			t.Fatalf("accepted the malformed timestamp %q", ts)
		}
		if d := sec - now; d > 300 || d < -300 {
			t.Fatalf("accepted the timestamp %q, %ds from now", ts, d)
		}
		got, herr := hex.DecodeString(strings.TrimPrefix(sig, "v0="))
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte("v0:" + ts + ":"))
		mac.Write(body)
		if !strings.HasPrefix(sig, "v0=") || herr != nil || !hmac.Equal(got, mac.Sum(nil)) {
			t.Fatalf("accepted a wrong signature %q", sig)
		}
	})
}
