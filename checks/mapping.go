package checks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// proxyConfig is the part of the proxy's TOML config the checks read.
type proxyConfig struct {
	Routing struct {
		DefaultDestination         string `toml:"default_destination"`
		SMTPPassthroughDestination string `toml:"smtp_passthrough_destination"`
	} `toml:"routing"`
	Destination map[string]any `toml:"destination"`
}

// destinations names the source and new destinations of a proxy config.
type destinations struct {
	source   string          // [routing] default_destination
	new      string          // smtp_passthrough_destination, or the only other destination
	declared map[string]bool // [destination.*]
}

func readProxyConfig(path string) (destinations, error) {
	var pc proxyConfig
	if _, err := toml.DecodeFile(path, &pc); err != nil {
		return destinations{}, fmt.Errorf("read proxy config: %w", err)
	}
	if pc.Routing.DefaultDestination == "" {
		return destinations{}, fmt.Errorf("read proxy config %s: [routing] default_destination not set", path)
	}
	d := destinations{
		source:   pc.Routing.DefaultDestination,
		new:      pc.Routing.SMTPPassthroughDestination,
		declared: map[string]bool{},
	}
	for name := range pc.Destination {
		d.declared[name] = true
	}
	if d.new == "" && len(d.declared) == 2 {
		for name := range d.declared {
			if name != d.source {
				d.new = name
			}
		}
	}
	return d, nil
}

// mappingEntry is one identifier of the mapping table and its destination.
type mappingEntry struct {
	id, dest string
}

// readMappingFile reads the proxy's mapping file: "<identifier>
// <destination>" per line, any whitespace between, blank lines and #
// comments skipped, extra fields ignored.
func readMappingFile(path string) ([]mappingEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mapping file: %w", err)
	}
	defer f.Close()
	var entries []mappingEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("read mapping file %s:%d: want \"<identifier> <destination>\", got %q", path, n, clip(line, 80))
		}
		entries = append(entries, mappingEntry{id: fields[0], dest: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mapping file %s: %w", path, err)
	}
	return entries, nil
}

// readMappingRedis lists the mapping keys with SCAN and reads each. A key
// with an empty value routes to the default destination.
func readMappingRedis(ctx context.Context, url, prefix, defaultDest string) ([]mappingEntry, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("mapping redis url: %w", err)
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	var keys []string
	var cursor uint64
	for {
		batch, next, err := rdb.Scan(ctx, cursor, redisGlobEscape(prefix)+"*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("scan mapping redis: %s", short(err))
		}
		keys = append(keys, batch...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Strings(keys)
	keys = dedupe(keys) // SCAN may return a key twice

	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			// Per-command errors are looked at below; this is the transport.
			var re redis.Error
			if !errors.As(err, &re) {
				return nil, fmt.Errorf("read mapping redis: %s", short(err))
			}
		}
	}
	entries := make([]mappingEntry, 0, len(keys))
	for i, k := range keys {
		dest, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // deleted since the scan
		case err != nil:
			return nil, fmt.Errorf("read mapping redis key %s: %w", k, err)
		}
		if dest == "" {
			dest = defaultDest
		}
		entries = append(entries, mappingEntry{id: strings.TrimPrefix(k, prefix), dest: strings.TrimSpace(dest)})
	}
	return entries, nil
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// redisGlobEscape escapes the glob characters of a key prefix for MATCH.
func redisGlobEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

// Mapping entries that are not accounts.
var (
	// oauthClients are the 0.15 web admin's OAuth client ids, routed by the
	// HTTP /auth/token route.
	oauthClients = map[string]bool{"webadmin": true, "stalwart-webui": true}
	adminEntry   = "admin"
)

// checkMapping is P3: no account of the proxy's mapping table is left on
// the source destination.
func (r *Runner) checkMapping(ctx context.Context, t Target, cfg Config) Result {
	if cfg.ProxyConfig == "" {
		return skip("proxy_config not set")
	}
	if cfg.MappingFile == "" && cfg.MappingRedisURL == "" {
		return skip("mapping_file or mapping_redis_url not set")
	}
	dests, err := readProxyConfig(cfg.ProxyConfig)
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	var entries []mappingEntry
	if cfg.MappingFile != "" {
		entries, err = readMappingFile(cfg.MappingFile)
	} else {
		prefix := cfg.MappingKeyPrefix
		if prefix == "" {
			prefix = "route:"
		}
		entries, err = readMappingRedis(ctx, cfg.MappingRedisURL, prefix, dests.source)
	}
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}

	var onSource, warnings []string
	undeclared := map[string]int{}
	for _, e := range entries {
		id := strings.ToLower(e.id)
		if !dests.declared[e.dest] {
			undeclared[e.dest]++
		}
		switch {
		case id == adminEntry:
			warnings = append(warnings, "admin mapping entry left behind; remove it when all accounts are done")
		case oauthClients[id]:
			if e.dest == dests.source {
				warnings = append(warnings, fmt.Sprintf("%s still points at %s (web admin OAuth client)", e.id, dests.source))
			}
		case e.dest == dests.source:
			onSource = append(onSource, e.id)
		}
	}
	for _, d := range sortedKeys(undeclared) {
		warnings = append(warnings, fmt.Sprintf("destination %q of %d entries not declared in the proxy config", d, undeclared[d]))
	}

	obs := map[string]string{
		"on_source":          strconv.Itoa(len(onSource)),
		"entries":            strconv.Itoa(len(entries)),
		"source_destination": dests.source,
		"new_destination":    dests.new,
	}
	if len(onSource) > 0 {
		noun := "accounts"
		if len(onSource) == 1 {
			noun = "account"
		}
		detail := fmt.Sprintf("%d %s still on %s: %s", len(onSource), noun, dests.source, listSome(onSource, 5))
		if len(warnings) > 0 {
			detail += "; " + strings.Join(warnings, "; ")
		}
		return Result{Status: Fail, Observed: obs, Detail: detail}
	}
	if len(warnings) > 0 {
		return Result{Status: Warn, Observed: obs, Detail: strings.Join(warnings, "; ")}
	}
	where := ""
	if onNew := countDest(entries, dests.new); dests.new != "" && onNew == len(entries) {
		where = ", all on " + dests.new
	} else if dests.new != "" {
		where = fmt.Sprintf(", %d on %s", onNew, dests.new)
	}
	return Result{Status: Pass, Observed: obs,
		Detail: fmt.Sprintf("no account left on %s (%d entries%s)", dests.source, len(entries), where)}
}

func countDest(entries []mappingEntry, dest string) int {
	n := 0
	for _, e := range entries {
		if e.dest == dest {
			n++
		}
	}
	return n
}
