package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ErrorTypeKey is the span attribute that carries an error's variant (OTel's error.type convention).
const ErrorTypeKey = attribute.Key("error.type")

// StartServerSpan starts a server span for a message received over NATS, as a child of the trace context the
// sender put in h (if any), so that provider spans join the host's trace.
func StartServerSpan(ctx context.Context, h nats.Header, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx = Extract(ctx, h)
	return otel.Tracer(InstrumentationName).Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrs...),
	)
}

// RecordError marks span as failed with err and its variant (e.g. "SecretNotFound"); a nil err does nothing.
// err's text lands in the trace, so it must never contain a secret value, which holds for this module's errors.
func RecordError(span trace.Span, err error, variant string) {
	if err == nil || span == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	if variant != "" {
		span.SetAttributes(ErrorTypeKey.String(variant))
	}
}
