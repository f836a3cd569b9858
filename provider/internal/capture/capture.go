// Package capture collects what code under test emits: log output written from several goroutines, and the spans and
// metrics recorded through OpenTelemetry's global providers.
package capture

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Buffer is a bytes.Buffer safe for concurrent writers, such as a process's or a logger's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Telemetry installs in-memory tracer and meter providers as the global ones until the test ends. Tests using it
// must not run in parallel with other tests that use the global providers.
func Telemetry(t testing.TB) (*tracetest.SpanRecorder, *sdkmetric.ManualReader) {
	t.Helper()
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return rec, reader
}

// CountLines counts the lines of out that contain every one of needles, e.g. how often a warning was logged.
func CountLines(out string, needles ...string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, s := range needles {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}
