// Command loadgen measures migrationbot serve over loopback against a real redis-server, and a
// floor server (a bare net/http handler that verifies the signature and does one Redis GET) at
// the same load, and prints the results as Markdown.
//
// It starts everything it measures and stops it again: a redis-server on a free port (no
// persistence), a fake Slack Web API and response_url endpoint in-process, bin/migrationbot
// serve as a child process (the state initialised first with `migrationbot shell` and `init`),
// and the floor server as a child process (this program, re-executed). Every phase is bounded
// in requests and in time.
//
//	go run ./bench/loadgen [-bin bin/migrationbot] [-n 4000] [-c 8] [-warmup 400]
//
// Phases:
//  1. status load: warm-up, then n signed `/migration status` at concurrency c; throughput,
//     p50/p99/max latency, RSS idle and after, Redis commands per slash command
//     (INFO commandstats before and after).
//  2. the same load against the floor server; the p99 ratio.
//  3. cutover and rollback, one at a time: Redis commands of each.
//  4. a second bot whose checks point at a TCP listener that accepts and never answers:
//     `/migration check` and `/migration cutover`, the HTTP answer time and the final answer's.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/migrationbot/migrationbot/bot"
)

const (
	secret   = "bench-signing-secret-0123456789abcdef"
	token    = "xoxb-bench-token"
	floorEnv = "MIGRATIONBOT_LOADGEN_FLOOR" // set: this process is the floor server
	floorKey = "floor:{example}:value"
)

type options struct {
	bin     string
	example string
	n       int
	c       int
	warmup  int
	cycles  int
	rate    float64       // open-loop phase: requests per second
	rateN   int           // requests of the open-loop phase
	phase   time.Duration // bound of one load phase
}

