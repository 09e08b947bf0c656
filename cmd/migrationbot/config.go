package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"

	"github.com/migrationbot/migrationbot/checks"
	"github.com/migrationbot/migrationbot/commands"
	"github.com/migrationbot/migrationbot/state"
)

// Config is the TOML configuration file.
type Config struct {
	KeyPrefix  string            `toml:"key_prefix"`
	Roles      rolesConfig       `toml:"roles"`
	Migrations []migrationConfig `toml:"migration"`

	// Filled in by loadConfig.
	migrations []*commands.Migration
}

type rolesConfig struct {
	Admins    []string `toml:"admins"`
	Operators []string `toml:"operators"`
}

type migrationConfig struct {
	Name               string       `toml:"name"`
	Channel            string       `toml:"channel"`
	PublicHostname     string       `toml:"public_hostname"`
	SourceHost         string       `toml:"source_host"`
	NewAddresses       []string     `toml:"new_addresses"`
	ProxyAddresses     []string     `toml:"proxy_addresses"`
	Domains            []string     `toml:"domains"`
	ConfidenceDays     *int         `toml:"confidence_days"`
	ReportSchedule     string       `toml:"report_schedule"`
	DecommissionPhrase string       `toml:"decommission_phrase"`
	Checks             checksConfig `toml:"checks"`
}

type checksConfig struct {
	ProxyAdminURL    string `toml:"proxy_admin_url"`
	ProxyTokenFile   string `toml:"proxy_token_file"`
	ProxyInsecure    bool   `toml:"proxy_insecure"`
	ProxyCertSHA256  string `toml:"proxy_cert_sha256"`
	ProxyConfig      string `toml:"proxy_config"`
	MappingFile      string `toml:"mapping_file"`
	MappingRedisURL  string `toml:"mapping_redis_url"`
	MappingKeyPrefix string `toml:"mapping_key_prefix"`
	DNSServer        string `toml:"dns_server"`
	Ports            []any  `toml:"ports"`
	SMTPAddress      string `toml:"smtp_address"`
	StalwartCLI      string `toml:"stalwart_cli"`
	RelayRoute       string `toml:"relay_route"`
	SourceAddress    string `toml:"source_address"`
	Timeout          string `toml:"timeout"`
}

