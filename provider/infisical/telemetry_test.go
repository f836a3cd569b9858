package infisical

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
)

// recordTelemetry installs in-memory global tracer and meter providers until the test ends.
var recordTelemetry = capture.Telemetry

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestTelemetry runs its rows in order on one client: only the first read logs in.
func TestTelemetry(t *testing.T) {
	rec, reader := recordTelemetry(t)
	fake := newFake(t)
	c := newClient(t, fake.URL, func(cfg *Config) { cfg.UpstreamTimeout = 2 * time.Second })

	type wantSpan struct {
		name, attempt, status string
		requestID, failed     bool
	}
	tests := []struct {
		name  string
		ref   SecretRef
		setup func()
		want  []wantSpan // in the order they end
	}{
		{name: "first read logs in under the caller's span", ref: rootRef("ROOT"), want: []wantSpan{
			{name: "infisical.login", status: "200"},
			{name: "infisical.read_secret", attempt: "1", status: "200"},
		}},
		{name: "a retried 503 is one span per attempt", ref: rootRef("ROOT"),
			setup: func() { fake.FailNext(fakeinfisical.RouteGetSecret, 1, 503, "upstream sad", nil) },
			want: []wantSpan{
				{name: "infisical.read_secret", attempt: "1", status: "503", requestID: true, failed: true},
				{name: "infisical.read_secret", attempt: "2", status: "200"},
			}},
		{name: "not found keeps its status and request id but is no failure", ref: rootRef("NOPE"), want: []wantSpan{
			{name: "infisical.read_secret", attempt: "1", status: "404", requestID: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			ctx, root := otel.Tracer("test").Start(ctxWithin(t, 10*time.Second), "request")
			_, err := c.GetSecret(ctx, tt.ref)
			root.End()
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetSecret: %v", err)
			}
			var got []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == root.SpanContext().TraceID() && s.Name() != "request" {
					got = append(got, s)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d spans in the caller's trace, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				s := got[i]
				if s.Name() != w.name || s.Parent().SpanID() != root.SpanContext().SpanID() {
					t.Errorf("span %d = %s under %v, want %s under the caller", i, s.Name(), s.Parent().SpanID(), w.name)
				}
				if a := spanAttr(s, "infisical.attempt"); a != w.attempt {
					t.Errorf("%s attempt = %q, want %q", w.name, a, w.attempt)
				}
				if st := spanAttr(s, "http.response.status_code"); st != w.status {
					t.Errorf("%s status = %q, want %q", w.name, st, w.status)
				}
				if id := spanAttr(s, "infisical.request_id"); (id != "") != w.requestID {
					t.Errorf("%s request id = %q, want one: %v", w.name, id, w.requestID)
				}
				if failed := s.Status().Code == codes.Error; failed != w.failed {
					t.Errorf("%s failed = %v, want %v", w.name, failed, w.failed)
				}
			}
		})
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, p := range sum.DataPoints {
				name := m.Name
				if r, ok := p.Attributes.Value("route"); ok {
					name += " " + r.AsString()
				}
				status, _ := p.Attributes.Value("status")
				counts[name+" "+status.AsString()] += p.Value
			}
		}
	}
	want := map[string]int64{"infisical.logins 200": 1, "infisical.calls login 200": 1, "infisical.calls get 200": 2,
		"infisical.calls get 503": 1, "infisical.calls get 404": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, "root-value") || strings.Contains(v, clientSecret) {
				t.Errorf("span %s attribute %s holds a secret", s.Name(), kv.Key)
			}
		}
		if strings.Contains(s.Status().Description, clientSecret) {
			t.Errorf("span %s status holds the client secret", s.Name())
		}
	}
}
