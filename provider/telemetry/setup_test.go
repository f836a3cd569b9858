package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/otlptest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testnet"
)

// syncBuffer collects log output written from other goroutines.
type syncBuffer = capture.Buffer

func newLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// keepGlobals restores the otel globals that Setup replaces, so tests do not leak providers into each other.
// setupCalled says whether the propagator and error handler will be replaced too (otel complains when one is
// set to its current value, and error handlers cannot be compared safely).
func keepGlobals(t *testing.T, setupCalled bool) {
	t.Helper()
	tp, mp, prop, eh := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator(), otel.GetErrorHandler()
	t.Cleanup(func() {
		// Setting a provider to its current value makes otel log a complaint.
		if otel.GetTracerProvider() != tp {
			otel.SetTracerProvider(tp)
		}
		if otel.GetMeterProvider() != mp {
			otel.SetMeterProvider(mp)
		}
		if setupCalled {
			otel.SetTextMapPropagator(prop)
			otel.SetErrorHandler(eh)
		}
	})
}

func setup(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	keepGlobals(t, true)
	tel, err := Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

const (
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
)

func traceparentHeader() nats.Header {
	h := nats.Header{}
	h.Set("traceparent", "00-"+parentTraceID+"-"+parentSpanID+"-01")
	return h
}

func TestSetupDeliversSpanWithResource(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	log, _ := newLogger(t)
	tel := setup(t, Config{
		ServiceName: "myapp-secrets", ServiceInstanceID: "inst-1", HostID: "NHOST", ServiceVersion: "1.2.3",
		TracesEnabled: true, TracesEndpoint: rcv.TracesURL(), Protocol: ProtocolHTTP, Logger: log,
	})

	_, span := startServerSpan(context.Background(), traceparentHeader(), "secrets.get", attribute.String("secret.key", "db"))
	span.End()
	if err := tel.Shutdown(timeout(t, 5*time.Second)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	spans := rcv.SpansNamed("secrets.get")
	if len(spans) != 1 {
		t.Fatalf("got %d spans named secrets.get, want 1 (all: %+v)", len(spans), rcv.Spans())
	}
	got := spans[0]
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wantRes := map[string]string{
		"service.name": "myapp-secrets", "service.instance.id": "inst-1", "host.id": "NHOST",
		"service.version": "1.2.3", "process.executable.name": filepath.Base(exe),
	}
	for k, v := range wantRes {
		if got.ResourceAttributes[k] != v {
			t.Errorf("resource %s = %q, want %q", k, got.ResourceAttributes[k], v)
		}
	}
	if got.Kind != "server" || got.TraceID != parentTraceID || got.ParentSpanID != parentSpanID {
		t.Errorf("span kind/trace/parent = %s/%s/%s, want server/%s/%s", got.Kind, got.TraceID, got.ParentSpanID, parentTraceID, parentSpanID)
	}
	if got.Attributes["secret.key"] != "db" || got.Scope != InstrumentationName {
		t.Errorf("attributes %v scope %q", got.Attributes, got.Scope)
	}
}

func TestMetricsReachReceiverAfterForceFlush(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	log, _ := newLogger(t)
	tel := setup(t, Config{ServiceName: "p", MetricsEnabled: true, MetricsEndpoint: rcv.MetricsURL(), Logger: log})

	meter := otel.Meter(InstrumentationName)
	requests, err := meter.Int64Counter("secrets.requests")
	if err != nil {
		t.Fatal(err)
	}
	latency, err := meter.Float64Histogram("secrets.request.duration", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	requests.Add(ctx, 2, metric.WithAttributes(attribute.String("outcome", "ok")))
	latency.Record(ctx, 0.02)
	if err := tel.ForceFlush(timeout(t, 5*time.Second)); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	if err := rcv.WaitForMetric(timeout(t, 5*time.Second), "secrets.requests"); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range rcv.Metrics() {
		if m.Name == "secrets.requests" && len(m.Points) == 1 && m.Points[0].Value == 2 && m.Points[0].Attributes["outcome"] == "ok" {
			found = true
		}
	}
	if !found {
		t.Errorf("no secrets.requests point with value 2 and outcome=ok in %+v", rcv.Metrics())
	}
	if names := rcv.MetricNames(); !contains(names, "secrets.request.duration") {
		t.Errorf("metric names %v lack the histogram", names)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCollectorDownDoesNotBlockAndWarnsOnce(t *testing.T) {
	log, logs := newLogger(t)
	tel := setup(t, Config{
		ServiceName: "p", TracesEnabled: true, MetricsEnabled: true,
		TracesEndpoint: "http://" + testnet.ClosedAddr(t) + "/v1/traces", MetricsEndpoint: "http://" + testnet.ClosedAddr(t) + "/v1/metrics", Logger: log,
	})
	counter, err := otel.Meter(InstrumentationName).Int64Counter("secrets.requests")
	if err != nil {
		t.Fatal(err)
	}
	// More spans than the queue holds: the excess must be dropped, not waited for.
	for i := range 3 * maxQueueSize {
		_, span := startServerSpan(context.Background(), nil, "secrets.get")
		span.End()
		counter.Add(context.Background(), 1)
		if i%1000 == 0 {
			// Several flushes means several failed exports per signal, yet only one warning each.
			if err := tel.ForceFlush(timeout(t, 10*time.Second)); err != nil {
				t.Errorf("ForceFlush reported an already-logged export failure: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}

	out := logs.String()
	for _, signal := range []string{"traces", "metrics"} {
		if n := countLines(out, "telemetry export failing", "signal="+signal); n != 1 {
			t.Errorf("%d export-failing warnings for %s, want 1; logs:\n%s", n, signal, out)
		}
	}
	if n := strings.Count(out, "level=WARN"); n != 2 {
		t.Errorf("%d warnings in total, want 2 (one per signal); logs:\n%s", n, out)
	}
}

var countLines = capture.CountLines

func TestExportRecoveryIsLoggedOnce(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	log, logs := newLogger(t)
	tel := setup(t, Config{ServiceName: "p", TracesEnabled: true, TracesEndpoint: rcv.TracesURL(), Logger: log})
	flush := func(name string) {
		t.Helper()
		_, span := startServerSpan(context.Background(), nil, name)
		span.End()
		if err := tel.ForceFlush(timeout(t, 5*time.Second)); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
	}

	rcv.FailWith(http.StatusBadRequest) // not retried by the exporter
	flush("lost-1")
	flush("lost-2")
	rcv.FailWith(0)
	flush("kept-1")
	flush("kept-2")

	out := logs.String()
	if n := countLines(out, "level=WARN", "telemetry export failing", "signal=traces"); n != 1 {
		t.Errorf("%d failing warnings, want 1; logs:\n%s", n, out)
	}
	if n := countLines(out, "level=INFO", "telemetry export recovered", "failed_exports=2"); n != 1 {
		t.Errorf("%d recovery lines with failed_exports=2, want 1; logs:\n%s", n, out)
	}
	if len(rcv.SpansNamed("lost-1")) != 0 || len(rcv.SpansNamed("kept-2")) != 1 {
		t.Errorf("spans received: %+v", rcv.Spans())
	}
}

func TestSetupDisabledInstallsOnlyThePropagator(t *testing.T) {
	keepGlobals(t, true)
	before := otel.GetTracerProvider()
	tel, err := Setup(context.Background(), Config{ServiceName: "p", TracesEndpoint: "http://127.0.0.1:1/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != before {
		t.Error("a tracer provider was installed with tracing disabled")
	}
	if fields := otel.GetTextMapPropagator().Fields(); !contains(fields, "traceparent") || !contains(fields, "baggage") {
		t.Errorf("propagator fields %v, want traceparent and baggage", fields)
	}
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Errorf("ForceFlush: %v", err)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	var nilTel *Telemetry
	if err := nilTel.Shutdown(context.Background()); err != nil {
		t.Errorf("nil Shutdown: %v", err)
	}
}

// recordSpans installs an in-memory tracer provider as the global one.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	keepGlobals(t, false)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	return rec
}

func TestServerSpanJoinsTheSendersTrace(t *testing.T) {
	tests := []struct {
		name       string
		header     nats.Header
		wantTrace  string // "" = a new trace
		wantParent string
	}{
		{name: "joins the sender's trace", header: traceparentHeader(), wantTrace: parentTraceID, wantParent: parentSpanID},
		{name: "header names are matched in any case", header: nats.Header{"Traceparent": {"00-" + parentTraceID + "-" + parentSpanID + "-01"}},
			wantTrace: parentTraceID, wantParent: parentSpanID},
		{name: "no headers starts a root span", header: nil},
		{name: "malformed traceparent starts a root span", header: nats.Header{"traceparent": {"00-zz-yy-01"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := recordSpans(t)
			ctx, span := startServerSpan(context.Background(), tt.header, "op", attribute.String("k", "v"))
			_, child := otel.Tracer("test").Start(ctx, "child")
			child.End()
			span.End()

			ended := rec.Ended()
			if len(ended) != 2 {
				t.Fatalf("%d spans ended, want 2", len(ended))
			}
			server, inner := ended[1], ended[0]
			if server.SpanKind() != trace.SpanKindServer {
				t.Errorf("kind %v, want server", server.SpanKind())
			}
			if inner.SpanContext().TraceID() != server.SpanContext().TraceID() {
				t.Error("child does not share the server span's trace")
			}
			gotTrace, gotParent := server.SpanContext().TraceID().String(), server.Parent().SpanID()
			if tt.wantTrace != "" {
				if gotTrace != tt.wantTrace || gotParent.String() != tt.wantParent {
					t.Errorf("trace/parent %s/%s, want %s/%s", gotTrace, gotParent, tt.wantTrace, tt.wantParent)
				}
			} else if server.Parent().IsValid() {
				t.Errorf("unexpected parent %v", server.Parent())
			}
		})
	}
}

func TestCarrierRoundTrip(t *testing.T) {
	ctx := Extract(context.Background(), traceparentHeader())
	out := nats.Header{}
	propagator().Inject(ctx, HeaderCarrier(out))
	if got := out.Get("traceparent"); got != "00-"+parentTraceID+"-"+parentSpanID+"-01" {
		t.Errorf("injected traceparent %q", got)
	}
}

func TestSlow_CollectorDownGRPC(t *testing.T) {
	log, logs := newLogger(t)
	tel := setup(t, Config{
		ServiceName: "p", TracesEnabled: true, Protocol: ProtocolGRPC, TracesEndpoint: "http://" + testnet.ClosedAddr(t), Logger: log,
	})
	for range 2 * maxQueueSize {
		_, span := startServerSpan(context.Background(), nil, "secrets.get")
		span.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}
	// The export keeps retrying in the background after Shutdown gave up; its failure is still reported once.
	eventually.True(t, "the export failure to be reported", func() bool {
		return countLines(logs.String(), "telemetry export failing", "signal=traces") > 0
	})
	if n := countLines(logs.String(), "telemetry export failing", "signal=traces"); n != 1 {
		t.Errorf("%d export-failing warnings, want 1; logs:\n%s", n, logs.String())
	}
}

// startServerSpan starts a server span as the secrets server and the host protocol do: a child of the trace context
// the sender put in h (if any).
func startServerSpan(ctx context.Context, h nats.Header, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(InstrumentationName).Start(Extract(ctx, h), name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}
