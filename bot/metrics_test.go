package bot

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// metricValue returns the value of the sample line `name{labels} value` in a scrape.
func metricValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(scrape)
	if m == nil {
		t.Errorf("no sample %s in the scrape", series)
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Errorf("sample %s: %v", series, err)
	}
	return v
}

// TestMetricsScrape runs a few signed slash commands and finds the counters moved: commands by
// name and result, the latency histogram, transitions, check results, Slack errors.
func TestMetricsScrape(t *testing.T) {
	w := newInterWorld(t) // two inits ran directly through the handler: not counted
	send := func(user, text string) {
		t.Helper()
		rec := newRespRecorder(t)
		resp, _, _ := signedPost(t, w.base, slashBody(user, "C0OPS", text, rec.srv.URL), nowTS(0), "", nil)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", text, resp.StatusCode)
		}
		if strings.HasPrefix(text, "check") {
			rec.wait(t) // slow: answered through response_url
		}
	}
	send("U0VIEW", "status alpha")
	send("U0VIEW", "status beta")
	send("U0VIEW", "cutover alpha")   // refused: not an operator
	send("U0VIEW", "frobnicate")      // refused: unknown subcommand
	send("U0OPS", "rollback alpha x") // a transition
	send("U0VIEW", "check beta")      // two check results
	send("U0ADMIN", "extend beta 3 waiting")

	code, text := scrape(t, w.base)
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	for series, want := range map[string]float64{
		`migrationbot_commands_total{command="status",result="ok"}`:                2,
		`migrationbot_commands_total{command="cutover",result="refused"}`:          1,
		`migrationbot_commands_total{command="invalid",result="refused"}`:          1,
		`migrationbot_commands_total{command="rollback",result="ok"}`:              1,
		`migrationbot_commands_total{command="check",result="ok"}`:                 1,
		`migrationbot_command_duration_seconds_count{command="status"}`:            2,
		`migrationbot_command_duration_seconds_count{command="rollback"}`:          1,
		`migrationbot_transitions_total{event="rollback"}`:                         1,
		`migrationbot_transitions_total{event="extend"}`:                           1,
		`migrationbot_check_results_total{check="dns",status="pass"}`:              1,
		`migrationbot_check_results_total{check="source",status="pass"}`:           1,
		`migrationbot_slack_api_errors_total{method="chat.postMessage"}`:           0,
		`migrationbot_command_duration_seconds_bucket{command="status",le="+Inf"}`: 2,
	} {
		if strings.Contains(series, "slack_api_errors") {
			if strings.Contains(text, series) {
				t.Errorf("%s present, want no Slack errors", series)
			}
			continue
		}
		if got := metricValue(t, text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if !strings.Contains(text, "go_goroutines") || !strings.Contains(text, "# HELP migrationbot_redis_errors_total") {
		t.Errorf("runtime collectors or the Redis error counter missing")
	}
}

func TestMetricsSlackErrorsAndNil(t *testing.T) {
	m := NewMetrics()
	m.SlackError("chat.postMessage", &slack.RateLimitedError{RetryAfter: time.Second})
	m.SlackError("chat.postMessage", errors.New("channel_not_found"))
	m.SlackError("response_url", slack.StatusCodeError{Code: http.StatusTooManyRequests, Status: "429"})
	m.SlackError("views.open", nil)
	m.RedisError()
	m.ReportPosted(commands.ScheduledReport{Response: commands.Response{Migration: "alpha"}})

	srv := &Server{Commands: &stubCommands{}, Metrics: m}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	text := rec.Body.String()
	for series, want := range map[string]float64{
		`migrationbot_slack_api_errors_total{method="chat.postMessage"}`:   2,
		`migrationbot_slack_rate_limited_total{method="chat.postMessage"}`: 1,
		`migrationbot_slack_rate_limited_total{method="response_url"}`:     1,
		`migrationbot_redis_errors_total`:                                  1,
		`migrationbot_reports_posted_total{migration="alpha"}`:             1,
	} {
		if got := metricValue(t, text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	// A nil *Metrics records nothing and does not panic; no /metrics route without metrics.
	var none *Metrics
	none.Command("status", commands.Response{}, nil, time.Second)
	none.SlackError("x", errors.New("y"))
	none.RedisError()
	none.ReportPosted(commands.ScheduledReport{})
	none.Interaction("check")
	rec = httptest.NewRecorder()
	(&Server{Commands: &stubCommands{}}).ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /metrics without metrics: %d, want 404", rec.Code)
	}
}

func TestCommandName(t *testing.T) {
	for text, want := range map[string]string{
		"status alpha":                        "status",
		"/migration rollback alpha dns broke": "rollback",
		"decommission beta":                   "decommission",
		"decommission beta confirm the words": "decommission_confirm",
		"decommission confirm the words":      "decommission_confirm",
		"":                                    "help",
		"nonsense":                            "invalid",
	} {
		if got := commandName(text); got != want {
			t.Errorf("commandName(%q) = %q, want %q", text, got, want)
		}
	}
}

// TestSchedulerCountsReports: the scheduler's Metrics counts each report it posts.
func TestSchedulerCountsReports(t *testing.T) {
	m := NewMetrics()
	s, err := NewScheduler(SchedulerConfig{
		Migrations: []ScheduledMigration{{Name: "alpha", Channel: "C1", Schedule: "@every 1h"}},
		Reports:    fixedReports{},
		Poster:     &schedPoster{},
		Metrics:    m,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.deliver(context.Background(), s.entries[0], time.Now().Truncate(time.Hour))
	rec := httptest.NewRecorder()
	(&Server{Commands: &stubCommands{}, Metrics: m}).ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	if got := metricValue(t, rec.Body.String(), `migrationbot_reports_posted_total{migration="alpha"}`); got != 1 {
		t.Errorf("reports posted = %v, want 1", got)
	}
}

type fixedReports struct{}

func (fixedReports) ScheduledReport(_ context.Context, name string, _ time.Time) (commands.ScheduledReport, error) {
	return commands.ScheduledReport{Response: commands.Response{Migration: name, Text: name + ": report"}}, nil
}

func mustRequest(t *testing.T, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