func main() {
	if os.Getenv(floorEnv) != "" {
		if err := floorMain(); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.bin, "bin", "bin/migrationbot", "the migrationbot `binary` (built into a temporary directory when missing)")
	flag.StringVar(&o.example, "config", "examples/migrationbot.toml", "the example `config` to copy")
	flag.IntVar(&o.n, "n", 4000, "measured requests per server")
	flag.IntVar(&o.c, "c", 8, "concurrency")
	flag.IntVar(&o.warmup, "warmup", 400, "warm-up requests per server")
	flag.IntVar(&o.cycles, "cycles", 10, "cutover/rollback cycles measured one at a time")
	flag.Float64Var(&o.rate, "rate", 500, "open-loop phase: `requests per second` (0: skip it)")
	flag.IntVar(&o.rateN, "rate-n", 2000, "requests of the open-loop phase")
	flag.DurationVar(&o.phase, "phase-timeout", 60*time.Second, "bound of each load phase")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // the whole run, whatever happens
	defer cancel()
	var cl cleanups
	defer cl.run()

	tmp, err := os.MkdirTemp("", "migrationbot-bench-")
	if err != nil {
		return err
	}
	cl.add(func() { os.RemoveAll(tmp) })

	bin, err := binary(ctx, o.bin, tmp)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server is not installed")
	}
	rport, err := freePort()
	if err != nil {
		return err
	}
	rsrv, err := startProcess(ctx, "redis", exec.Command("redis-server", "--port", strconv.Itoa(rport), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", tmp), nil)
	if err != nil {
		return err
	}
	cl.add(rsrv.stop)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", rport)
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport), DisableIdentity: true})
	cl.add(func() { rdb.Close() })
	if err := waitRedis(ctx, rdb); err != nil {
		return err
	}
	redisVersion := infoField(ctx, rdb, "server", "redis_version")

	slack := newFakeSlack()
	cl.add(slack.close)

	example, err := filepath.Abs(o.example)
	if err != nil {
		return err
	}
	cfgText, err := exampleConfig(example)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(tmp, "migrationbot.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	env := []string{"SLACK_SIGNING_SECRET=" + secret, "SLACK_BOT_TOKEN=" + token, "SLACK_API_URL=" + slack.url + "/api/",
		"REDIS_URL=" + redisURL, "MIGRATIONBOT_CONFIG=" + cfgPath}

	// The state, initialised as an operator would: the shell, init.
	sh := exec.CommandContext(ctx, bin, "shell")
	sh.Env = append(os.Environ(), env...)
	sh.Stdin = strings.NewReader("init\n")
	if out, err := sh.CombinedOutput(); err != nil || !strings.Contains(string(out), "example") {
		return fmt.Errorf("init through the shell: %v\n%s", err, out)
	}

	// 1. The bot.
	botp, err := startProcess(ctx, "migrationbot", exec.Command(bin, "serve", "--addr", "127.0.0.1:0"), env)
	if err != nil {
		return err
	}
	cl.add(botp.stop)
	base := "http://" + botp.addr
	if err := waitReady(ctx, base); err != nil {
		return fmt.Errorf("%w\n%s", err, botp.logs.String())
	}
	time.Sleep(500 * time.Millisecond) // let the start settle before reading the idle RSS
	idle := readRSS(botp.cmd.Process.Pid)

	statusOK := func(body []byte) bool { return bytes.Contains(body, []byte("example: phase proxied")) }
	client := newClient(o.c)
	send := func(base, text string) func() (*http.Request, error) {
		return func() (*http.Request, error) { return slashRequest(base, "U0VIEW", "C0OPS", text, slack.responseURL()) }
	}
	if r := load(ctx, client, o.warmup, o.c, 0, o.phase, send(base, "status"), statusOK); r.bad > 0 {
		return fmt.Errorf("bot warm-up: %d of %d answers were not a status (first: %s)\n%s", r.bad, o.warmup, r.firstBad, botp.logs.String())
	}
	before, err := commandStats(ctx, rdb)
	if err != nil {
		return err
	}
	botRes := load(ctx, client, o.n, o.c, 0, o.phase, send(base, "status"), statusOK)
	after, err := commandStats(ctx, rdb)
	if err != nil {
		return err
	}
	botRes.rss = readRSS(botp.cmd.Process.Pid)
	statusCmds := perCommand(before, after, botRes.ok)
	var botRate result
	if o.rate > 0 {
		botRate = load(ctx, client, o.rateN, 4*o.c, o.rate, o.phase, send(base, "status"), statusOK)
		botRate.rss = readRSS(botp.cmd.Process.Pid)
	}

	// 3. cutover and rollback, one at a time, from the migration's channel (no announcement
	// post, so Slack pacing does not enter the figures).
	cutCmds, rbCmds, cutLat, rbLat, err := transitions(ctx, client, base, slack, rdb, o.cycles)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, botp.logs.String())
	}
	botp.stop()

	// 2. The floor server, a child process like the bot.
	if err := rdb.Set(ctx, floorKey, "example: phase proxied", 0).Err(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	floorp, err := startProcess(ctx, "floor", exec.Command(self), []string{floorEnv + "=1", "SLACK_SIGNING_SECRET=" + secret, "REDIS_ADDR=" + fmt.Sprintf("127.0.0.1:%d", rport)})
	if err != nil {
		return err
	}
	cl.add(floorp.stop)
	fbase := "http://" + floorp.addr
	time.Sleep(300 * time.Millisecond)
	floorIdle := readRSS(floorp.cmd.Process.Pid)
	if r := load(ctx, client, o.warmup, o.c, 0, o.phase, send(fbase, "status"), statusOK); r.bad > 0 {
		return fmt.Errorf("floor warm-up: %d bad answers (first: %s)\n%s", r.bad, r.firstBad, floorp.logs.String())
	}
	before, _ = commandStats(ctx, rdb)
	floorRes := load(ctx, client, o.n, o.c, 0, o.phase, send(fbase, "status"), statusOK)
	after, _ = commandStats(ctx, rdb)
	floorRes.rss = readRSS(floorp.cmd.Process.Pid)
	floorCmds := perCommand(before, after, floorRes.ok)
	var floorRate result
	if o.rate > 0 {
		floorRate = load(ctx, client, o.rateN, 4*o.c, o.rate, o.phase, send(fbase, "status"), statusOK)
		floorRate.rss = readRSS(floorp.cmd.Process.Pid)
	}
	floorp.stop()

	// 4. Checks against a peer that never answers.
	hang, err := hangingPeer()
	if err != nil {
		return err
	}
	cl.add(hang.close)
	hangCfg := filepath.Join(tmp, "hanging.toml")
	if err := os.WriteFile(hangCfg, []byte(hangingConfig(cfgText, hang.addr)), 0o600); err != nil {
		return err
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	henv := append(slices.Clone(env[:len(env)-1]), "MIGRATIONBOT_CONFIG="+hangCfg)
	sh = exec.CommandContext(ctx, bin, "shell")
	sh.Env = append(os.Environ(), henv...)
	sh.Stdin = strings.NewReader("init\n")
	if out, err := sh.CombinedOutput(); err != nil {
		return fmt.Errorf("init (hanging config): %v\n%s", err, out)
	}
	hangp, err := startProcess(ctx, "migrationbot (hanging checks)", exec.Command(bin, "serve", "--addr", "127.0.0.1:0"), henv)
	if err != nil {
		return err
	}
	cl.add(hangp.stop)
	if err := waitReady(ctx, "http://"+hangp.addr); err != nil {
		return err
	}
	var hangRows []hangRow
	for _, text := range []string{"check", "cutover"} {
		row, err := timedCommand(ctx, client, "http://"+hangp.addr, slack, "U0OPS1", "C0MIGRATION", text, 30*time.Second)
		if err != nil {
			return fmt.Errorf("%s with a hanging peer: %w\n%s", text, err, hangp.logs.String())
		}
		hangRows = append(hangRows, row)
	}
	hangp.stop()

	report(os.Stdout, o, redisVersion, idle, floorIdle, botRes, floorRes, botRate, floorRate, statusCmds, floorCmds, cutCmds, rbCmds, cutLat, rbLat, hangRows)
	return nil
}

// binary returns the migrationbot binary, building it when it is missing.
func binary(ctx context.Context, path, tmp string) (string, error) {
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() {
		return filepath.Abs(path)
	}
	out := filepath.Join(tmp, "migrationbot")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/migrationbot")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build migrationbot: %w", err)
	}
	return out, nil
}

