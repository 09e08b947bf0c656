package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/migrationbot/migrationbot/internal/testredis"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestRunShell runs the program as `make run` does, with the embedded Redis.
func TestRunShell(t *testing.T) {
	in := strings.NewReader("init\nstatus\ncutover\nstatus\nrollback testing the path\nhistory\n")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"shell", "--config", "../../examples/migrationbot.toml"}, env(nil), in, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	got := out.String()
	phases := regexp.MustCompile(`(?m)^example: phase (\w+)`).FindAllStringSubmatch(got, -1)
	if len(phases) != 2 || phases[0][1] != "proxied" || phases[1][1] != "cutover" {
		t.Fatalf("status lines: got %q\n%s", phases, got)
	}
	for _, want := range []string{
		"example initialised by @U0ADMIN: phase proxied",
		"example moved to cutover by @U0ADMIN",
		"PASS mapping: no account left on old",
		"example rolled back to proxied by @U0ADMIN: testing the path",
		"rollback by @U0ADMIN: cutover -> proxied (testing the path)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "migration> ") {
		t.Error("prompt shown although stdin is not a terminal")
	}
	if !strings.Contains(errOut.String(), "REDIS_URL is not set: using an embedded in-memory Redis") {
		t.Errorf("no warning about the embedded Redis on stderr: %q", errOut.String())
	}
}

