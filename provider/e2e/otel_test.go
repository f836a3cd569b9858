package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/otlptest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testnet"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// The span names the provider emits; the e2e tests pin them because operators build dashboards on them.
const (
	spanGet      = "secrets get"
	spanAccess   = "backend.access"
	spanCache    = "backend.cache"
	spanList     = "infisical.list_secrets"
	spanLogin    = "infisical.login"
	spanHealth   = "wasmbus.health"
	spanShutdown = "wasmbus.shutdown"

	hostTraceID = "0af7651916cd43dd8448eb211c80319c"
	hostSpanID  = "b7ad6b7169203331"
)

// otelConfig is the host's otel_config pointing at endpoint over OTLP/HTTP.
func otelConfig(endpoint string) map[string]any {
	return map[string]any{"enable_observability": true, "observability_endpoint": endpoint, "protocol": "Http",
		"additional_ca_paths": []string{}, "trace_level": "info"}
}

// tracedGet sends a get carrying a W3C traceparent, which secrets.Client does not send (hosts do not either), and
// opens the sealed reply.
func tracedGet(t *testing.T, m *managed, ref hostsim.Ref, traceparent string) *secrets.Secret {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	serverKey, err := m.host.Secrets.ServerXKey(ctx)
	if err != nil {
		t.Fatalf("server_xkey: %v", err)
	}
	body, err := json.Marshal(m.host.Request(m.comp, ref))
	if err != nil {
		t.Fatal(err)
	}
	hk, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	hkPub, _ := hk.PublicKey()
	sealed, err := hk.Seal(body, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	hdr := nats.Header{}
	hdr.Set(secrets.HostXkeyHeader, hkPub)
	hdr.Set("traceparent", traceparent)
	reply := rawGet(t, m.nc, prefix+"."+secrets.DefaultAPIVersion+"."+backend+".get", hdr, sealed)
	respKey := reply.Header.Get(secrets.ResponseXkeyHeader)
	if respKey == "" {
		t.Fatalf("traced get failed: %s", reply.Data)
	}
	opened, err := hk.Open(reply.Data, respKey)
	if err != nil {
		t.Fatalf("open reply: %v", err)
	}
	var resp secrets.Response
	if err := json.Unmarshal(opened, &resp); err != nil || resp.Secret == nil {
		t.Fatalf("decode reply: %v (secret present: %v)", err, resp.Secret != nil)
	}
	return resp.Secret
}

// shutdownManaged sends our host's shutdown and waits for the reply and a clean exit.
func shutdownManaged(t *testing.T, m *managed) {
	t.Helper()
	raw, err := json.Marshal(map[string]string{"host_id": m.host.ID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.nc.RequestWithContext(ctx, m.subject("default.shutdown"), raw); err != nil {
		t.Fatalf("shutdown reply: %v", err)
	}
	if code, err := m.proc.Wait(5 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit = %d, %v; want 0\n%s", code, err, m.proc.Output())
	}
}

// secretTexts are the values that must never reach the telemetry pipeline.
func secretTexts(m *managed) map[string]string {
	seed, _ := m.hd["provider_xkey_private_key"].(string)
	return map[string]string{
		"client secret":      secret,
		"server xkey seed":   m.env["SERVER_XKEY_SEED"],
		"provider xkey seed": seed,
		"DB_PASSWORD value":  "v2-password",
		"TOKEN value":        "shop-token",
	}
}

func TestManagedExportsTracesAndMetricsToTheHostCollector(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	m := startManaged(t, func(hd hostsim.HostData) { hd["otel_config"] = otelConfig(rcv.URL()) })

	// One get joins the caller's trace and misses the cache (so its trace holds the login and the read); then a
	// miss and a hit without trace context, as hosts send them.
	traced := tracedGet(t, m, hostsim.Ref{Key: "/shop/TOKEN"}, "00-"+hostTraceID+"-"+hostSpanID+"-01")
	if traced.StringSecret == nil || *traced.StringSecret != "shop-token" {
		t.Fatalf("traced get value = %v", traced.StringSecret)
	}
	for range 2 {
		if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
			t.Fatalf("value = %q", got)
		}
	}
	shutdownManaged(t, m)

	// Everything is in the receiver already: the provider flushes before it answers the shutdown.
	gets := rcv.SpansNamed(spanGet)
	if len(gets) != 3 {
		t.Fatalf("%d %q spans, want 3; got %s", len(gets), spanGet, spanNames(rcv.Spans()))
	}
	var root otlptest.Span
	caches := map[string]int{}
	for _, s := range gets {
		if s.Kind != "server" || s.ResourceAttributes["service.name"] != providerKey {
			t.Errorf("get span kind %q service.name %q; want server, %q", s.Kind, s.ResourceAttributes["service.name"], providerKey)
		}
		for k, want := range map[string]string{
			"secrets.backend": backend, "secrets.outcome": "ok", "decision": "allowed",
			"secrets.entity.subject": m.comp.Subject, "secrets.entity.name": m.comp.Name,
		} {
			if got := s.Attributes[k]; got != want {
				t.Errorf("get span attribute %s = %q, want %q", k, got, want)
			}
		}
		caches[s.Attributes["cache"]]++
		if s.TraceID == hostTraceID {
			root = s
		}
	}
	if caches["miss"] != 2 || caches["hit"] != 1 {
		t.Errorf("cache results on get spans = %v, want 2 miss and 1 hit", caches)
	}
	if root.SpanID == "" {
		t.Fatalf("no get span in the caller's trace %s", hostTraceID)
	}
	if root.ParentSpanID != hostSpanID || root.Attributes["secrets.key"] != "/shop/TOKEN" {
		t.Errorf("traced get span parent %q key %q; want %q, /shop/TOKEN", root.ParentSpanID, root.Attributes["secrets.key"], hostSpanID)
	}

	// The traced get's steps hang under it: access check, cache lookup, and under the lookup the read (a list of
	// the key's folder: prefetch is on by default).
	byName := map[string]otlptest.Span{}
	for _, s := range rcv.Spans() {
		if s.TraceID == hostTraceID {
			byName[s.Name] = s
		}
	}
	tests := []struct {
		name, parent string
		attrs        map[string]string
	}{
		{name: spanAccess, parent: spanGet, attrs: map[string]string{"decision": "allowed"}},
		{name: spanCache, parent: spanGet, attrs: map[string]string{"cache.result": "miss"}},
		{name: spanList, parent: spanCache, attrs: map[string]string{"http.response.status_code": "200", "infisical.attempt": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := byName[tt.name]
			if !ok {
				t.Fatalf("no %q span in the caller's trace; spans there: %v", tt.name, keys(byName))
			}
			if want := byName[tt.parent].SpanID; s.ParentSpanID != want {
				t.Errorf("parent = %q, want the %q span %q", s.ParentSpanID, tt.parent, want)
			}
			for k, want := range tt.attrs {
				if got := s.Attributes[k]; got != want {
					t.Errorf("attribute %s = %q, want %q", k, got, want)
				}
			}
		})
	}
	// The start-up login races the first get, so its span may hang under either; it is there once either way.
	if logins := rcv.SpansNamed(spanLogin); len(logins) != 1 || logins[0].Attributes["http.response.status_code"] != "200" {
		t.Errorf("login spans = %+v, want one with status 200", logins)
	}
	for _, name := range []string{spanHealth, spanShutdown} {
		if len(rcv.SpansNamed(name)) == 0 {
			t.Errorf("no %q span: host-protocol messages must be traced", name)
		}
	}

	wantPoints := []struct {
		metric string
		attrs  map[string]string
		value  float64
	}{
		{metric: "secrets.requests", attrs: map[string]string{"operation": "get", "outcome": "ok"}, value: 3},
		{metric: "secrets.request.duration", attrs: map[string]string{"operation": "get", "outcome": "ok"}},
		{metric: "secrets.cache.results", attrs: map[string]string{"result": "miss"}, value: 2},
		{metric: "secrets.cache.results", attrs: map[string]string{"result": "hit"}, value: 1},
		{metric: "infisical.calls", attrs: map[string]string{"route": "list", "status": "200"}, value: 2},
		{metric: "infisical.calls", attrs: map[string]string{"route": "login", "status": "200"}, value: 1},
		{metric: "infisical.logins", attrs: map[string]string{"status": "200"}, value: 1},
	}
	for _, w := range wantPoints {
		if !hasPoint(rcv.Metrics(), w.metric, w.attrs, w.value) {
			t.Errorf("no %s point with %v and value %v; metrics: %v", w.metric, w.attrs, w.value, rcv.MetricNames())
		}
	}

	text := rcv.AllText()
	for what, leak := range secretTexts(m) {
		if leak != "" && strings.Contains(text, leak) {
			t.Errorf("the %s reached the telemetry pipeline", what)
		}
	}
}

// hasPoint reports whether some export holds a point of metric with exactly attrs; value 0 accepts any value
// (histograms carry a sum of latencies).
func hasPoint(metrics []otlptest.Metric, metric string, attrs map[string]string, value float64) bool {
	for _, m := range metrics {
		if m.Name != metric {
			continue
		}
	points:
		for _, p := range m.Points {
			if len(p.Attributes) != len(attrs) {
				continue
			}
			for k, v := range attrs {
				if p.Attributes[k] != v {
					continue points
				}
			}
			if value == 0 || p.Value == value {
				return true
			}
		}
	}
	return false
}

func spanNames(spans []otlptest.Span) string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	return fmt.Sprint(names)
}

func keys(m map[string]otlptest.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSlow_ManagedCollectorDownCostsRequestsNothing(t *testing.T) {
	m := startManaged(t, func(hd hostsim.HostData) { hd["otel_config"] = otelConfig("http://" + testnet.ClosedAddr(t)) })

	for i := range 5 {
		// The bound only catches a request waiting for an export (whose retries take seconds); a normal get takes
		// milliseconds.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := m.host.Fetch(ctx, m.comp, hostsim.Ref{Key: "DB_PASSWORD"})
		cancel()
		if err != nil || s.StringSecret == nil {
			t.Fatalf("get %d with the collector down: %v", i, err)
		}
	}
	// The span batch goes out within a second and fails; metrics only go out at shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.proc.WaitForOutput(ctx, "signal=traces"); err != nil {
		t.Fatalf("no export-failing warning for traces: %v\n%s", err, m.proc.Output())
	}
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("value after the failed export = %q", got)
	}
	shutdownManaged(t, m)

	out := m.proc.Output()
	for _, signal := range []string{"traces", "metrics"} {
		if n := countLines(out, "telemetry export failing", "signal="+signal); n > 1 {
			t.Errorf("%d export-failing warnings for %s, want at most one; output:\n%s", n, signal, out)
		}
	}
	if n := countLines(out, "telemetry export failing", "signal=traces"); n != 1 {
		t.Errorf("%d export-failing warnings for traces, want 1", n)
	}
}