// exampleConfig is the example config with its relative paths made absolute and a report
// schedule that is never due, so that no report runs while Redis commands are counted.
func exampleConfig(example string) (string, error) {
	b, err := os.ReadFile(example)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(example)
	s := strings.ReplaceAll(string(b), `= "proxy/`, `= "`+dir+`/proxy/`)
	s = regexp.MustCompile(`(?m)^report_schedule\s*=.*$`).ReplaceAllString(s, `report_schedule  = "0 0 29 2 *"`)
	return s, nil
}

// hangingConfig points every check with a network peer at addr: the mapping table through
// Redis (the cutover gate), the proxy's admin API, the relay probe and the source.
func hangingConfig(cfg, addr string) string {
	cfg = regexp.MustCompile(`(?m)^mapping_file\s*=.*$`).ReplaceAllString(cfg, "mapping_redis_url = \"redis://"+addr+"/0\"")
	return cfg + fmt.Sprintf(`proxy_admin_url = "https://%[1]s"
proxy_insecure = true
smtp_address = "%[1]s"
source_address = "%[1]s"
dns_server = "%[1]s"
`, addr)
}

// cleanups run in reverse order, once.
type cleanups struct{ fs []func() }

func (c *cleanups) add(f func()) { c.fs = append(c.fs, sync.OnceFunc(f)) }
func (c *cleanups) run() {
	for i := len(c.fs) - 1; i >= 0; i-- {
		c.fs[i]()
	}
}

// process is a child process this program started.
type process struct {
	name string
	cmd  *exec.Cmd
	addr string // from "listening on <addr>", for servers that print it
	logs *syncBuffer
	done chan struct{}
	stop func()
}

var listeningRE = regexp.MustCompile(`listening on (\S+)`)

// startProcess starts cmd with env added; for anything but redis-server it waits for the
// "listening on" line. The child is killed if this process dies (Pdeathsig).
func startProcess(ctx context.Context, name string, cmd *exec.Cmd, env []string) (*process, error) {
	p := &process{name: name, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
			p.logs.Write(append(sc.Bytes(), '\n'))
		}
	}()
	go func() { cmd.Wait(); close(p.done) }()
	p.stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
	})
	if name == "redis" {
		return p, nil
	}
	select {
	case p.addr = <-addrc:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited at start:\n%s", name, p.logs.String())
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	p.stop()
	return nil, fmt.Errorf("%s did not say where it listens:\n%s", name, p.logs.String())
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitRedis(ctx context.Context, rdb *redis.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server does not answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s/readyz: %w", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readRSS reads VmRSS and VmHWM (peak) of pid, in kB.
func readRSS(pid int) rss {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return rss{}
	}
	var r rss
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			r.cur = n
		case "VmHWM:":
			r.peak = n
		}
	}
	return r
}

type rss struct{ cur, peak int64 } // kB

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// commandStats reads INFO commandstats: calls by command.
func commandStats(ctx context.Context, rdb *redis.Client) (map[string]int64, error) {
	s, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out, nil
}

