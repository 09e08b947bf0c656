package main

// Failure drills: migrationbot serve against real redis-server processes that these tests
// start on free loopback ports and kill, flush or cluster. Each drill starts its own servers and
// kills them at cleanup. Without redis-server the drills are skipped, except under CI=true,
// where they fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/migrationbot/migrationbot/bot"
	"github.com/migrationbot/migrationbot/internal/testredis"
)

// needTool skips the test when a program is missing, or fails it under CI=true.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI=true: the drills must run)", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// drillPort returns a free loopback port p whose cluster bus port p+10000 is free as well.
func drillPort(t testing.TB) int {
	t.Helper()
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p+10000 > 65535 {
			p = 20000 + p%25000 // fold it down, then check it is free
		}
		ok := true
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// redisProc is a redis-server this test started.
type redisProc struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

// startRedisServer starts redis-server on port with args and waits until it answers PING; it
// is killed at cleanup.
func startRedisServer(t testing.TB, port int, args ...string) *redisProc {
	t.Helper()
	needTool(t, "redis-server")
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"}, args...)
	p := &redisProc{port: port, cmd: exec.Command("redis-server", all...), done: make(chan struct{}), logs: &syncBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	rdb := redis.NewClient(&redis.Options{Addr: p.addr(), DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("redis-server on %d exited at start:\n%s", port, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d does not answer: %v\n%s", port, err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *redisProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// kill stops redis-server at once (SIGKILL, as a crash would) and waits for it to exit.
func (p *redisProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func drillClient(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func drillConfig(prefix string) string {
	return fmt.Sprintf(`key_prefix = %q

[roles]
admins    = ["U0ADMIN"]
operators = ["U0OPS"]

[[migration]]
name            = "drill"
channel         = "C0DRILL"
public_hostname = "mail.drill.example.org"
source_host     = "source.drill.example.org"
report_schedule = "0 0 29 2 *"
`, prefix)
}

// startDrillServe is startServe whose client's idle connections are closed before the bot
// stops: http.Server.Shutdown waits up to 5 s for a connection that never sent a request (one
// the client's transport dialled and did not need), which would only slow the drills down.
func startDrillServe(t *testing.T, f *fakeSlack, config string, env map[string]string) *served {
	t.Helper()
	s := startServe(t, f, config, env)
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// trySend is served.send without failing the test, for use from several goroutines.
func (s *served) trySend(user, channel, text string) (slashAnswer, error) {
	form, ts := slashForm(s.slack, user, channel, text)
	req, _ := http.NewRequest(http.MethodPost, s.base+"/slack/commands", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", bot.Sign(testSecret, ts, []byte(form)))
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return slashAnswer{}, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	a := slashAnswer{Status: resp.StatusCode, Took: time.Since(start)}
	f, _ := url.ParseQuery(form)
	a.ResponseURL = f.Get("response_url")
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("status %d: %s", resp.StatusCode, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), &a); err != nil {
		return a, fmt.Errorf("answer %q: %v", buf.Bytes(), err)
	}
	return a, nil
}

// tryFinal is the command's final answer and when it came (since the request was sent), or an
// error when no answer came through response_url within wait.
func (s *served) tryFinal(a slashAnswer, sent time.Time, wait time.Duration) (string, time.Duration, error) {
	if a.Text != bot.WorkingText {
		return a.Text, a.Took, nil
	}
	u, _ := url.Parse(a.ResponseURL)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		s.slack.mu.Lock()
		for _, p := range s.slack.responses {
			if p.Path == u.Path {
				s.slack.mu.Unlock()
				return p.Text, time.Since(sent), nil
			}
		}
		s.slack.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("no answer through response_url within %s", wait)
}

// do sends a command and returns its final answer, failing the test on a transport error or a
// late HTTP answer.
func (s *served) do(t *testing.T, user, text string) string {
	t.Helper()
	sent := time.Now()
	a, err := s.trySend(user, "C0OPS", text)
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	if a.Took >= 3*time.Second {
		t.Errorf("%s: HTTP answer after %s, want < 3s", text, a.Took)
	}
	final, _, err := s.tryFinal(a, sent, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	return final
}

// recordFields are the fields every state record has (state.recordFields plus version).
var recordFields = []string{"phase", "version", "since", "by", "reason", "request_id", "cutover_at", "confidence_days"}

// checkWhole asserts the state hash of migration name has every field and that the audit
// stream's last entry led to its phase and version.
func checkWhole(t *testing.T, rdb redis.UniversalClient, prefix, name string) (phase string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	base := prefix + ":{" + name + "}:"
	rec, err := rdb.HGetAll(ctx, base+"state").Result()
	if err != nil {
		t.Fatalf("HGETALL state: %v", err)
	}
	for _, f := range recordFields {
		if _, ok := rec[f]; !ok {
			t.Errorf("state hash has no %q field: %v", f, rec)
		}
	}
	last, err := rdb.XRevRangeN(ctx, base+"audit", "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("last audit entry: %v %v", last, err)
	}
	if to := last[0].Values["to"]; to != rec["phase"] {
		t.Errorf("last audit entry goes to %v, the state is in %q", to, rec["phase"])
	}
	if v := last[0].Values["version"]; v != rec["version"] {
		t.Errorf("last audit entry has version %v, the state %q", v, rec["version"])
	}
	return rec["phase"]
}

// answerKind sorts a final answer: the ones a drill may legitimately see.
func answerKind(text string) string {
	switch {
	case strings.Contains(text, "state store (Redis)"):
		return "unavailable"
	case strings.Contains(text, "moved to cutover"):
		return "cutover"
	case strings.Contains(text, "rolled back to proxied"):
		return "rollback"
	case strings.Contains(text, "nothing changed"):
		return "refused"
	case strings.Contains(text, "drill: phase"):
		return "status"
	}
	return "other"
}

// TestDrillRedisKilled kills Redis (SIGKILL) under load and restarts it on the same port: every
// request is answered within 3 seconds, commands work again without restarting the bot, and the
// record is whole.
func TestDrillRedisKilled(t *testing.T) {
	port := drillPort(t)
	dir := t.TempDir()
	persist := []string{"--appendonly", "yes", "--appendfsync", "always", "--dir", dir}
	rs := startRedisServer(t, port, persist...)
	prefix := testredis.Prefix()
	f := newFakeSlack(t)
	s := startDrillServe(t, f, drillConfig(prefix), map[string]string{"REDIS_URL": "redis://" + rs.addr() + "/0"})
	if text := s.do(t, "U0ADMIN", "init"); !strings.Contains(text, "drill") {
		t.Fatalf("init: %q", text)
	}

	// Load: 8 workers for 4 seconds, each request status, cutover or rollback. Redis is killed
	// at 1 s and restarted at 2.5 s. Every transition is announced in the channel, and posts
	// into one channel are paced at one a second: a transition's final answer waits for its
	// announcement, so only the HTTP answer and read-only answers are held to 3 seconds.
	const workers, loadFor = 8, 4 * time.Second
	type outcome struct {
		text      string
		kind      string
		sent      time.Duration // since start
		httpTook  time.Duration
		finalTook time.Duration
		err       error
	}
	var mu sync.Mutex
	var outcomes []outcome
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Since(start) < loadFor; i++ {
				text := []string{"status", "cutover", "rollback drill under load", "status"}[(w+i)%4]
				user := "U0OPS"
				sent := time.Now()
				a, err := s.trySend(user, "C0DRILL", text)
				o := outcome{text: text, sent: sent.Sub(start), httpTook: a.Took, err: err}
				if err == nil {
					o.text, o.finalTook, o.err = s.tryFinal(a, sent, 10*time.Second)
					o.kind = answerKind(o.text)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	rs.kill()
	killedAt := time.Since(start)
	time.Sleep(1500 * time.Millisecond)
	rs = startRedisServer(t, port, persist...) // same port, same AOF
	restartedAt := time.Since(start)
	wg.Wait()

	kinds := map[string]int{}
	var maxHTTP, maxFinal, maxAnnounced time.Duration
	recovered := time.Duration(-1) // from the restart to the first status answered after it
	for _, o := range outcomes {
		if o.err != nil {
			t.Errorf("%s: %v", o.text, o.err)
			continue
		}
		kinds[o.kind]++
		maxHTTP = max(maxHTTP, o.httpTook)
		if o.httpTook >= 3*time.Second {
			t.Errorf("%s: HTTP answer after %s, want < 3s", o.text, o.httpTook)
		}
		if o.kind == "status" && o.sent >= restartedAt {
			if r := o.sent + o.finalTook - restartedAt; recovered < 0 || r < recovered {
				recovered = r
			}
		}
		if o.kind == "cutover" || o.kind == "rollback" {
			maxAnnounced = max(maxAnnounced, o.finalTook) // waited for its paced announcement
			continue
		}
		maxFinal = max(maxFinal, o.finalTook)
		if o.finalTook >= 3*time.Second {
			t.Errorf("%s: final answer after %s, want < 3s", o.text, o.finalTook)
		}
		if o.kind == "other" {
			t.Errorf("%s: unexpected answer %q", o.text, o.text)
		}
	}
	t.Logf("killed at %s, restarted at %s; %d requests: %v; slowest HTTP answer %s, slowest final answer %s (%s for a transition waiting for its paced announcement); first status answered %s after the restart",
		killedAt.Round(time.Millisecond), restartedAt.Round(time.Millisecond), len(outcomes), kinds, maxHTTP.Round(time.Millisecond),
		maxFinal.Round(time.Millisecond), maxAnnounced.Round(time.Millisecond), recovered.Round(time.Millisecond))
	if recovered < 0 || recovered > 5*time.Second {
		t.Errorf("no status answered within 5s of the restart (first after %s)", recovered)
	}
	if kinds["unavailable"] == 0 {
		t.Errorf("no answer said the state store is unavailable: was Redis really down under load?")
	}

	// Back without restarting the bot: every command works.
	if text := s.do(t, "U0VIEW", "status"); !strings.Contains(text, "drill: phase") {
		t.Fatalf("status after the drill: %q", text)
	}
	rdb := drillClient(t, rs.addr())
	phase := checkWhole(t, rdb, prefix, "drill")
	next, want := "cutover", "moved to cutover"
	if phase == "cutover" {
		next, want = "rollback after the drill", "rolled back"
	}
	for _, c := range []struct{ user, text, want string }{
		{"U0VIEW", "status", "drill: phase " + phase},
		{"U0OPS", next, want},
		{"U0VIEW", "history 3", "drill: last 3 events"},
	} {
		if text := s.do(t, c.user, c.text); !strings.Contains(text, c.want) {
			t.Errorf("after recovery, %s: %q, want %q", c.text, text, c.want)
		}
	}
	checkWhole(t, rdb, prefix, "drill")
}

// TestDrillThreeBots runs three bots (each its own run and listener) on one Redis and sends 30
// concurrent cutover and rollback commands spread over them: the audit stream matches the
// successful answers one for one and the final phase matches its last entry.
func TestDrillThreeBots(t *testing.T) {
	rs := startRedisServer(t, drillPort(t))
	prefix := testredis.Prefix()
	f := newFakeSlack(t)
	env := map[string]string{"REDIS_URL": "redis://" + rs.addr() + "/0"}
	var bots []*served
	for range 3 {
		bots = append(bots, startDrillServe(t, f, drillConfig(prefix), env))
	}
	if text := bots[0].do(t, "U0ADMIN", "init"); !strings.Contains(text, "drill") {
		t.Fatalf("init: %q", text)
	}

	const n = 30
	texts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := bots[i%3]
			cmd := "cutover"
			if i%2 == 1 {
				cmd = fmt.Sprintf("rollback drill %d", i)
			}
			sent := time.Now()
			a, err := s.trySend("U0OPS", "C0DRILL", cmd) // in the channel: no posts to pace
			if err == nil {
				if a.Took >= 3*time.Second {
					err = fmt.Errorf("HTTP answer after %s", a.Took)
				} else {
					texts[i], _, err = s.tryFinal(a, sent, 10*time.Second)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	kinds := map[string]int{}
	for i, text := range texts {
		if errs[i] != nil {
			t.Errorf("command %d: %v", i, errs[i])
			continue
		}
		k := answerKind(text)
		kinds[k]++
		if k != "cutover" && k != "rollback" && k != "refused" {
			t.Errorf("command %d: unexpected answer %q", i, text)
		}
	}

	rdb := drillClient(t, rs.addr())
	ctx := context.Background()
	entries, err := rdb.XRange(ctx, prefix+":{drill}:audit", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]int{}
	for _, e := range entries {
		if e.Values["result"] == "ok" {
			audited[fmt.Sprint(e.Values["event"])]++
		}
	}
	t.Logf("answers %v; audit entries %v", kinds, audited)
	if kinds["cutover"] != audited["cutover"] || kinds["rollback"] != audited["rollback"] {
		t.Errorf("answers: %d moved to cutover, %d rolled back; audit: %d cutover, %d rollback; want them equal",
			kinds["cutover"], kinds["rollback"], audited["cutover"], audited["rollback"])
	}
	if kinds["cutover"] == 0 {
		t.Errorf("no cutover succeeded")
	}
	if d := kinds["cutover"] - kinds["rollback"]; d != 0 && d != 1 {
		t.Errorf("%d cutovers and %d rollbacks succeeded: from proxied they must alternate", kinds["cutover"], kinds["rollback"])
	}
	phase := checkWhole(t, rdb, prefix, "drill")
	if want := map[bool]string{true: "cutover", false: "proxied"}[kinds["cutover"] > kinds["rollback"]]; phase != want {
		t.Errorf("final phase %q, want %q after the successful answers", phase, want)
	}
}

// TestDrillFlushed flushes Redis behind the bot's back: status reports the loss, mutating
// commands are refused, and nothing recreates the state.
func TestDrillFlushed(t *testing.T) {
	rs := startRedisServer(t, drillPort(t))
	prefix := testredis.Prefix()
	f := newFakeSlack(t)
	s := startDrillServe(t, f, drillConfig(prefix), map[string]string{"REDIS_URL": "redis://" + rs.addr() + "/0"})
	s.do(t, "U0ADMIN", "init")
	if text := s.do(t, "U0OPS", "cutover"); !strings.Contains(text, "moved to cutover") {
		t.Fatalf("cutover: %q", text)
	}
	rdb := drillClient(t, rs.addr())
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	stateKey := prefix + ":{drill}:state"

	if text := s.do(t, "U0VIEW", "status"); !strings.Contains(text, "no state in Redis") || !strings.Contains(text, "Redis lost everything about it") {
		t.Errorf("status after FLUSHALL: %q, want it to report the state loss", text)
	}
	for _, c := range []struct{ user, text string }{
		{"U0OPS", "cutover"},
		{"U0OPS", "rollback flushed"},
		{"U0ADMIN", "cutover force flushed anyway"},
		{"U0ADMIN", "extend 3 flushed"},
		{"U0ADMIN", "decommission"},
		{"U0ADMIN", "decommission confirm decommission source.drill.example.org"},
		{"U0VIEW", "check"},
	} {
		text := s.do(t, c.user, c.text)
		if !strings.Contains(text, "no state in Redis") {
			t.Errorf("%s after FLUSHALL: %q, want a refusal that names the lost state", c.text, text)
		}
		if n, err := rdb.Exists(ctx, stateKey).Result(); err != nil || n != 0 {
			t.Errorf("after %s: the state key exists (%d, %v): it was recreated", c.text, n, err)
		}
	}
	if keys, _ := rdb.Keys(ctx, prefix+":*").Result(); len(keys) > 0 {
		t.Errorf("keys written after FLUSHALL: %v, want none", keys)
	}
	// An admin restores it.
	if text := s.do(t, "U0ADMIN", "init drill cutover "+time.Now().UTC().Format("2006-01-02")); !strings.Contains(text, "drill") {
		t.Errorf("init after the loss: %q", text)
	}
	if text := s.do(t, "U0VIEW", "status"); !strings.Contains(text, "drill: phase cutover") {
		t.Errorf("status after init: %q", text)
	}
}

// TestDrillCluster runs the core flow on a three-node Redis Cluster on loopback.
func TestDrillCluster(t *testing.T) {
	needTool(t, "redis-server")
	needTool(t, "redis-cli")
	dir := t.TempDir()
	var nodes []*redisProc
	used := map[int]bool{}
	for i := range 3 {
		port := drillPort(t)
		for used[port] {
			port = drillPort(t)
		}
		used[port] = true
		nodes = append(nodes, startRedisServer(t, port, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)), "--dir", dir))
	}
	args := []string{"--cluster", "create"}
	for _, n := range nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		rdb := drillClient(t, n.addr())
		waitFor(t, 10*time.Second, "cluster_state:ok on "+n.addr(), func() bool {
			info, err := rdb.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}

	prefix := testredis.Prefix()
	f := newFakeSlack(t)
	redisURL := fmt.Sprintf("redis://%s?addr=%s&addr=%s", nodes[0].addr(), nodes[1].addr(), nodes[2].addr())
	s := startDrillServe(t, f, drillConfig(prefix), map[string]string{"REDIS_URL": redisURL})
	for _, c := range []struct{ user, text, want string }{
		{"U0ADMIN", "init", "drill"},
		{"U0VIEW", "status", "drill: phase proxied"},
		{"U0OPS", "cutover", "drill moved to cutover"},
		{"U0VIEW", "status", "drill: phase cutover, day 1 of 14"},
		{"U0OPS", "rollback cluster drill", "drill rolled back to proxied"},
		{"U0VIEW", "history", "drill: last 3 events"},
	} {
		if text := s.do(t, c.user, c.text); !strings.Contains(text, c.want) {
			t.Errorf("%s on the cluster: %q, want %q", c.text, text, c.want)
		}
	}
	crdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{nodes[0].addr(), nodes[1].addr(), nodes[2].addr()}, DisableIdentity: true})
	defer crdb.Close()
	checkWhole(t, crdb, prefix, "drill")
}
