package secrets

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"log/slog"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
)

// logBuffer collects JSON log lines from several goroutines.
type logBuffer struct{ capture.Buffer }

// records returns the decoded log lines whose msg is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// installTelemetry points the global otel providers at in-memory ones for one test.
func installTelemetry(t *testing.T) (*tracetest.InMemoryExporter, *sdkmetric.ManualReader) {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prevT, prevM := otel.GetTracerProvider(), otel.GetMeterProvider()
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prevT)
		otel.SetMeterProvider(prevM)
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return spans, reader
}

func TestLogsTracesAndMetrics(t *testing.T) {
	spans, reader := installTelemetry(t)
	logs := &logBuffer{}
	f := newFixture(t, &testHandler{}, func(c *ServerConfig) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})

	const traceID = "4bf92f3577b34da6a3ce929b0e0e4736"
	hdr, data, hk := f.seal(f.id.request("annotated", `{"type":"t","properties":{"project":"p"}}`))
	hdr.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if body := f.open(f.raw(f.subject("get"), hdr, data), hk); !strings.Contains(string(body), "value-of-annotated") {
		t.Fatalf("body %s", body)
	}
	if reply := f.raw(f.subject("get"), nil, []byte("x")); !strings.Contains(string(reply.Data), "InvalidHeaders") {
		t.Fatalf("reply %s", reply.Data)
	}
	f.raw(f.subject("server_xkey"), nil, nil)
	if err := f.srv.Shutdown(testCtx(t)); err != nil { // flushes every log line and span
		t.Fatal(err)
	}

	// Logs: one line per get, with who asked for what and the handler's annotations; never the value.
	if strings.Contains(logs.String(), "value-of-annotated") {
		t.Errorf("secret value logged: %s", logs)
	}
	recs := logs.records(t, "secrets get")
	if len(recs) != 2 {
		t.Fatalf("%d get lines, want 2: %s", len(recs), logs)
	}
	ok, bad := recs[0], recs[1] // workers log in the order they finish
	if ok["outcome"] != "ok" {
		ok, bad = bad, ok
	}
	for k, want := range map[string]any{
		"level": "INFO", "op": "get", "outcome": "ok", "key": "annotated", "application": "my-app",
		"entity": f.id.entitySub, "entity_name": "counter", "issuer": mustPub(t, f.id), "tenant": "t1", "folder_depth": float64(2),
	} {
		if ok[k] != want {
			t.Errorf("ok line %s = %v, want %v", k, ok[k], want)
		}
	}
	if _, has := ok["latency"]; !has {
		t.Error("ok line without latency")
	}
	if bad["level"] != "WARN" || bad["outcome"] != "InvalidHeaders" || bad["reason"] != "request has no headers" {
		t.Errorf("bad-input line = %v", bad)
	}

	// Traces: a server span per get and server_xkey, the first a child of the caller's trace.
	var get, xkey *tracetest.SpanStub
	got := spans.GetSpans()
	for i := range got {
		switch got[i].Name {
		case "secrets get":
			if get == nil || got[i].Status.Code != codes.Error {
				get = &got[i]
			}
		case "secrets server_xkey":
			xkey = &got[i]
		}
	}
	if get == nil || xkey == nil {
		t.Fatalf("spans %v", got)
	}
	if get.SpanContext.TraceID().String() != traceID || get.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("get span not parented by the request's traceparent: %v / %v", get.SpanContext.TraceID(), get.Parent.SpanID())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range get.Attributes {
		attrs[kv.Key] = kv.Value
	}
	for k, want := range map[attribute.Key]string{
		"secrets.backend": "infisical", "secrets.key": "annotated", "secrets.application": "my-app",
		"secrets.entity.subject": f.id.entitySub, "secrets.entity.name": "counter", "secrets.outcome": "ok", "tenant": "t1",
	} {
		if attrs[k].AsString() != want {
			t.Errorf("span attribute %s = %q, want %q", k, attrs[k].AsString(), want)
		}
	}
	if get.Status.Code == codes.Error {
		t.Errorf("ok span has error status")
	}
	for _, s := range got {
		if s.Name == "secrets get" && s.SpanContext.SpanID() != get.SpanContext.SpanID() && s.Status.Code != codes.Error {
			t.Errorf("failed get span status = %v", s.Status)
		}
	}

	// Metrics: requests by operation and outcome, and their durations.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var histograms int
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name != "secrets.requests" {
					continue
				}
				for _, p := range d.DataPoints {
					op, _ := p.Attributes.Value("operation")
					out, _ := p.Attributes.Value("outcome")
					counts[op.AsString()+"/"+out.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				if m.Name == "secrets.request.duration" {
					histograms += len(d.DataPoints)
				}
			}
		}
	}
	want := map[string]int64{"get/ok": 1, "get/InvalidHeaders": 1, "server_xkey/ok": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("secrets.requests{%s} = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	if histograms != 3 {
		t.Errorf("%d duration series, want 3", histograms)
	}
}

func mustPub(t *testing.T, id *identity) string {
	t.Helper()
	p, err := id.issuer.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// With one worker and room for one waiting request, a third is refused at once and the waiting one is answered
// when its budget runs out, before any worker is free.
// With every worker busy and the queue full, a further request is refused at once rather than held where its budget
// would not be counted; a queued one is answered within its budget.
func TestQueueFullAndQueuedTimeout(t *testing.T) {
	entered, release := make(chan struct{}, 3), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		entered <- struct{}{}
		<-release
		return &Secret{Version: "1", StringSecret: strp("x")}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) {
		c.Workers, c.QueueSize, c.Budget = 1, 1, 300*time.Millisecond
	})
	send := func() *nats.Subscription {
		inbox := nats.NewInbox()
		sub, err := f.nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		hdr, data, _ := f.seal(f.id.request("db", ""))
		if err := f.nc.PublishMsg(&nats.Msg{Subject: f.subject("get"), Reply: inbox, Header: hdr, Data: data}); err != nil {
			t.Fatal(err)
		}
		return sub
	}
	first := send()
	<-entered
	queued, refused := send(), send()

	next := func(sub *nats.Subscription) string {
		t.Helper()
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		return string(m.Data)
	}
	if got := next(refused); got != `{"error":{"UpstreamError":"server busy: 1 requests waiting for a worker"}}` {
		t.Errorf("refused reply %s", got)
	}
	if got := next(queued); got != `{"error":{"UpstreamError":"timed out after 225ms"}}` {
		t.Errorf("queued reply %s", got)
	}
	if got := next(first); got != `{"error":{"UpstreamError":"timed out after 225ms"}}` {
		t.Errorf("first reply %s", got)
	}
	close(release)
	// The queued request is dropped by the worker without calling the handler again.
	if err := f.srv.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(entered); n != 0 {
		t.Errorf("handler ran %d more times for requests already answered", n)
	}
}