func infoField(ctx context.Context, rdb *redis.Client, section, field string) string {
	s, _ := rdb.Info(ctx, section).Result()
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return "?"
}

// perCommand is the commandstats delta divided by n, without INFO (ours) itself.
type cmdCounts map[string]float64

func perCommand(before, after map[string]int64, n int) cmdCounts {
	out := cmdCounts{}
	if n == 0 {
		return out
	}
	for k, v := range after {
		if k == "info" {
			continue
		}
		if d := v - before[k]; d > 0 {
			out[k] = float64(d) / float64(n)
		}
	}
	return out
}

func (c cmdCounts) total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}

func (c cmdCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s", strings.ToUpper(k), trimFloat(c[k])))
	}
	return fmt.Sprintf("%s (%s)", trimFloat(c.total()), strings.Join(parts, ", "))
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func newClient(c int) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 2 * c, MaxIdleConnsPerHost: 2 * c, IdleConnTimeout: time.Minute},
	}
}

// triggers numbers trigger_ids: Slack gives each invocation its own.
var triggers atomic.Int64

// slashRequest is a slash command signed as Slack signs it.
func slashRequest(base, user, channel, text, responseURL string) (*http.Request, error) {
	form := url.Values{
		"token": {"deprecated"}, "team_id": {"T0TEAM"}, "team_domain": {"example"},
		"channel_id": {channel}, "channel_name": {"ops"}, "user_id": {user}, "user_name": {"someone"},
		"command": {"/migration"}, "text": {text}, "response_url": {responseURL},
		"trigger_id": {fmt.Sprintf("1337.%d", triggers.Add(1))}, "api_app_id": {"A0APP"},
	}
	body := form.Encode()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, base+"/slack/commands", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", bot.Sign(secret, ts, []byte(body)))
	return req, nil
}

type result struct {
	n, ok, bad int
	rate       float64 // 0: closed loop
	firstBad   string
	elapsed    time.Duration
	lat        []time.Duration // sorted
	rss        rss
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p+0.999999) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

func (r result) rps() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

// load sends n requests and stops early after bound. With rate 0 it is a closed loop: c
// workers, each sending its next request as soon as the last is answered, latency measured from
// the send. With a rate it is an open loop: requests are due at a fixed rate, c workers send
// them, and latency is measured from when each was due, so queueing counts.
func load(ctx context.Context, client *http.Client, n, c int, rate float64, bound time.Duration, mk func() (*http.Request, error), good func([]byte) bool) result {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	due := make(chan time.Time, n)
	start := time.Now()
	if rate <= 0 {
		for range n {
			due <- time.Time{}
		}
		close(due)
	} else {
		go func() {
			defer close(due)
			for i := range n {
				at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				select {
				case <-time.After(time.Until(at)):
				case <-ctx.Done():
					return
				}
				due <- at
			}
		}()
	}
	var mu sync.Mutex
	res := result{n: n, rate: rate, lat: make([]time.Duration, 0, n)}
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for at := range due {
				if ctx.Err() != nil {
					return
				}
				req, err := mk()
				if err != nil {
					return
				}
				t0 := time.Now()
				if !at.IsZero() {
					t0 = at
				}
				resp, err := client.Do(req.WithContext(ctx))
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
					}
				}
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil || !good(body):
					res.bad++
					if res.firstBad == "" {
						res.firstBad = fmt.Sprintf("%v %.200s", err, body)
					}
				default:
					res.ok++
					res.lat = append(res.lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}

// fakeSlack is the Slack Web API (chat.postMessage, usergroups.users.list) and the
// response_url endpoints, recording the response_url posts.
type fakeSlack struct {
	srv     *http.Server
	url     string
	next    atomic.Int64
	mu      sync.Mutex
	waiters map[string]chan string // response_url path -> its text
}

