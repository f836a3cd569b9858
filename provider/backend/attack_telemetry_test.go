package backend

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// A request that is not sampled (its span does not record) costs no child spans, but its cache results are still
// counted, and Infisical is still read under the request's trace, so that the trace context reaches Infisical's side
// unchanged.
func TestAttackUnsampledRequestsAreCountedAndPropagated(t *testing.T) {
	rec, reader := recordTelemetry(t)
	trusted := testkeys.AccountKey(t)
	up := &fakeUpstream{}
	clk := newTestClock()
	b := telemetryBackend(t, trusted, up, clk.Now)
	t.Cleanup(b.Close)
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		Remote: true}) // no sampled flag: the default parent-based sampler records nothing under it
	for _, step := range []struct {
		advance time.Duration
		failing bool
	}{{0, false}, {0, false}, {time.Minute, true}} { // a miss, a hit, a stale value
		clk.Advance(step.advance)
		up.setFailing(step.failing)
		ctx, span := otel.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), unsampled), "request")
		if span.IsRecording() {
			t.Fatal("the request span records")
		}
		if _, err := b.Get(ctx, &secrets.Verified{Request: &secrets.Request{Key: "DB"},
			Entity: &wascap.Claims{Issuer: trusted, Subject: "MSUBJECT", Name: "api"}}); err != nil {
			t.Fatal(err)
		}
		span.End()
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded under an unsampled request", n)
	}
	if got := up.lastParent(); got.TraceID() != unsampled.TraceID() {
		t.Errorf("Infisical was read under trace %v, want the request's %v", got.TraceID(), unsampled.TraceID())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == metricCacheResults {
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					v, _ := p.Attributes.Value("result")
					got[v.AsString()] += p.Value
				}
			}
		}
	}
	if want := map[string]int64{"miss": 1, "hit": 1, "stale": 1}; !equalCounts(got, want) {
		t.Errorf("%s = %v, want %v", metricCacheResults, got, want)
	}
}
