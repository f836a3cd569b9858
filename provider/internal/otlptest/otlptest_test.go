package otlptest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func ctxTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestReceivesSpans(t *testing.T) {
	tests := []struct {
		name        string
		compression otlptracehttp.Compression
	}{
		{name: "plain protobuf", compression: otlptracehttp.NoCompression},
		{name: "gzip protobuf", compression: otlptracehttp.GzipCompression},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReceiver(t)
			exp, err := otlptracehttp.New(ctxTimeout(t), otlptracehttp.WithEndpointURL(r.TracesURL()),
				otlptracehttp.WithCompression(tt.compression))
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
				sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "svc"))))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

			ctx, parent := tp.Tracer("scope-a").Start(context.Background(), "parent", trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.Int("n", 7), attribute.StringSlice("list", []string{"a", "b"})))
			_, child := tp.Tracer("scope-a").Start(ctx, "child", trace.WithSpanKind(trace.SpanKindClient))
			child.AddEvent("retry", trace.WithAttributes(attribute.String("reason", "event-text")))
			child.SetStatus(codes.Error, "boom-status")
			child.End()
			parent.End()

			if err := r.WaitForSpans(ctxTimeout(t), 2); err != nil {
				t.Fatal(err)
			}
			spans := r.Spans()
			if len(spans) != 2 {
				t.Fatalf("got %d spans", len(spans))
			}
			c, p := spans[0], spans[1]
			if c.Name != "child" || p.Name != "parent" {
				t.Fatalf("names %q %q", c.Name, p.Name)
			}
			if c.TraceID != p.TraceID || c.ParentSpanID != p.SpanID || p.ParentSpanID != "" || len(p.TraceID) != 32 {
				t.Errorf("ids: child %+v parent %+v", c, p)
			}
			if p.Kind != "server" || c.Kind != "client" || p.Scope != "scope-a" {
				t.Errorf("kinds %q %q scope %q", p.Kind, c.Kind, p.Scope)
			}
			if p.Attributes["n"] != "7" || p.Attributes["list"] != "[a,b]" || p.ResourceAttributes["service.name"] != "svc" {
				t.Errorf("attributes %v resource %v", p.Attributes, p.ResourceAttributes)
			}
			if len(c.Events) != 1 || c.Events[0].Name != "retry" || c.Events[0].Attributes["reason"] != "event-text" {
				t.Errorf("events %+v", c.Events)
			}
			if c.Status != (Status{Code: "error", Message: "boom-status"}) {
				t.Errorf("status %+v", c.Status)
			}
			text := r.AllText()
			for _, want := range []string{"event-text", "boom-status", "svc", "scope-a", "child"} {
				if !strings.Contains(text, want) {
					t.Errorf("AllText lacks %q", want)
				}
			}
			if strings.Contains(text, "never-sent") {
				t.Error("AllText invents text")
			}
			if got := r.SpansNamed("child"); len(got) != 1 {
				t.Errorf("SpansNamed(child) = %d spans", len(got))
			}
		})
	}
}

func TestReceivesMetrics(t *testing.T) {
	r := NewReceiver(t)
	exp, err := otlpmetrichttp.New(ctxTimeout(t), otlpmetrichttp.WithEndpointURL(r.MetricsURL()),
		otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	m := mp.Meter("scope")
	c, err := m.Int64Counter("requests")
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.Float64Histogram("latency", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3, metric.WithAttributes(attribute.String("outcome", "point-attr")))
	h.Record(context.Background(), 0.5)
	h.Record(context.Background(), 1.5)
	if err := mp.ForceFlush(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitForMetric(ctxTimeout(t), "latency"); err != nil {
		t.Fatal(err)
	}
	if names := r.MetricNames(); !slices.Equal(names, []string{"latency", "requests"}) {
		t.Errorf("MetricNames = %v", names)
	}
	for _, got := range r.Metrics() {
		switch got.Name {
		case "requests":
			if got.Kind != "sum" || !got.Monotonic || len(got.Points) != 1 || got.Points[0].Value != 3 || got.Points[0].Attributes["outcome"] != "point-attr" {
				t.Errorf("requests = %+v", got)
			}
		case "latency":
			if got.Kind != "histogram" || got.Unit != "s" || len(got.Points) != 1 || got.Points[0].Count != 2 || got.Points[0].Value != 2 {
				t.Errorf("latency = %+v", got)
			}
		}
	}
	if !strings.Contains(r.AllText(), "point-attr") {
		t.Error("AllText lacks the data point attribute")
	}
}

func TestJSONAndBadRequests(t *testing.T) {
	r := NewReceiver(t)
	tests := []struct {
		name, path, contentType, body string
		wantStatus                    int
		wantType                      string
	}{
		{name: "json traces", path: "/v1/traces", contentType: "application/json",
			body:       `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"json-span","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7"}]}]}]}`,
			wantStatus: http.StatusOK, wantType: "application/json"},
		{name: "empty protobuf metrics", path: "/v1/metrics", contentType: "application/x-protobuf", body: "",
			wantStatus: http.StatusOK, wantType: "application/x-protobuf"},
		{name: "garbage protobuf", path: "/v1/traces", contentType: "application/x-protobuf", body: "\xff\xff\xff",
			wantStatus: http.StatusBadRequest},
		{name: "unknown path", path: "/v1/other", contentType: "application/x-protobuf", wantStatus: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctxTimeout(t), http.MethodPost, r.URL()+tt.path, bytes.NewBufferString(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.contentType)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = resp.Body.Close() })
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
				t.Errorf("content type %q, want %q", resp.Header.Get("Content-Type"), tt.wantType)
			}
		})
	}
	spans := r.SpansNamed("json-span")
	if len(spans) != 1 || spans[0].TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("json span: %+v", spans)
	}
}

func TestFailWithAndWaitTimeout(t *testing.T) {
	r := NewReceiver(t)
	r.FailWith(http.StatusServiceUnavailable)
	resp, err := http.Post(r.TracesURL(), "application/x-protobuf", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || r.Requests("/v1/traces") != 1 {
		t.Errorf("status %d, requests %d", resp.StatusCode, r.Requests("/v1/traces"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.WaitForSpans(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForSpans on an empty receiver = %v, want deadline exceeded", err)
	}
	r.Close()
	r.Close() // idempotent
}