func newFakeSlack() *fakeSlack {
	f := &fakeSlack{waiters: map[string]chan string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1700000000.%06d"}`, r.PostForm.Get("channel"), f.next.Add(1))
	})
	mux.HandleFunc("POST /api/usergroups.users.list", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"users":["U0ONCALL"]}`)
	})
	mux.HandleFunc("POST /respond/", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Text string `json:"text"`
		}
		json.NewDecoder(r.Body).Decode(&p)
		f.waiter(r.URL.Path) <- p.Text
		io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback must work
	}
	f.srv = &http.Server{Handler: mux}
	f.url = "http://" + ln.Addr().String()
	go f.srv.Serve(ln)
	return f
}

func (f *fakeSlack) close() { f.srv.Close() }

func (f *fakeSlack) responseURL() string {
	return fmt.Sprintf("%s/respond/%d", f.url, f.next.Add(1))
}

func (f *fakeSlack) waiter(path string) chan string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.waiters[path]
	if !ok {
		c = make(chan string, 4)
		f.waiters[path] = c
	}
	return c
}

// timedCommand sends one command and waits for its final answer (HTTP, or response_url after
// "working on it").
type hangRow struct {
	text       string
	httpTook   time.Duration
	finalTook  time.Duration
	httpAnswer string
	final      string
}

func timedCommand(ctx context.Context, client *http.Client, base string, f *fakeSlack, user, channel, text string, within time.Duration) (hangRow, error) {
	ru := f.responseURL()
	req, err := slashRequest(base, user, channel, text, ru)
	if err != nil {
		return hangRow{}, err
	}
	t0 := time.Now()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		return hangRow{}, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	row := hangRow{text: text, httpTook: time.Since(t0)}
	var a struct {
		Text string `json:"text"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil {
		return row, fmt.Errorf("HTTP %d %q", resp.StatusCode, body)
	}
	row.httpAnswer, row.final, row.finalTook = a.Text, a.Text, row.httpTook
	if a.Text != bot.WorkingText {
		return row, nil
	}
	u, _ := url.Parse(ru)
	select {
	case row.final = <-f.waiter(u.Path):
		row.finalTook = time.Since(t0)
		return row, nil
	case <-time.After(within):
		return row, fmt.Errorf("no answer through response_url within %s", within)
	case <-ctx.Done():
		return row, ctx.Err()
	}
}

