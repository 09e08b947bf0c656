package bot

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/slack-go/slack"

	"github.com/migrationbot/migrationbot/commands"
)

// Metrics are migrationbot's Prometheus metrics, in a registry of their own (no global state).
// Every method is safe on a nil *Metrics, which records nothing, so the pieces that count
// (Server, SlackPoster, Scheduler...) work without them.
//
// Names:
//
//	migrationbot_commands_total{command,result}         commands answered; result ok|refused|error
//	migrationbot_command_duration_seconds{command}      time to answer a command (histogram)
//	migrationbot_transitions_total{event}               phase changes and other announced changes
//	migrationbot_reports_posted_total{migration}        scheduled reports posted
//	migrationbot_check_results_total{check,status}      verification check results
//	migrationbot_interactions_total{kind}               button clicks and modal submissions
//	migrationbot_slack_api_errors_total{method}         failed Slack Web API / response_url calls
//	migrationbot_slack_rate_limited_total{method}       HTTP 429 answers from Slack
//	migrationbot_redis_errors_total                     failed Redis commands
//
// plus the Go runtime and process collectors (go_*, process_*).
type Metrics struct {
	reg          *prometheus.Registry
	commands     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	transitions  *prometheus.CounterVec
	reports      *prometheus.CounterVec
	checkResults *prometheus.CounterVec
	interactions *prometheus.CounterVec
	slackErrors  *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	redisErrors  prometheus.Counter
}

// NewMetrics returns the metrics registered in a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_commands_total",
			Help: "Commands answered, by subcommand and result (ok, refused, error).",
		}, []string{"command", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "migrationbot_command_duration_seconds",
			Help:    "Time to answer a command, by subcommand.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120},
		}, []string{"command"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_transitions_total",
			Help: "Announced changes of a migration (init, cutover, rollback, decommission, extend), by event.",
		}, []string{"event"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_reports_posted_total",
			Help: "Scheduled reports posted, by migration.",
		}, []string{"migration"}),
		checkResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_check_results_total",
			Help: "Verification check results, by check id and status (pass, warn, fail, skip).",
		}, []string{"check", "status"}),
		interactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_interactions_total",
			Help: "Button clicks and modal submissions, by kind.",
		}, []string{"kind"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_slack_api_errors_total",
			Help: "Failed calls to the Slack Web API or a response_url (429s included), by method.",
		}, []string{"method"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "migrationbot_slack_rate_limited_total",
			Help: "HTTP 429 (rate limited) answers from Slack, by method.",
		}, []string{"method"}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "migrationbot_redis_errors_total",
			Help: "Redis commands that failed (a missing key is not a failure).",
		}),
	}
	m.reg.MustRegister(m.commands, m.latency, m.transitions, m.reports, m.checkResults,
		m.interactions, m.slackErrors, m.rateLimited, m.redisErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live, for tests and for more collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in the Prometheus text format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Command records one answered command: its subcommand (from text), result and duration; the
// checks it ran; and, for an announced change, a transition.
func (m *Metrics) Command(text string, resp commands.Response, err error, took time.Duration) {
	if m == nil {
		return
	}
	name := commandName(text)
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case resp.Failed:
		result = "refused"
	}
	m.commands.WithLabelValues(name, result).Inc()
	m.latency.WithLabelValues(name).Observe(took.Seconds())
	if resp.Announce && !resp.Failed && err == nil {
		m.transitions.WithLabelValues(strings.TrimSuffix(name, "_confirm")).Inc()
	}
	m.Checks(resp)
}

// Checks counts the check results of resp.
func (m *Metrics) Checks(resp commands.Response) {
	if m == nil {
		return
	}
	for _, r := range resp.Checks {
		m.checkResults.WithLabelValues(r.ID, string(r.Status)).Inc()
	}
}

// ReportPosted counts a posted scheduled report and its check results.
func (m *Metrics) ReportPosted(rep commands.ScheduledReport) {
	if m == nil {
		return
	}
	m.reports.WithLabelValues(rep.Migration).Inc()
	m.Checks(rep.Response)
}

// Interaction counts a button click or a modal submission of the given kind.
func (m *Metrics) Interaction(kind string) {
	if m != nil {
		m.interactions.WithLabelValues(kind).Inc()
	}
}

// SlackError counts a failed call to Slack (method such as "chat.postMessage", "views.open",
// "response_url"); a 429 counts as rate limited as well. A nil err counts nothing.
func (m *Metrics) SlackError(method string, err error) {
	if m == nil || err == nil {
		return
	}
	m.slackErrors.WithLabelValues(method).Inc()
	var rle *slack.RateLimitedError
	var sce slack.StatusCodeError
	if errors.As(err, &rle) || errors.As(err, &sce) && sce.Code == http.StatusTooManyRequests {
		m.rateLimited.WithLabelValues(method).Inc()
	}
}

// RedisError counts a failed Redis command.
func (m *Metrics) RedisError() {
	if m != nil {
		m.redisErrors.Inc()
	}
}

// commandName is the subcommand of a command's text, or "invalid": a bounded label.
func commandName(text string) string {
	p, err := commands.Parse(text, nil)
	if err != nil || p.Sub == nil {
		return "invalid"
	}
	name := p.Sub.Name
	if name == "decommission" {
		// "decommission confirm <phrase>" or "decommission <migration> confirm <phrase>"
		for i := 0; i < len(p.Args) && i < 2; i++ {
			if strings.EqualFold(p.Args[i], "confirm") {
				return "decommission_confirm"
			}
		}
	}
	return name
}