// Defaults.
const (
	defaultConfidenceDays = 14
	defaultReportSchedule = "0 9 * * *"
)

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)
	userRE    = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
	groupRE   = regexp.MustCompile(`^S[A-Z0-9]{2,}$`)
	channelRE = regexp.MustCompile(`^[CG][A-Z0-9]{2,}$`)
	hostRE    = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$`)
	hexRE     = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// reservedNames cannot be migration names: they would read as words of a command.
var reservedNames = []string{"force", "confirm", "proxied", "cutover", "decommissioned", "help", "status", "check", "history", "rollback", "decommission", "extend", "init"}

// loadConfig reads and validates the file at path, reporting every problem at once.
func loadConfig(path string) (*Config, error) {
	// Two passes, so that a value of the wrong type does not hide every other problem: the file
	// is read as plain TOML, unknown keys and wrong types are noted and dropped, and what is left
	// is decoded into Config and checked.
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var problems []string
	add := func(key, format string, a ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	shapeProblems(reflect.TypeFor[Config](), raw, "", add)
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cfg Config
	if _, err := toml.Decode(buf.String(), &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.KeyPrefix != "" && strings.ContainsAny(cfg.KeyPrefix, "{} \t") {
		add("key_prefix", "must not contain braces or spaces, got %q", cfg.KeyPrefix)
	}
	if len(cfg.Roles.Admins) == 0 {
		add("roles.admins", "at least one admin is required (Slack user ID U... or user group ID S...)")
	}
	for key, ids := range map[string][]string{"roles.admins": cfg.Roles.Admins, "roles.operators": cfg.Roles.Operators} {
		for _, id := range ids {
			if !userRE.MatchString(id) && !groupRE.MatchString(id) {
				add(key, "%q is not a Slack user ID (U...) or user group ID (S...)", id)
			}
		}
	}
	if len(cfg.Migrations) == 0 {
		add("migration", "at least one [[migration]] is required")
	}
	dir := filepath.Dir(path)
	seen := map[string]bool{}
	for i, mc := range cfg.Migrations {
		key := fmt.Sprintf("migration[%d]", i)
		if mc.Name != "" {
			key = fmt.Sprintf("migration[%d] (%s)", i, mc.Name)
		}
		m := checkMigration(mc, dir, func(field, format string, a ...any) { add(key+"."+field, format, a...) })
		if mc.Name != "" && seen[mc.Name] {
			add(key+".name", "duplicate migration %q", mc.Name)
		}
		seen[mc.Name] = true
		cfg.migrations = append(cfg.migrations, m)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %d problem(s):\n  %s", path, len(problems), strings.Join(problems, "\n  "))
	}
	return &cfg, nil
}

func checkMigration(mc migrationConfig, dir string, add func(field, format string, a ...any)) *commands.Migration {
	m := &commands.Migration{
		Name: mc.Name, Channel: mc.Channel, PublicHostname: mc.PublicHostname, SourceHost: mc.SourceHost,
		NewAddresses: mc.NewAddresses, ProxyAddresses: mc.ProxyAddresses, Domains: mc.Domains,
		ConfidenceDays: defaultConfidenceDays, ReportSchedule: mc.ReportSchedule,
		DecommissionPhrase: strings.Join(strings.Fields(mc.DecommissionPhrase), " "),
	}
	switch {
	case mc.Name == "":
		add("name", "missing")
	case !nameRE.MatchString(mc.Name):
		add("name", "%q must start with a lowercase letter, then lowercase letters, digits, '.', '_' or '-' (at most 63)", mc.Name)
	}
	for _, r := range reservedNames {
		if mc.Name == r {
			add("name", "%q is a command word; choose another name", mc.Name)
		}
	}
	if mc.Channel == "" {
		add("channel", "missing (the Slack channel ID, C...)")
	} else if !channelRE.MatchString(mc.Channel) {
		add("channel", "%q is not a Slack channel ID (C... or G...)", mc.Channel)
	}
	if mc.SourceHost == "" {
		add("source_host", "missing")
	} else if !hostRE.MatchString(mc.SourceHost) {
		add("source_host", "%q is not a host name", mc.SourceHost)
	}
	if mc.PublicHostname != "" && !hostRE.MatchString(mc.PublicHostname) {
		add("public_hostname", "%q is not a host name", mc.PublicHostname)
	}
	for field, list := range map[string][]string{"new_addresses": mc.NewAddresses, "proxy_addresses": mc.ProxyAddresses} {
		for _, a := range list {
			if _, err := netip.ParseAddr(a); err != nil {
				add(field, "%q is not an IP address", a)
			}
		}
	}
	for _, d := range mc.Domains {
		if !hostRE.MatchString(d) {
			add("domains", "%q is not a domain name", d)
		}
	}
	if mc.ConfidenceDays != nil {
		if *mc.ConfidenceDays < 0 {
			add("confidence_days", "must be 0 or more, got %d", *mc.ConfidenceDays)
		}
		m.ConfidenceDays = *mc.ConfidenceDays
	}
	if m.ReportSchedule == "" {
		m.ReportSchedule = defaultReportSchedule
	}
	if _, err := parseSchedule(m.ReportSchedule); err != nil {
		add("report_schedule", "%q: %v", m.ReportSchedule, err)
	}
	if mc.DecommissionPhrase != "" && m.DecommissionPhrase == "" {
		add("decommission_phrase", "must not be blank")
	}
	if strings.ContainsAny(m.DecommissionPhrase, "<>&*_~`") {
		add("decommission_phrase", "must not contain < > & * _ ~ or ` (Slack rewrites them, so it could never be typed back)")
	}
	m.Checks = checkChecks(mc.Checks, dir, func(field, format string, a ...any) { add("checks."+field, format, a...) })
	return m
}

// shapeProblems reports (and deletes from raw) the keys of raw that t has no field for and the
// values whose TOML type does not fit the field's Go type, with their keys.
func shapeProblems(t reflect.Type, raw map[string]any, path string, add func(key, format string, a ...any)) {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			fields[tag] = t.Field(i).Type
		}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := k
		if path != "" {
			key = path + "." + k
		}
		ft, ok := fields[k]
		if !ok {
			add(key, "unknown key")
			delete(raw, k)
			continue
		}
		if want := shapeOf(ft, raw[k], key, add); want != "" {
			add(key, "want %s, got %s", want, tomlType(raw[k]))
			delete(raw, k)
		}
	}
}

