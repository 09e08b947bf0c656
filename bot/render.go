package bot

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// Slack's limits that rendering respects (shared/research/slack-go-facts.md 1.8 and 1.12).
const (
	maxSectionText = 3000  // characters in a section's text
	maxBlocks      = 50    // blocks in a message
	maxText        = 40000 // characters in a message's text
)

// statusEmoji shows a check's status in Block Kit; the text fallback keeps the word.
var statusEmoji = map[string]string{
	"PASS": "✅",
	"WARN": "⚠️",
	"FAIL": "❌",
	"SKIP": "⏭️",
}

// checkLineRE matches a check result line in a response's text: "  FAIL dns: detail".

// Render turns a command's answer into a Slack message: the plain-text fallback Text (always
// set; check results keep their PASS/WARN/FAIL/SKIP words) and Blocks, mrkdwn sections of at
// most 3000 characters in which every check result line starts with an emoji instead. In both,
// the detail of a check result is escaped (&, <, >): it comes from remote servers and must not
// turn into a mention or a link; the rest of the text keeps its Slack mentions. This is the only
// place a commands.Response becomes Block Kit.
func Render(resp commands.Response) Message {
	text := clipRunes(resp.Text, maxText)
	if strings.TrimSpace(text) == "" {
		text = "(no answer)"
	}
	lines := strings.Split(text, "\n")
	rich := make([]string, len(lines))
	for i, l := range lines {
		lines[i], rich[i] = checkLine(l)
	}
	text = strings.Join(lines, "\n")
	actions := actionsBlock(resp)
	limit := maxBlocks
	if actions != nil {
		limit-- // room for the buttons
	}
	var blocks []slack.Block
	for _, chunk := range splitText(strings.Join(rich, "\n"), maxSectionText) {
		if len(blocks) == limit {
			break
		}
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, chunk, false, false), nil, nil))
	}
	if actions != nil {
		blocks = append(blocks, actions)
	}
	return Message{Text: text, Blocks: blocks}
}

// actionsBlock renders a response's follow-up actions as buttons (nil when there are none). Each
// button's value is the migration's name. The destructive ones (roll back, decommission) open a
// modal, and ask for confirmation before they do.
func actionsBlock(resp commands.Response) *slack.ActionBlock {
	if resp.Migration == "" || len(resp.Actions) == 0 {
		return nil
	}
	name := resp.Migration
	var buttons []slack.BlockElement
	for _, a := range resp.Actions {
		switch a {
		case commands.ActionCheck:
			buttons = append(buttons, slack.NewButtonBlockElement(ActionIDCheck, name, plain("Run checks")))
		case commands.ActionRollback:
			buttons = append(buttons, slack.NewButtonBlockElement(ActionIDRollback, name, plain("Roll back…")).
				WithStyle(slack.StyleDanger).
				WithConfirm(confirmDialog("Roll back "+name+"?",
					"A form asks for the reason and shows what rolling back means. Submitting it moves "+name+" back to proxied at once.",
					"Continue")))
		case commands.ActionDecommission:
			buttons = append(buttons, slack.NewButtonBlockElement(ActionIDDecommission, name, plain("Decommission…")).
				WithStyle(slack.StyleDanger).
				WithConfirm(confirmDialog("Decommission "+name+"?",
					"This issues the confirmation phrase (valid 10 minutes, for you only) and asks you to type it. Decommissioning is final: the source stops being the fallback and rollback becomes impossible.",
					"Continue")))
		}
	}
	if len(buttons) == 0 {
		return nil
	}
	return slack.NewActionBlock(ActionsBlockID, buttons...)
}

