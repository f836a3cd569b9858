package backend

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/access"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
)

// Span and attribute names of the backend's steps. Attributes name keys, decisions and results, never values.
const (
	spanAccess = "backend.access"
	spanCache  = "backend.cache"

	attrDecision    = attribute.Key("decision")
	attrCacheResult = attribute.Key("cache.result")

	metricCacheResults = "secrets.cache.results"
)

// instruments are created once per Backend from the global providers, which forward to the real ones once
// telemetry.Setup installs them.
type instruments struct {
	tracer       trace.Tracer
	cacheResults metric.Int64Counter
}

func newInstruments() instruments {
	counter, err := otel.Meter(telemetry.InstrumentationName).Int64Counter(metricCacheResults,
		metric.WithDescription("Cache lookups by result: hit, miss, coalesced or stale"))
	if err != nil {
		// Only an invalid instrument name fails; a missing metric must not stop serving secrets.
		counter, _ = noop.NewMeterProvider().Meter("").Int64Counter(metricCacheResults)
	}
	return instruments{tracer: otel.Tracer(telemetry.InstrumentationName), cacheResults: counter}
}

// startSpan starts a child span of the request's span, or none when that one does not record: telemetry is off, or
// the request is not sampled, in which case the SDK's default parent-based sampler would drop the child as well. A
// cache hit then costs no span.
func (b *Backend) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return b.tel.tracer.Start(ctx, name)
}

// noSpan is a span that records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// checkAccess asks the policy inside its own span, so that a trace shows who was denied and why.
func (b *Backend) checkAccess(ctx context.Context, policy *access.Policy, s access.Subject) (bool, string) {
	_, span := b.startSpan(ctx, spanAccess)
	defer span.End()
	ok, reason := policy.Check(s)
	decision := "allowed"
	if !ok {
		decision = "denied"
		span.SetAttributes(attribute.String("access.reason", reason))
	}
	span.SetAttributes(attrDecision.String(decision))
	return ok, reason
}

// cached runs one lookup of the memory tier (get) inside its own span; the shared-tier and Infisical calls that a
// miss starts are that span's children. Each lookup also counts towards secrets.cache.results, whose only label is
// the result: keys would make the metric's cardinality unbounded.
func cached[V any](b *Backend, ctx context.Context, get func(context.Context) (V, cache.Result, error)) (V, cache.Result, error) {
	ctx, span := b.startSpan(ctx, spanCache)
	defer span.End()
	v, result, err := get(ctx)
	if result != "" {
		span.SetAttributes(attrCacheResult.String(string(result)))
		b.tel.cacheResults.Add(ctx, 1, cacheResultSet(result))
	}
	if err != nil && !errors.Is(err, infisical.ErrNotFound) {
		span.SetStatus(codes.Error, err.Error())
	}
	return v, result, err
}

// cacheResultSets are the metric attributes of each cache result, built once: building an attribute set sorts and
// hashes it, which would cost every lookup an allocation.
var cacheResultSets = func() map[cache.Result]metric.MeasurementOption {
	sets := map[cache.Result]metric.MeasurementOption{}
	for _, r := range []cache.Result{cache.Hit, cache.Miss, cache.Coalesced, cache.Stale} {
		sets[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", string(r))))
	}
	return sets
}()

func cacheResultSet(r cache.Result) metric.MeasurementOption {
	if set, ok := cacheResultSets[r]; ok {
		return set
	}
	return metric.WithAttributes(attribute.String("result", string(r)))
}
