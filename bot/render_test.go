package bot

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/commands"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name.golden, or rewrites it under -updateGolden.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./bot -run %s -updateGolden to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendering (go test ./bot -updateGolden rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func renderGoldenJSON(t *testing.T, resp commands.Response) []byte {
	t.Helper()
	msg := Render(resp)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"text": msg.Text, "blocks": msg.Blocks}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRenderGolden(t *testing.T) {
	results := []checks.Result{
		{ID: "mapping", Status: checks.Pass, Detail: "no account left on the source destination \"source\""},
		{ID: "dns", Status: checks.Warn, Detail: "mail.example.org: 203.0.113.10 (new), TTL 3600"},
		{ID: "relay", Status: checks.Fail, Detail: "RCPT TO <nobody@example.org> accepted: 250 2.1.5 <ok> & queued"},
		{ID: "cleanup", Status: checks.Skip, Detail: "stalwart_cli not configured"},
	}
	var checkText strings.Builder
	checkText.WriteString("example: checks in phase cutover: 1 pass, 1 warn, 1 fail, 1 skipped")
	for _, r := range results {
		checkText.WriteString("\n" + r.Line())
	}
	for _, tc := range []struct {
		name string
		resp commands.Response
	}{
		{"status", commands.Response{Migration: "example", Channel: "C0MIGRATION", Text: "example: phase cutover, day 3 of 14\n" +
			"Since 2026-12-01 09:00 UTC by <@U0OPS1> (source-empty gate passed)\n" +
			"Earliest decommission: 2026-12-15 09:00 UTC (in 11d 2h)\n" +
			"Checklist:\n  DNS repointed to the new deployment\n    PASS dns: mail.example.org: 203.0.113.10 (new) (5m ago)\n" +
			"  Proxy stopped\n    SKIP proxy: not checked yet\n" +
			"Last events:\n  2026-12-01 09:00 UTC cutover by <!subteam^S0ONCALL>: proxied -> cutover (source-empty gate passed)"}},
		{"check", commands.Response{Migration: "example", Channel: "C0MIGRATION", Text: checkText.String(), Checks: results}},
		{"transition", commands.Response{Migration: "example", Channel: "C0MIGRATION", Announce: true, Checks: results[:1],
			Text: "example moved to cutover by <@U0OPS1>.\nConfidence period: 14 days; earliest decommission 2026-12-15 09:00 UTC.\n" +
				results[0].Line() + "\nNext steps:\n1. Repoint mail.example.org from the proxy (203.0.113.5) to the new deployment (203.0.113.10).\n" +
				"Roll back at any time before then: /migration rollback example <reason>."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := renderGoldenJSON(t, tc.resp)
			checkGolden(t, tc.name, got)
			msg := Render(tc.resp)
			want := strings.NewReplacer("<nobody@example.org>", "&lt;nobody@example.org&gt;", "<ok> &", "&lt;ok&gt; &amp;", "<reason>", "&lt;reason&gt;").Replace(tc.resp.Text)
			if msg.Text != want {
				t.Errorf("text fallback: got %q, want %q", msg.Text, want)
			}
			for _, w := range []string{"PASS", "WARN", "FAIL", "SKIP"} {
				if strings.Contains(tc.resp.Text, "\n"+w+" ") && !strings.Contains(msg.Text, "\n"+w+" ") {
					t.Errorf("text fallback lost the word %s", w)
				}
			}
		})
	}
}

func TestRenderCheckLines(t *testing.T) {
	for _, tc := range []struct{ in, plain, rich string }{
		{"PASS mapping: 0 accounts left", "PASS mapping: 0 accounts left", "✅ *mapping*: 0 accounts left"},
		{"WARN dns: ttl high", "WARN dns: ttl high", "⚠️ *dns*: ttl high"},
		{"FAIL relay: 250 <x@example.org> & more", "FAIL relay: 250 &lt;x@example.org&gt; &amp; more", "❌ *relay*: 250 &lt;x@example.org&gt; &amp; more"},
		{"SKIP cleanup", "SKIP cleanup", "⏭️ *cleanup*"},
		{"    SKIP dns: not checked yet", "    SKIP dns: not checked yet", "    ⏭️ *dns*: not checked yet"},
		{"example: phase cutover", "example: phase cutover", "example: phase cutover"},
		{"Since today by <@U1>", "Since today by <@U1>", "Since today by <@U1>"},
		{"PASSED the test", "PASSED the test", "PASSED the test"},
		{"Usage: /migration rollback [migration] <reason> by <@U1> in <#C1> for <!subteam^S1>, see <https://x.example/>",
			"Usage: /migration rollback [migration] &lt;reason&gt; by <@U1> in <#C1> for <!subteam^S1>, see &lt;https://x.example/&gt;",
			"Usage: /migration rollback [migration] &lt;reason&gt; by <@U1> in <#C1> for <!subteam^S1>, see &lt;https://x.example/&gt;"},
		// A reason typed into a form arrives raw: it must not ping the channel or hide a link.
		{"rolled back by <@U1>: <!channel> see <https://evil.example|the runbook>",
			"rolled back by <@U1>: &lt;!channel&gt; see &lt;https://evil.example|the runbook&gt;",
			"rolled back by <@U1>: &lt;!channel&gt; see &lt;https://evil.example|the runbook&gt;"},
	} {
		plain, rich := checkLine(tc.in)
		if plain != tc.plain || rich != tc.rich {
			t.Errorf("checkLine(%q): got %q, %q; want %q, %q", tc.in, plain, rich, tc.plain, tc.rich)
		}
	}
}

func TestRenderSplitsLongText(t *testing.T) {
	line := strings.Repeat("é", 999) // 999 runes, 1998 bytes
	var lines []string
	for range 10 {
		lines = append(lines, line)
	}
	long := strings.Repeat("x", 7000) // one line longer than two sections
	text := strings.Join(lines, "\n") + "\n" + long
	msg := Render(commands.Response{Text: text})
	if msg.Text != text {
		t.Errorf("text fallback changed")
	}
	blocks := msg.Blocks.([]slack.Block)
	var joined []string
	for i, b := range blocks {
		s := b.(*slack.SectionBlock)
		n := utf8.RuneCountInString(s.Text.Text)
		if n > 3000 || n == 0 {
			t.Errorf("block %d: %d characters, want 1..3000", i, n)
		}
		if err := s.Text.Validate(); err != nil {
			t.Errorf("block %d: %v", i, err)
		}
		joined = append(joined, s.Text.Text)
	}
	if got := strings.ReplaceAll(strings.Join(joined, ""), "\n", ""); got != strings.ReplaceAll(text, "\n", "") {
		t.Errorf("the sections do not add up to the text")
	}
	if len(blocks) != 7 { // 3+3+3+1 lines of 999 -> 4 sections, then 3000+3000+1000
		t.Errorf("got %d sections, want 7", len(blocks))
	}

	huge := strings.Repeat(strings.Repeat("y", 100)+"\n", 2000)
	msg = Render(commands.Response{Text: huge})
	if n := len(msg.Blocks.([]slack.Block)); n > 50 {
		t.Errorf("got %d blocks, want at most 50", n)
	}
	if n := utf8.RuneCountInString(msg.Text); n > 40000 {
		t.Errorf("text of %d characters, want at most 40000", n)
	}
	if msg := Render(commands.Response{}); msg.Text == "" || len(msg.Blocks.([]slack.Block)) != 1 {
		t.Errorf("empty response: got %+v, want a fallback text and one block", msg)
	}
}
