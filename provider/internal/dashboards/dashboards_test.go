package dashboards

import (
	"strings"
	"testing"
)

func TestPromName(t *testing.T) {
	tests := []struct {
		name, unit, kind string
		monotonic        bool
		want             string
	}{
		{"secrets.requests", "", "sum", true, "secrets_requests_total"},
		{"secrets.request.duration", "s", "histogram", false, "secrets_request_duration_seconds"},
		{"infisical.rate_limit.pause", "s", "sum", true, "infisical_rate_limit_pause_seconds_total"},
		{"infisical.calls", "{call}", "sum", true, "infisical_calls_total"},
		{"requests.total", "1", "sum", true, "requests_total"},
		{"queue.size", "{request}", "sum", false, "queue_size"},
		{"cpu.utilization", "1", "gauge", false, "cpu_utilization_ratio"},
		{"http.server.duration_seconds", "s", "histogram", false, "http_server_duration_seconds"},
		{"memory.usage", "By", "gauge", false, "memory_usage_bytes"},
		{"throughput", "By/s", "gauge", false, "throughput_bytes_per_second"},
		{"db..latency", "ms", "histogram", false, "db_latency_milliseconds"},
		{"5xx.count", "", "sum", true, "_5xx_count_total"},
	}
	for _, tt := range tests {
		got, err := promName(tt.name, tt.unit, tt.kind, tt.monotonic)
		if err != nil || got != tt.want {
			t.Errorf("promName(%q, %q, %s, monotonic %v) = %q, %v; want %q", tt.name, tt.unit, tt.kind, tt.monotonic, got, err, tt.want)
		}
	}
	if _, err := promName("x", "furlong", "sum", true); err == nil {
		t.Error("an unknown unit was given a name")
	}
	if _, err := promName("x", "s", "exponential_histogram", false); err == nil {
		t.Error("an exponential histogram was given classic series")
	}
	for key, want := range map[string]string{"route": "route", "cache.result": "cache_result", "2xx": "key_2xx", "_x": "key_x", "__x": "__x"} {
		if got := labelName(key); got != want {
			t.Errorf("labelName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestParsePromQL(t *testing.T) {
	q, err := parsePromQL(`histogram_quantile(0.99, sum by (le, outcome) (rate(a_bucket{x="1", y=~"a|b",}[$__rate_interval])))
		/ on (job) group_left (instance) sum without (z) (b offset 5m) > bool 0 # comment c_total`)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.selectors) != 2 || q.selectors[0].metric != "a_bucket" || q.selectors[1].metric != "b" ||
		len(q.selectors[0].matchers) != 2 || q.selectors[0].matchers[1] != (matcher{"y", "=~", "a|b"}) {
		t.Errorf("selectors = %+v", q.selectors)
	}
	if got := strings.Join(q.grouping, ","); got != "le,outcome,job,instance,z" {
		t.Errorf("grouping = %s", got)
	}
	for _, bad := range []string{
		`sum(rate(a[5m])`, `rate(a[5m]))`, `rte(a[5m])`, `{__name__="a"}`, `a{b}`, `a{b=c}`, `a{b=="c"}`,
		`a{b="c"`, `sum by a (b)`, `a[5m`, `a > $threshold`, `a{b="c}`,
	} {
		if _, err := parsePromQL(bad); err == nil {
			t.Errorf("parsePromQL(%q) accepted it", bad)
		}
	}
}

// The dashboard and the alert rules name only metrics, labels and label values that the provider really emits:
// two replicas run through what the dashboard shows and export to an in-process OTLP collector, and what arrives is
// renamed by the rules above.
func TestDashboardAndAlertsMatchTheEmittedMetrics(t *testing.T) {
	cat, err := newCatalog(emit(t))
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := readFile("infisical-secrets-provider.json")
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := readFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}

	used := map[string]bool{} // OpenTelemetry instruments the dashboard shows
	t.Run("dashboard", func(t *testing.T) {
		queries, err := dashboardQueries(dashboard)
		if err != nil {
			t.Fatal(err)
		}
		if len(queries) < 20 {
			t.Fatalf("only %d queries found in the dashboard", len(queries))
		}
		for _, q := range queries {
			got, err := cat.check(q.expr)
			if err != nil {
				t.Errorf("%s: %v", q.where, err)
			}
			for _, m := range got.metrics {
				if s, ok := cat[m]; ok {
					used[s.otel] = true
				}
			}
		}
	})
	t.Run("every emitted metric is on the dashboard", func(t *testing.T) {
		for _, name := range cat.names() {
			if s := cat[name]; !used[s.otel] {
				t.Errorf("%s (%s) is emitted but no panel shows it", s.otel, name)
			}
		}
	})
	t.Run("alerts", func(t *testing.T) {
		rules, err := readRules(alerts)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if err := cat.checkRule(r); err != nil {
					t.Error(err)
				}
			}
		}
		if n < 5 {
			t.Errorf("only %d alert rules", n)
		}
	})

	// The check fails on what a dashboard author gets wrong.
	t.Run("mistakes are caught", func(t *testing.T) {
		for _, tt := range []struct{ expr, want string }{
			{`rate(secrets_request_total[5m])`, "metric secrets_request_total is not emitted"},
			{`rate(secrets_requests[5m])`, "metric secrets_requests is not emitted"},                                // no _total
			{`secrets_request_duration_bucket`, "metric secrets_request_duration_bucket is not emitted"},            // no _seconds
			{`infisical_rate_limit_pause_total`, "metric infisical_rate_limit_pause_total is not emitted"},          // no _seconds
			{`secrets_cache_results_total{cache_result="hit"}`, "has no label cache_result"},                        // a span attribute
			{`secrets_requests_total{status="ok"}`, "has no label status"},                                          // infisical_calls' label
			{`secrets_requests_total{outcome="OK"}`, "not seen to emit that value"},                                 // values are case-sensitive
			{`infisical_calls_total{le="1"}`, "has no label le"},                                                    // le only on _bucket
			{`sum by (route) (rate(secrets_requests_total[5m]))`, "label route in a by/on list is on none of"},      // grouping label
			{`histogram_quantile(0.9, sum by (le) (rate(secrets_request_duration_seconds[5m])))`, "is not emitted"}, // the bare histogram name
			{`sum(rate(secrets_requests_total[5m])`, "unbalanced"},                                                  // syntax
		} {
			_, err := cat.check(tt.expr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("check(%s) = %v; want an error with %q", tt.expr, err, tt.want)
			}
		}

		broken := strings.Replace(string(dashboard), "infisical_calls_refused_total", "infisical_calls_refused", 1)
		queries, err := dashboardQueries([]byte(broken))
		if err != nil {
			t.Fatal(err)
		}
		failed := 0
		for _, q := range queries {
			if _, err := cat.check(q.expr); err != nil {
				failed++
			}
		}
		if failed != 1 {
			t.Errorf("a dashboard naming infisical_calls_refused: %d failing queries, want 1", failed)
		}
		if _, err := dashboardQueries([]byte(strings.Replace(string(dashboard), "label_values(secrets_requests_total, job)",
			"label_values(job)", 1))); err == nil {
			t.Error("a variable over every metric's job label was accepted")
		}

		bad := rule{Alert: "X", Expr: `sum by (job) (rate(infisical_calls_total[5m])) > 0`,
			Labels: map[string]string{"severity": "warning"}, Annotations: map[string]string{"summary": "s",
				"description": "{{ $labels.route }} of {{ $labels.job }}"}}
		if err := cat.checkRule(bad); err == nil || !strings.Contains(err.Error(), "$labels.route") {
			t.Errorf("an annotation naming a label the alert aggregated away: %v", err)
		}
		if _, err := readRules([]byte("groups:\n  - name: g\n    rules:\n      - alert: X\n        expression: up\n")); err == nil {
			t.Error("a rule with a misspelt field was accepted")
		}
	})
}
