package checks

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// proxyConfigStalwart is the shape of the proxy's config.stalwart-upgrade.toml.
const proxyConfigStalwart = `
[server]
hostname = "mail.example.org"

[routing]
default_destination = "old"
smtp_passthrough_destination = "new"

[mapping]
source = "file"
[mapping.file]
path = "/etc/proxy/mappings.tsv"

[destination.old]
host = "source.internal.example.org"
forwarding = "proxy"
[destination.old.protocol.imap]
port = 993
tls = "implicit"

[destination.new]
host = "new.internal.example.org"
[destination.new.protocol.imap]
port = 993
tls = "implicit"

[admin]
bind = "127.0.0.1:9443"
tls = "implicit"
bearer_token_file = "/etc/proxy/admin.token"
`

// proxyConfigDovecot names its destinations legacy/stalwart and has no
// pass-through destination: the new one is the other destination.
const proxyConfigDovecot = `
[routing]
default_destination = "legacy"

[destination.legacy]
host = "source.internal.example.org"

[destination.stalwart]
host = "new.internal.example.org"
`

func TestMappingFile(t *testing.T) {
	tests := []struct {
		name        string
		proxyConfig string
		mappings    string
		want        Status
		wantDetail  []string
		wantObs     map[string]string
	}{
		{
			name:        "all accounts on new",
			proxyConfig: proxyConfigStalwart,
			mappings:    "# accounts\n\nalice@example.org new\nalice\tnew   extra fields\nstalwart-webui new\n",
			want:        Pass,
			wantDetail:  []string{"no account left on old (3 entries, all on new)"},
			wantObs:     map[string]string{"on_source": "0", "entries": "3", "source_destination": "old", "new_destination": "new"},
		},
		{
			name:        "accounts left on the source",
			proxyConfig: proxyConfigStalwart,
			mappings:    "alice@example.org new\nbob@example.org old\ncarol@example.org old\nd old\ne old\nf old\ng old\n",
			want:        Fail,
			wantDetail:  []string{"6 accounts still on old: bob@example.org, carol@example.org, d, e, f and 1 more"},
			wantObs:     map[string]string{"on_source": "6", "entries": "7"},
		},
		{
			name:        "one account left",
			proxyConfig: proxyConfigStalwart,
			mappings:    "bob@example.org old\nadmin new\n",
			want:        Fail,
			wantDetail:  []string{"1 account still on old: bob@example.org", "admin mapping entry left behind"},
		},
		{
			name:        "webadmin still on the source",
			proxyConfig: proxyConfigStalwart,
			mappings:    "webadmin old\nstalwart-webui new\nalice new\n",
			want:        Warn,
			wantDetail:  []string{"webadmin still points at old"},
			wantObs:     map[string]string{"on_source": "0"},
		},
		{
			name:        "admin entry left behind",
			proxyConfig: proxyConfigStalwart,
			mappings:    "alice new\nadmin old\n",
			want:        Warn,
			wantDetail:  []string{"admin mapping entry left behind; remove it when all accounts are done"},
		},
		{
			name:        "undeclared destination",
			proxyConfig: proxyConfigStalwart,
			mappings:    "alice new\nbob newer\n",
			want:        Warn,
			wantDetail:  []string{`destination "newer" of 1 entries not declared in the proxy config`},
		},
		{
			name:        "dovecot names, new destination inferred",
			proxyConfig: proxyConfigDovecot,
			mappings:    "alice@example.org stalwart\n",
			want:        Pass,
			wantDetail:  []string{"no account left on legacy (1 entries, all on stalwart)"},
			wantObs:     map[string]string{"new_destination": "stalwart"},
		},
		{
			name:        "empty mapping file",
			proxyConfig: proxyConfigStalwart,
			mappings:    "",
			want:        Pass,
			wantDetail:  []string{"no account left on old (0 entries"},
		},
		{
			name:        "malformed line",
			proxyConfig: proxyConfigStalwart,
			mappings:    "alice\n",
			want:        Fail,
			wantDetail:  []string{"mappings.tsv:1"},
		},
		{
			name:        "proxy config without default destination",
			proxyConfig: "[routing]\n",
			mappings:    "alice new\n",
			want:        Fail,
			wantDetail:  []string{"default_destination not set"},
		},
		{
			name:        "proxy config not TOML",
			proxyConfig: "[routing\n",
			mappings:    "alice new\n",
			want:        Fail,
			wantDetail:  []string{"read proxy config"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{
				ProxyConfig: writeFile(t, "config.toml", tt.proxyConfig),
				MappingFile: writeFile(t, "mappings.tsv", tt.mappings),
			}
			res := run1(t, &Runner{}, Target{Phase: PhaseProxied}, cfg, IDMapping)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			for k, v := range tt.wantObs {
				if res.Observed[k] != v {
					t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
				}
			}
		})
	}
}