// transitions runs cycles of cutover then rollback, one command at a time, and returns the Redis
// commands each took on average, and their final-answer latencies.
func transitions(ctx context.Context, client *http.Client, base string, f *fakeSlack, rdb *redis.Client, cycles int) (cut, rb cmdCounts, cutLat, rbLat []time.Duration, err error) {
	cutTotal, rbTotal := map[string]int64{}, map[string]int64{}
	measure := func(text, want string, total map[string]int64, lat *[]time.Duration) error {
		before, err := commandStats(ctx, rdb)
		if err != nil {
			return err
		}
		row, err := timedCommand(ctx, client, base, f, "U0OPS1", "C0MIGRATION", text, 15*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", text, err)
		}
		if !strings.Contains(row.final, want) {
			return fmt.Errorf("%s: answer %q, want %q", text, row.final, want)
		}
		after, err := commandStats(ctx, rdb)
		if err != nil {
			return err
		}
		for k, v := range after {
			total[k] += v - before[k]
		}
		*lat = append(*lat, row.finalTook)
		return nil
	}
	for range cycles {
		if err := measure("cutover", "moved to cutover", cutTotal, &cutLat); err != nil {
			return nil, nil, nil, nil, err
		}
		if err := measure("rollback bench", "rolled back", rbTotal, &rbLat); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	zero := map[string]int64{}
	return perCommand(zero, cutTotal, cycles), perCommand(zero, rbTotal, cycles), cutLat, rbLat, nil
}

// hangPeer accepts TCP connections and never answers.
type hangPeer struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func hangingPeer() (*hangPeer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hangPeer{addr: ln.Addr().String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	return h, nil
}

func (h *hangPeer) close() {
	h.ln.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}

// floorMain is the floor server: verify the signature, parse the form, one Redis GET, a JSON
// answer. Nothing else.
func floorMain() error {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR"), DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer rdb.Close()
	sec := os.Getenv("SLACK_SIGNING_SECRET")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bot.DefaultMaxBody))
		if err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if err := bot.Verify(sec, r.Header, body, time.Now()); err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if _, err := url.ParseQuery(string(body)); err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		v, err := rdb.Get(ctx, floorKey).Result()
		if err != nil {
			v = "unavailable: " + err.Error()
		}
		b, _ := json.Marshal(map[string]string{"response_type": "ephemeral", "text": v})
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // enough to diagnose
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func report(w io.Writer, o options, redisVersion string, idle, floorIdle rss, b, f, br, fr result, statusCmds, floorCmds, cutCmds, rbCmds cmdCounts, cutLat, rbLat []time.Duration, hang []hangRow) {
	slices.Sort(cutLat)
	slices.Sort(rbLat)
	host, _ := os.Hostname()
	fmt.Fprintf(w, "## Load: `/migration status`\n\n")
	fmt.Fprintf(w, "Machine: %s, %d CPUs, %s %s/%s, %s, redis-server %s; loadgen, bot and Redis share the machine.\n",
		host, runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), redisVersion)
	fmt.Fprintf(w, "Closed loop: %d requests at concurrency %d after %d warm-up. Open loop: %d requests due at %.0f/s, latency from when each was due.\n\n",
		o.n, o.c, o.warmup, o.rateN, o.rate)
	fmt.Fprintln(w, "| server | load | ok / sent | req/s | p50 | p99 | max | RSS idle | RSS after | RSS peak | Redis commands per request |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	type row struct {
		name string
		r    result
		idle rss
		cmds string
	}
	rows := []row{{"migrationbot serve", b, idle, statusCmds.String()}, {"floor (verify + one GET)", f, floorIdle, floorCmds.String()}}
	if o.rate > 0 {
		rows = append(rows, row{"migrationbot serve", br, idle, "″"}, row{"floor (verify + one GET)", fr, floorIdle, "″"})
	}
	for _, row := range rows {
		load := fmt.Sprintf("c=%d", o.c)
		if row.r.rate > 0 {
			load = fmt.Sprintf("%.0f/s", row.r.rate)
		}
		fmt.Fprintf(w, "| %s | %s | %d / %d | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", row.name, load, row.r.ok, row.r.ok+row.r.bad, row.r.rps(),
			ms(row.r.pct(0.50)), ms(row.r.pct(0.99)), ms(row.r.pct(1)), mb(row.idle.cur), mb(row.r.rss.cur), mb(row.r.rss.peak), row.cmds)
	}
	ratio := float64(b.pct(0.99)) / float64(max(f.pct(0.99), 1))
	fmt.Fprintf(w, "\np99 ratio bot/floor, closed loop c=%d: %.2fx (target ≤ 1.5x: %s); p50 ratio %.2fx; throughput ratio %.2fx.\n",
		o.c, ratio, verdict(ratio <= 1.5), float64(b.pct(0.5))/float64(max(f.pct(0.5), 1)), b.rps()/max(f.rps(), 1))
	if o.rate > 0 {
		r2 := float64(br.pct(0.99)) / float64(max(fr.pct(0.99), 1))
		fmt.Fprintf(w, "p99 ratio bot/floor, open loop %.0f/s: %.2fx (target ≤ 1.5x: %s); p50 ratio %.2fx.\n",
			o.rate, r2, verdict(r2 <= 1.5), float64(br.pct(0.5))/float64(max(fr.pct(0.5), 1)))
	}
	fmt.Fprintf(w, "Idle RSS: %s (target < 30 MB: %s).\n\n", mb(idle.cur), verdict(idle.cur > 0 && idle.cur < 30*1024))

	fmt.Fprintf(w, "## Redis commands per slash command (INFO commandstats deltas)\n\n")
	fmt.Fprintln(w, "| command | Redis commands (by name) | final answer p50 / max |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	fmt.Fprintf(w, "| status | %s | %s / %s (load above) |\n", statusCmds, ms(b.pct(0.5)), ms(b.pct(1)))
	fmt.Fprintf(w, "| cutover (gate: mapping file) | %s | %s / %s |\n", cutCmds, ms(pctOf(cutLat, 0.5)), ms(pctOf(cutLat, 1)))
	fmt.Fprintf(w, "| rollback | %s | %s / %s |\n", rbCmds, ms(pctOf(rbLat, 0.5)), ms(pctOf(rbLat, 1)))
	fmt.Fprintf(w, "\n(%d cycles, one command at a time; EVALSHA's inner commands are counted by Redis too.)\n\n", o.cycles)

	fmt.Fprintf(w, "## Checks against a peer that accepts and never answers\n\n")
	fmt.Fprintln(w, "| command | HTTP answer | final answer (response_url) | verdict (HTTP < 3 s) | final answer, first line |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- |")
	for _, h := range hang {
		first, _, _ := strings.Cut(h.final, "\n")
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", h.text, ms(h.httpTook), ms(h.finalTook), verdict(h.httpTook < 3*time.Second), strings.ReplaceAll(first, "|", "\\|"))
	}
}

func pctOf(lat []time.Duration, p float64) time.Duration {
	return result{lat: lat}.pct(p)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
