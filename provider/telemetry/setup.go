package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Export tuning. Exports run on the SDK's own goroutines; these bound how long one export may hold them and how
// much telemetry waits in memory, never how long a request waits.
const (
	batchTimeout   = time.Second
	maxQueueSize   = 2048 // spans beyond this are dropped, never waited for
	exportTimeout  = 2 * time.Second
	metricInterval = 10 * time.Second
	// cardinalityLimit caps the attribute sets per instrument; excess goes to an overflow series.
	cardinalityLimit = 1000
	errorLogEvery    = time.Minute
)

// retry keeps transient collector hiccups from losing a batch while staying inside the export timeout.
var retry = struct{ initial, max, elapsed time.Duration }{250 * time.Millisecond, time.Second, exportTimeout}

// secondsBuckets suit latency histograms recorded in seconds (the OTel convention); the SDK's default buckets
// are meant for milliseconds.
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Telemetry owns the installed providers. The zero value and nil are no-ops.
type Telemetry struct {
	tp *sdktrace.TracerProvider
	mp *sdkmetric.MeterProvider
}

// Setup installs the W3C TraceContext+Baggage propagator and, for each enabled signal, a global provider that
// exports over OTLP. Exports happen off the request path: spans wait in a bounded queue (dropped when full) and
// metrics are read periodically, so an unreachable collector costs requests nothing; its failure is logged once
// per signal (and its recovery once).
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "telemetry")
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(&errorHandler{log: log, every: errorLogEvery, now: time.Now})
	if !cfg.Enabled() {
		return &Telemetry{}, nil
	}

	res := buildResource(cfg)
	t := &Telemetry{}
	if cfg.TracesEnabled {
		exp, err := newSpanExporter(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("create OTLP trace exporter for %s: %w", redactEndpoint(cfg.TracesEndpoint), err)
		}
		t.tp = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithBatcher(&spanExporter{SpanExporter: exp, health: newExportHealth("traces", cfg.TracesEndpoint, log)},
				sdktrace.WithBatchTimeout(batchTimeout),
				sdktrace.WithMaxQueueSize(maxQueueSize),
				sdktrace.WithExportTimeout(exportTimeout),
			),
		)
	}
	if cfg.MetricsEnabled {
		exp, err := newMetricExporter(ctx, cfg)
		if err != nil {
			if t.tp != nil {
				_ = t.tp.Shutdown(ctx) // nothing was exported yet; the caller gets the real error below
			}
			return nil, fmt.Errorf("create OTLP metric exporter for %s: %w", redactEndpoint(cfg.MetricsEndpoint), err)
		}
		readerOpts := []sdkmetric.PeriodicReaderOption{sdkmetric.WithTimeout(exportTimeout)}
		if _, set := os.LookupEnv("OTEL_METRIC_EXPORT_INTERVAL"); !set {
			readerOpts = append(readerOpts, sdkmetric.WithInterval(metricInterval))
		}
		reader := sdkmetric.NewPeriodicReader(
			&metricExporter{Exporter: exp, health: newExportHealth("metrics", cfg.MetricsEndpoint, log)}, readerOpts...)
		t.mp = sdkmetric.NewMeterProvider(
			sdkmetric.WithResource(res),
			sdkmetric.WithReader(reader),
			sdkmetric.WithCardinalityLimit(cardinalityLimit),
			sdkmetric.WithView(sdkmetric.NewView(
				sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
				sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: secondsBuckets}},
			)),
		)
	}
	if t.tp != nil {
		otel.SetTracerProvider(t.tp)
	}
	if t.mp != nil {
		otel.SetMeterProvider(t.mp)
	}
	log.Info("telemetry enabled", "traces", cfg.TracesEnabled, "metrics", cfg.MetricsEnabled, "protocol", protocolOf(cfg),
		"traces_endpoint", redactEndpoint(cfg.TracesEndpoint), "metrics_endpoint", redactEndpoint(cfg.MetricsEndpoint))
	return t, nil
}