// TestRunShellRealRedis: the same through REDIS_URL, as another user, against redis-server.
func TestRunShellRealRedis(t *testing.T) {
	_, prefix := testredis.Real(t)
	dir := t.TempDir()
	cfg := exampleConfig(t, dir, "key_prefix = \""+prefix+"\"\n")
	var out, errOut bytes.Buffer
	for _, session := range []struct{ user, input string }{
		{"U0OPS1", "/migration status\ncutover\ninit\n"},
		{"U0ADMIN", "init\n"},
		{"U0OPS1", "/migration cutover example\n"},
	} {
		in := strings.NewReader(session.input)
		err := run(context.Background(), []string{"shell", "--config", cfg, "--as", session.user}, env(map[string]string{"REDIS_URL": testredis.URL()}), in, &out, &errOut)
		if err != nil {
			t.Fatalf("run: %v\n%s", err, errOut.String())
		}
	}
	got := out.String()
	for _, want := range []string{"example: no state in Redis", "example has no state in Redis", "init needs the admin role", "example moved to cutover by @U0OPS1"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(errOut.String(), "embedded") {
		t.Error("warned about the embedded Redis although REDIS_URL is set")
	}
}

// exampleConfig copies the example configuration into dir with extra top-level lines.
func exampleConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	src, err := os.ReadFile("../../examples/migrationbot.toml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../../examples/proxy")
	body := strings.ReplaceAll(string(src), `"proxy/`, `"`+abs+`/`)
	path := filepath.Join(dir, "migrationbot.toml")
	if err := os.WriteFile(path, []byte(extra+body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no command", nil, nil, "missing command"},
		{"unknown command", []string{"frob"}, nil, `unknown command "frob"`},
		{"no config", []string{"shell"}, nil, "no configuration: pass --config FILE or set MIGRATIONBOT_CONFIG"},
		{"bad flag", []string{"shell", "--nope"}, nil, "flag provided but not defined: -nope"},
		{"bad user", []string{"shell", "--config", "../../examples/migrationbot.toml", "--as", "bob"}, nil, `--as "bob" is not a Slack user ID`},
		{"missing file", []string{"shell"}, map[string]string{"MIGRATIONBOT_CONFIG": "/nonexistent.toml"}, "/nonexistent.toml: open"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), c.args, env(c.env), strings.NewReader(""), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, env(nil), nil, &out, &out); err != nil || !strings.Contains(out.String(), "usage: migrationbot") {
		t.Fatalf("help: %v %q", err, out.String())
	}
}

func TestLoadConfigReportsEverything(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	bad := `
colour = "blue"
[roles]
admins = ["bob", "U0ADMIN"]
operators = ["S0GROUP", "x"]

[[migration]]
channel = "C0ONE"
source_host = "old.example.org"

[[migration]]
name = "two"
channel = "general"
source_host = "old.example.org"
new_addresses = ["203.0.113.300"]
confidence_days = -3
report_schedule = "0 25 * * *"
[migration.checks]
ports = [25, 8080, "10993/imapz", 99999]
smtp_address = "nohostport"
proxy_admin_url = "http://127.0.0.1:9443"
timeout = "forever"
mapping_file = "missing.tsv"
typo_key = 1

[[migration]]
name = "two"
channel = "C0TWO"
source_host = "old.example.org"
report_schedule = "CRON_TZ=UTC"

[[migration]]
name = "7"
channel = "D0DIRECT"
source_host = "old.example.org"
decommission_phrase = "bye & <go>"
`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	if err == nil {
		t.Fatal("bad config loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		"colour: unknown key",
		"migration[1] (two).checks.typo_key: unknown key",
		`roles.admins: "bob" is not a Slack user ID`,
		`roles.operators: "x" is not a Slack user ID`,
		"migration[0].name: missing",
		`migration[1] (two).channel: "general" is not a Slack channel ID`,
		`migration[1] (two).new_addresses: "203.0.113.300" is not an IP address`,
		"migration[1] (two).confidence_days: must be 0 or more, got -3",
		`migration[1] (two).report_schedule: "0 25 * * *"`,
		"migration[1] (two).checks.ports[1]: port 8080: not a well-known mail port",
		`migration[1] (two).checks.ports[2]: port "10993/imapz": unknown protocol "imapz"`,
		"migration[1] (two).checks.ports[3]: port 99999: not a port number (1 to 65535)",
		`migration[1] (two).checks.smtp_address: "nohostport" must be host:port`,
		"migration[1] (two).checks.proxy_admin_url",
		`migration[1] (two).checks.timeout: "forever"`,
		"migration[1] (two).checks.mapping_file: no such file or directory",
		`migration[2] (two).name: duplicate migration "two"`,
		`migration[2] (two).report_schedule: "CRON_TZ=UTC": invalid schedule`,
		`migration[3] (7).name: "7" must start with a lowercase letter`,
		`migration[3] (7).channel: "D0DIRECT" is not a Slack channel ID`,
		"migration[3] (7).decommission_phrase: must not contain",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(msg)
	}
	// And the process exits non-zero through run.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"shell", "--config", path}, env(nil), strings.NewReader(""), &out, &out); err == nil {
		t.Fatal("run accepted a bad config")
	} else if ue := (usageError{}); errors.As(err, &ue) {
		t.Fatalf("a config problem is not a usage error: %v", err)
	}
}

// TestLoadConfigWrongTypes: values of the wrong TOML type are reported with their keys, along
// with every other problem, not as the decoder's first error alone.
func TestLoadConfigWrongTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "types.toml")
	bad := `
[roles]
admins = "U0ADMIN"
operators = ["U0OPS", 7]

[[migration]]
name = "alpha"
channel = "C0ALPHA"
source_host = "old.example.org"
confidence_days = "14"
new_addresses = ["not-an-ip"]
[migration.checks]
ports = 993
proxy_insecure = "yes"
timeout = 5
`
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	if err == nil {
		t.Fatal("bad config loaded")
	}
	for _, want := range []string{
		`roles.admins: want a list of strings, like ["a", "b"], got a string`,
		`roles.operators: want a list of strings, like ["a", "b"], got a list`,
		"migration[0] (alpha).confidence_days: want a whole number without quotes, got a string",
		"migration[0] (alpha).checks.ports: want a list, like [25, 993], got a number",
		"migration[0] (alpha).checks.proxy_insecure: want true or false, got a string",
		"migration[0] (alpha).checks.timeout: want a string in quotes, got a number",
		`migration[0] (alpha).new_addresses: "not-an-ip" is not an IP address`, // checked as well
		"roles.admins: at least one admin is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../examples/migrationbot.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.migrations[0]
	if m.Name != "example" || m.ConfidenceDays != 14 || m.Phrase() != "decommission source.internal.example.org" || m.Checks.MappingFile == "" {
		t.Fatalf("got %+v", m)
	}
	if cfg.keyPrefix() != "migrationbot" {
		t.Errorf("prefix %q", cfg.keyPrefix())
	}
}

func TestRedisURL(t *testing.T) {
	for _, c := range []struct{ url, typ, err string }{
		{"redis://127.0.0.1:6379/0", "*redis.Client", ""},
		{"rediss://user:secret@127.0.0.1:6380/1", "*redis.Client", ""},
		{"redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", "*redis.ClusterClient", ""},
		{"redis://127.0.0.1:7000?cluster=true", "*redis.ClusterClient", ""},
		{"redis://127.0.0.1:26379?master_name=mymaster", "*redis.Client", ""},
		{"http://127.0.0.1:6379", "", "REDIS_URL"},
		{"redis://:secret@127.0.0.1:6379?bogus=1", "", "unexpected option"},
	} {
		rdb, err := redisFromURL(c.url)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: got %v, want an error with %q and no password", c.url, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if got := fmt.Sprintf("%T", rdb); got != c.typ {
			t.Errorf("%s: got %s, want %s", c.url, got, c.typ)
		}
		rdb.Close()
	}
}
