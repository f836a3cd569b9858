package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// exportError marks an export failure that exportHealth has already reported, so that the global error handler
// and Shutdown do not report it again: a dead collector must show up once in the logs, not once per batch.
type exportError struct {
	signal string
	err    error
}

// Error is the exporter's own text, which already names the signal.
func (e *exportError) Error() string { return e.err.Error() }
func (e *exportError) Unwrap() error { return e.err }

func isReported(err error) bool {
	var ee *exportError
	return errors.As(err, &ee)
}

// dropReported removes already-logged export failures from err, keeping everything else.
func dropReported(err error) error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var kept []error
		for _, e := range joined.Unwrap() {
			if e = dropReported(e); e != nil {
				kept = append(kept, e)
			}
		}
		return errors.Join(kept...)
	}
	if isReported(err) {
		return nil
	}
	return err
}

// exportHealth logs the first failure of a signal's exports at WARN and the first success after failures at INFO.
type exportHealth struct {
	signal   string
	endpoint string
	log      *slog.Logger

	mu      sync.Mutex
	failing bool
	dropped int // failed exports since the warning, for the recovery message
}

func newExportHealth(signal, endpoint string, log *slog.Logger) *exportHealth {
	return &exportHealth{signal: signal, endpoint: redactEndpoint(endpoint), log: log}
}

func (h *exportHealth) observe(err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if h.failing {
			h.failing = false
			h.log.Info("telemetry export recovered", "signal", h.signal, "endpoint", h.endpoint,
				"failed_exports", h.dropped)
		}
		return nil
	}
	if !h.failing {
		h.failing = true
		h.dropped = 0
		h.log.Warn("telemetry export failing; telemetry is dropped until the collector is reachable",
			"signal", h.signal, "endpoint", h.endpoint, "error", err.Error())
	}
	h.dropped++
	return &exportError{signal: h.signal, err: err}
}

// redactEndpoint hides credentials that a collector URL might carry.
func redactEndpoint(endpoint string) string {
	if endpoint == "" {
		return "(from OTEL_* environment)"
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

type spanExporter struct {
	sdktrace.SpanExporter
	health *exportHealth
}

func (e *spanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	return e.health.observe(e.SpanExporter.ExportSpans(ctx, spans))
}

type metricExporter struct {
	sdkmetric.Exporter
	health *exportHealth
}

func (e *metricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	return e.health.observe(e.Exporter.Export(ctx, rm))
}

// errorHandler receives the SDK's other errors (bad options, instrument conflicts, ...). At most one line a
// minute, so a misbehaving SDK component cannot flood the logs.
type errorHandler struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (h *errorHandler) Handle(err error) {
	if err == nil || isReported(err) {
		return
	}
	h.mu.Lock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < h.every {
		h.suppressed++
		h.mu.Unlock()
		return
	}
	suppressed := h.suppressed
	h.last, h.suppressed = now, 0
	h.mu.Unlock()
	h.log.Warn("opentelemetry error", "error", fmt.Sprint(err), "suppressed_since_last", suppressed)
}