// Shutdown flushes what is buffered and stops both providers, giving each the whole of ctx (the managed host kills
// the process soon after its shutdown request is answered). Export failures were already logged and are not
// returned again; an expired ctx is.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return t.both(
		func() error { return t.tp.Shutdown(ctx) },
		func() error { return t.mp.Shutdown(ctx) },
	)
}

// ForceFlush exports what is buffered now, bounded by ctx.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	return t.both(
		func() error { return t.tp.ForceFlush(ctx) },
		func() error { return t.mp.ForceFlush(ctx) },
	)
}

// both runs the trace and metric halves concurrently so that neither eats the other's share of a short deadline.
func (t *Telemetry) both(traces, metrics func() error) error {
	if t == nil {
		return nil
	}
	var wg sync.WaitGroup
	var terr, merr error
	if t.tp != nil {
		wg.Go(func() { terr = traces() })
	}
	if t.mp != nil {
		wg.Go(func() { merr = metrics() })
	}
	wg.Wait()
	if terr = dropReported(terr); terr != nil {
		terr = fmt.Errorf("traces: %w", terr)
	}
	if merr = dropReported(merr); merr != nil {
		merr = fmt.Errorf("metrics: %w", merr)
	}
	return errors.Join(terr, merr)
}

func protocolOf(cfg Config) string {
	if cfg.Protocol == ProtocolGRPC {
		return ProtocolGRPC
	}
	return ProtocolHTTP
}

// buildResource identifies this provider instance. It is merged over resource.Default (SDK info and
// OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME), the explicit values winning.
func buildResource(cfg Config) *resource.Resource {
	var attrs []attribute.KeyValue
	add := func(kv attribute.KeyValue) {
		if kv.Value.AsString() != "" {
			attrs = append(attrs, kv)
		}
	}
	add(semconv.ServiceName(cfg.ServiceName))
	add(semconv.ServiceInstanceID(cfg.ServiceInstanceID))
	add(semconv.HostID(cfg.HostID))
	add(semconv.ServiceVersion(cfg.ServiceVersion))
	if exe, err := os.Executable(); err == nil {
		add(semconv.ProcessExecutableName(filepath.Base(exe)))
	}
	own := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	merged, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return own // schema conflict: our identity matters more than the SDK's defaults
	}
	return merged
}

func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	timeoutFromEnv := envSet("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
	if cfg.Protocol == ProtocolGRPC {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{
			Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed})}
		if cfg.TracesEndpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.TracesEndpoint))
		}
		if !timeoutFromEnv {
			opts = append(opts, otlptracegrpc.WithTimeout(exportTimeout))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithRetry(otlptracehttp.RetryConfig{
		Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed})}
	if cfg.TracesEndpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(cfg.TracesEndpoint))
	}
	if !timeoutFromEnv {
		opts = append(opts, otlptracehttp.WithTimeout(exportTimeout))
	}
	return otlptracehttp.New(ctx, opts...)
}

func newMetricExporter(ctx context.Context, cfg Config) (sdkmetric.Exporter, error) {
	timeoutFromEnv := envSet("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")
	if cfg.Protocol == ProtocolGRPC {
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{
			Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed})}
		if cfg.MetricsEndpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(cfg.MetricsEndpoint))
		}
		if !timeoutFromEnv {
			opts = append(opts, otlpmetricgrpc.WithTimeout(exportTimeout))
		}
		return otlpmetricgrpc.New(ctx, opts...)
	}
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{
		Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed})}
	if cfg.MetricsEndpoint != "" {
		opts = append(opts, otlpmetrichttp.WithEndpointURL(cfg.MetricsEndpoint))
	}
	if !timeoutFromEnv {
		opts = append(opts, otlpmetrichttp.WithTimeout(exportTimeout))
	}
	return otlpmetrichttp.New(ctx, opts...)
}

func envSet(names ...string) bool {
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok && v != "" {
			return true
		}
	}
	return false
}