var countLines = capture.CountLines

func TestServeFlushesTelemetryOnSIGTERM(t *testing.T) {
	tests := []struct {
		name        string
		env         []string
		wantService string
	}{
		{name: "default service name", wantService: "infisical-secrets-provider"},
		{name: "OTEL_SERVICE_NAME wins", env: []string{"OTEL_SERVICE_NAME=shop-secrets"}, wantService: "shop-secrets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := otlptest.NewReceiver(t)
			h := newHarness(t)
			env := append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL()}, tt.env...)
			for k, v := range h.env {
				env = append(env, k+"="+v)
			}
			cmd := exec.Command(hostsim.Binary(t), "serve")
			cmd.Env, cmd.Stdout, cmd.Stderr = env, h.logs, h.logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("serve output:\n%s", h.logs.String())
				}
			})
			eventually.True(t, "serve to answer server_xkey", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				_, err := secrets.NewClient(h.nc, prefix, backend).ServerXKey(ctx)
				return err == nil
			})
			if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
				t.Fatalf("value = %q", got)
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				exited <- err // for the cleanup
				if err != nil {
					t.Fatalf("serve exited with %v after SIGTERM", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serve did not exit within 10 s of SIGTERM")
			}
			gets := rcv.SpansNamed(spanGet)
			if len(gets) != 1 {
				t.Fatalf("%d %q spans after SIGTERM, want 1; got %s", len(gets), spanGet, spanNames(rcv.Spans()))
			}
			if got := gets[0].ResourceAttributes["service.name"]; got != tt.wantService {
				t.Errorf("service.name = %q, want %q", got, tt.wantService)
			}
			if !hasPoint(rcv.Metrics(), "secrets.requests", map[string]string{"operation": "get", "outcome": "ok"}, 1) {
				t.Errorf("no secrets.requests point for the get; metrics: %v", rcv.MetricNames())
			}
			if strings.Contains(rcv.AllText(), "v2-password") || strings.Contains(rcv.AllText(), secret) {
				t.Error("a secret reached the telemetry pipeline")
			}
		})
	}
}