// confirmDialog is a Block Kit confirm object within Slack's limits (title 100, text 300,
// buttons 30 characters).
func confirmDialog(title, text, confirm string) *slack.ConfirmationBlockObject {
	return slack.NewConfirmationBlockObject(plain(clipRunes(title, 100)), plain(clipRunes(text, 300)),
		plain(clipRunes(confirm, 30)), plain("Cancel")).WithStyle(slack.StyleDanger)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// checkLine renders one check result line for the text fallback ("FAIL relay: detail") and for
// Block Kit (an emoji and the check id in bold); other lines are left as they are (they may
// carry Slack mentions on purpose).
func checkLine(l string) (plain, rich string) {
	indent, word, id, sep, detail, ok := splitCheckLine(l)
	if !ok {
		l = escapePlaceholders(l)
		return l, l
	}
	tail := ""
	if sep != "" || detail != "" {
		tail = strings.TrimRight(strings.TrimRight(sep, " ")+" "+escapeMrkdwn(detail), " ")
	}
	return indent + word + " " + id + tail, indent + statusEmoji[word] + " *" + id + "*" + tail
}

// splitCheckLine splits "<indent>WORD id: detail" (WORD one of PASS, WARN, FAIL, SKIP; id
// lowercase letters, digits, '-' and '_', starting with a letter; the colon and the space after
// the id optional) without a regexp: it runs on every line of every answer.
func splitCheckLine(l string) (indent, word, id, sep, detail string, ok bool) {
	rest := strings.TrimLeft(l, " \t\r\n\f")
	indent = l[:len(l)-len(rest)]
	if len(rest) < 6 || strings.IndexByte(rest, '\n') >= 0 || rest[4] != ' ' || statusEmoji[rest[:4]] == "" || rest[5] < 'a' || rest[5] > 'z' {
		return "", "", "", "", "", false
	}
	word, rest = rest[:4], rest[5:]
	n := 0
	for n < len(rest) && (rest[n] >= 'a' && rest[n] <= 'z' || rest[n] >= '0' && rest[n] <= '9' || rest[n] == '-' || rest[n] == '_') {
		n++
	}
	id, rest = rest[:n], rest[n:]
	s := 0
	if s < len(rest) && rest[s] == ':' {
		s++
	}
	if s < len(rest) && rest[s] == ' ' {
		s++
	}
	return indent, word, id, rest[:s], rest[s:], true
}

// angleRE matches a <...> token of a line.
var angleRE = regexp.MustCompile(`<[^<>]*>`)

// escapePlaceholders escapes <...> tokens that are not the Slack markup the bot writes (mentions
// <@U..>, user groups <!subteam^S..>, channels <#C..>), such as the "<reason>" of a usage line,
// which Slack would otherwise swallow, or a "<!channel>" typed into a form.
func escapePlaceholders(l string) string {
	if !strings.Contains(l, "<") {
		return l
	}
	return angleRE.ReplaceAllStringFunc(l, func(tok string) string {
		inner := tok[1 : len(tok)-1]
		// Only the markup the bot itself writes: user and channel mentions and user groups.
		// Not <!channel>, <!here> or links: a reason typed into a form arrives unescaped.
		for _, p := range []string{"@", "#", "!subteam^"} {
			if strings.HasPrefix(inner, p) {
				return tok
			}
		}
		return "&lt;" + inner + "&gt;"
	})
}

// escapeMrkdwn escapes the three characters Slack's mrkdwn reserves; check details come from
// remote servers (greetings, certificates) and must not turn into mentions or links.
func escapeMrkdwn(s string) string {
	return mrkdwnEscaper.Replace(s)
}

var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// splitText cuts s into pieces of at most n runes, at line breaks where it can.
func splitText(s string, n int) []string {
	var out []string
	var cur strings.Builder
	curLen := 0
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
			curLen = 0
		}
	}
	for _, line := range strings.Split(s, "\n") {
		ll := utf8.RuneCountInString(line)
		need := ll
		if curLen > 0 {
			need++ // the newline
		}
		if curLen+need <= n {
			if curLen > 0 {
				cur.WriteByte('\n')
			}
			cur.WriteString(line)
			curLen += need
			continue
		}
		flush()
		for ll > n { // one line longer than a section: cut it at rune boundaries
			head := clipRunes(line, n)
			out = append(out, head)
			line = line[len(head):]
			ll -= n
		}
		cur.WriteString(line)
		curLen = ll
	}
	flush()
	kept := out[:0]
	for _, p := range out {
		if strings.TrimSpace(p) != "" { // a section's text must not be blank
			kept = append(kept, p)
		}
	}
	return kept
}

// clipRunes returns the first n runes of s.
func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