func TestMappingNotConfigured(t *testing.T) {
	pc := writeFile(t, "config.toml", proxyConfigStalwart)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no proxy config", Config{MappingFile: "/nonexistent"}, "proxy_config not set"},
		{"no mapping store", Config{ProxyConfig: pc}, "mapping_file or mapping_redis_url not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run1(t, &Runner{}, Target{}, tt.cfg, IDMapping)
			requireStatus(t, res, Skip)
			requireDetail(t, res, tt.want)
		})
	}
	t.Run("missing mapping file", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{}, Config{ProxyConfig: pc, MappingFile: "/nonexistent/mappings.tsv"}, IDMapping)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "read mapping file")
	})
}

func TestMappingRedis(t *testing.T) {
	pc := writeFile(t, "config.toml", proxyConfigStalwart)
	tests := []struct {
		name       string
		prefix     string
		keys       map[string]string
		want       Status
		wantDetail []string
		wantObs    map[string]string
	}{
		{
			name:       "all on new",
			keys:       map[string]string{"route:alice@example.org": "new", "route:alice": "new", "other:bob": "old", "bot:route:x": "old"},
			want:       Pass,
			wantDetail: []string{"no account left on old (2 entries, all on new)"},
			wantObs:    map[string]string{"entries": "2", "on_source": "0"},
		},
		{
			name:       "accounts on the source",
			keys:       map[string]string{"route:alice": "new", "route:bob": "old", "route:carol": ""},
			want:       Fail,
			wantDetail: []string{"2 accounts still on old: bob, carol"},
			wantObs:    map[string]string{"on_source": "2", "entries": "3"},
		},
		{
			name:       "custom prefix",
			prefix:     "px:",
			keys:       map[string]string{"px:alice": "new", "route:bob": "old"},
			want:       Pass,
			wantDetail: []string{"(1 entries, all on new)"},
		},
		{
			name:       "no keys",
			keys:       map[string]string{},
			want:       Pass,
			wantDetail: []string{"(0 entries"},
		},
		{
			name:       "admin key",
			keys:       map[string]string{"route:admin": "new"},
			want:       Warn,
			wantDetail: []string{"admin mapping entry left behind"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mr := miniredis.RunT(t)
			for k, v := range tt.keys {
				mr.Set(k, v)
			}
			cfg := Config{ProxyConfig: pc, MappingRedisURL: "redis://" + mr.Addr(), MappingKeyPrefix: tt.prefix}
			res := run1(t, &Runner{}, Target{Phase: PhaseProxied}, cfg, IDMapping)
			requireStatus(t, res, tt.want)
			requireDetail(t, res, tt.wantDetail...)
			for k, v := range tt.wantObs {
				if res.Observed[k] != v {
					t.Errorf("got observed %s=%q, want %q", k, res.Observed[k], v)
				}
			}
		})
	}
	t.Run("wrong type key", func(t *testing.T) {
		mr := miniredis.RunT(t)
		mr.Lpush("route:list", "x")
		res := run1(t, &Runner{}, Target{}, Config{ProxyConfig: pc, MappingRedisURL: "redis://" + mr.Addr()}, IDMapping)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "route:list")
	})
	t.Run("unreachable", func(t *testing.T) {
		res := run1(t, &Runner{}, Target{}, Config{ProxyConfig: pc, MappingRedisURL: "redis://" + closedAddr(t)}, IDMapping)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "scan mapping redis")
	})
	t.Run("hanging", func(t *testing.T) {
		cfg := Config{ProxyConfig: pc, MappingRedisURL: "redis://" + startHanging(t).String(), Timeout: 300 * time.Millisecond}
		start := time.Now()
		res := run1(t, &Runner{}, Target{}, cfg, IDMapping)
		requireStatus(t, res, Fail)
		requireDetail(t, res, "timed out")
		if took := time.Since(start); took > 600*time.Millisecond {
			t.Errorf("got %v, want about 300ms", took)
		}
	})
}