// shapeOf checks v against Go type t; it returns what was wanted when v does not fit.
func shapeOf(t reflect.Type, v any, key string, add func(key, format string, a ...any)) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			return "a string in quotes"
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			return "a whole number without quotes"
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return "true or false"
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return "a table"
		}
		shapeProblems(t, m, key, add)
	case reflect.Slice:
		switch t.Elem().Kind() {
		case reflect.Struct:
			tables, ok := v.([]map[string]any)
			if !ok {
				return "an array of tables ([[" + key + "]])"
			}
			for i, m := range tables {
				sub := fmt.Sprintf("%s[%d]", key, i)
				if name, ok := m["name"].(string); ok && name != "" {
					sub += " (" + name + ")"
				}
				shapeProblems(t.Elem(), m, sub, add)
			}
		case reflect.String:
			list, ok := v.([]any)
			if !ok {
				return `a list of strings, like ["a", "b"]`
			}
			for _, x := range list {
				if _, ok := x.(string); !ok {
					return `a list of strings, like ["a", "b"]`
				}
			}
		default:
			if _, ok := v.([]any); !ok {
				return "a list, like [25, 993]"
			}
		}
	}
	return ""
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a number"
	case float64:
		return "a decimal number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	}
	return fmt.Sprintf("%T", v)
}

// parseSchedule parses a cron spec with an optional CRON_TZ= or TZ= prefix, without panicking.
func parseSchedule(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid schedule: %v", r)
		}
	}()
	return cron.ParseStandard(spec)
}

func checkChecks(cc checksConfig, dir string, add func(field, format string, a ...any)) checks.Config {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c := checks.Config{
		ProxyAdminURL: cc.ProxyAdminURL, ProxyTokenFile: rel(cc.ProxyTokenFile), ProxyInsecure: cc.ProxyInsecure,
		ProxyCertSHA256: strings.ToLower(cc.ProxyCertSHA256), ProxyConfig: rel(cc.ProxyConfig),
		MappingFile: rel(cc.MappingFile), MappingRedisURL: cc.MappingRedisURL, MappingKeyPrefix: cc.MappingKeyPrefix,
		DNSServer: cc.DNSServer, SMTPAddress: cc.SMTPAddress, StalwartCLI: cc.StalwartCLI,
		RelayRoute: cc.RelayRoute, SourceAddress: cc.SourceAddress,
	}
	if strings.Contains(cc.StalwartCLI, "/") {
		c.StalwartCLI = rel(cc.StalwartCLI)
	}
	if cc.ProxyAdminURL != "" {
		u, err := url.Parse(cc.ProxyAdminURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add("proxy_admin_url", "%q must be an https:// URL (the proxy's admin API is HTTPS only)", cc.ProxyAdminURL)
		}
	}
	if cc.ProxyCertSHA256 != "" && !hexRE.MatchString(cc.ProxyCertSHA256) {
		add("proxy_cert_sha256", "must be 64 hex digits (SHA-256 of the certificate)")
	}
	for field, p := range map[string]string{"proxy_token_file": c.ProxyTokenFile, "proxy_config": c.ProxyConfig, "mapping_file": c.MappingFile} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			add(field, "%v", errors.Unwrap(err))
		}
	}
	if cc.MappingFile != "" && cc.MappingRedisURL != "" {
		add("mapping_file", "set mapping_file or mapping_redis_url, not both")
	}
	if cc.MappingRedisURL != "" {
		if _, err := redis.ParseURL(cc.MappingRedisURL); err != nil {
			add("mapping_redis_url", "%v", err)
		}
	}
	for field, a := range map[string]string{"dns_server": cc.DNSServer, "smtp_address": cc.SMTPAddress, "source_address": cc.SourceAddress} {
		if a == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add(field, "%q must be host:port", a)
		}
	}
	for i, v := range cc.Ports {
		p, err := checks.ParsePort(v)
		if err != nil {
			add(fmt.Sprintf("ports[%d]", i), "%v", err)
			continue
		}
		c.Ports = append(c.Ports, p)
	}
	if cc.Timeout != "" {
		d, err := time.ParseDuration(cc.Timeout)
		if err != nil || d <= 0 || d > time.Minute {
			add("timeout", "%q must be a duration from 1ms to 1m, like \"5s\"", cc.Timeout)
		}
		c.Timeout = d
	}
	return c
}

// keyPrefix is the Redis key prefix in use.
func (c *Config) keyPrefix() string {
	if c.KeyPrefix == "" {
		return state.DefaultPrefix
	}
	return c.KeyPrefix
}
