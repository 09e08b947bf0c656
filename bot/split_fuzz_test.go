package bot

import (
	"regexp"
	"testing"
)

var checkLineRE = regexp.MustCompile(`^(\s*)(PASS|WARN|FAIL|SKIP) ([a-z][a-z0-9_-]*)(:? ?)(.*)$`)

func FuzzSplitCheckLine(f *testing.F) {
	for _, s := range []string{"PASS dns: ok", "  FAIL relay:x", "SKIP a", "WARN tls ", "PASS Dns: x", "PASSdns", "\tFAIL x-y_1: <a>", "FAIL a:: b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, l string) {
		m := checkLineRE.FindStringSubmatch(l)
		indent, word, id, sep, detail, ok := splitCheckLine(l)
		if (m != nil) != ok {
			t.Fatalf("%q: regexp %v, split %v", l, m != nil, ok)
		}
		if ok && (m[1] != indent || m[2] != word || m[3] != id || m[4] != sep || m[5] != detail) {
			t.Fatalf("%q: regexp %q, split %q", l, m[1:], []string{indent, word, id, sep, detail})
		}
	})
}
