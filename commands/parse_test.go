package commands

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	names := []string{"example", "other"}
	cases := []struct {
		name, text string
		sub, mig   string
		args       []string
		err        string
	}{
		{name: "empty is help", text: "", sub: "help"},
		{name: "only the command", text: "/migration", sub: "help"},
		{name: "status", text: "status", sub: "status"},
		{name: "leading command", text: "/migration status example", sub: "status", mig: "example"},
		{name: "case of subcommand", text: "STATUS", sub: "status"},
		{name: "extra spaces", text: "  rollback   example   dns  is   broken ", sub: "rollback", mig: "example", args: []string{"dns", "is", "broken"}},
		{name: "tabs", text: "history\tother\t5", sub: "history", mig: "other", args: []string{"5"}},
		{name: "no migration", text: "rollback dns broke", sub: "rollback", args: []string{"dns", "broke"}},
		{name: "migration names in any case", text: "status Example", sub: "status", mig: "example"},
		{name: "force", text: "cutover example force gate is wrong", sub: "cutover", mig: "example", args: []string{"force", "gate", "is", "wrong"}},
		{name: "confirm", text: "decommission confirm decommission source.example.org", sub: "decommission", args: []string{"confirm", "decommission", "source.example.org"}},
		{name: "help takes a subcommand", text: "help example", sub: "help", args: []string{"example"}},
		{name: "unknown subcommand", text: "cutovr", err: `unknown subcommand "cutovr"`},
		{name: "unknown after command", text: "/migration frobnicate x", err: `unknown subcommand "frobnicate"`},
		{name: "too long", text: "status " + strings.Repeat("x", MaxTextLen), err: "command too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse(c.text, names)
			if c.err != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want a usage error containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Sub.Name != c.sub || p.Migration != c.mig || !slices.Equal(p.Args, c.args) && (len(p.Args) > 0 || len(c.args) > 0) {
				t.Fatalf("got %s %q %q, want %s %q %q", p.Sub.Name, p.Migration, p.Args, c.sub, c.mig, c.args)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "status", "/migration rollback example dns", "decommission example confirm x y", "history 5", "\x00", "cutover force \u00e9", "init example cutover 2026-12-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse(text, []string{"example"})
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) || ue.Msg == "" || strings.Contains(ue.Msg, "\n") {
				t.Fatalf("error %v is not a one-line usage error", err)
			}
			if utf8.ValidString(text) && !utf8.ValidString(ue.Msg) {
				t.Fatalf("message %q is not valid UTF-8", ue.Msg)
			}
			return
		}
		if p.Sub == nil {
			t.Fatal("no subcommand and no error")
		}
		for _, a := range p.Args {
			if a == "" || strings.ContainsAny(a, " \t\n") {
				t.Fatalf("argument %q is not one word", a)
			}
		}
	})
}
