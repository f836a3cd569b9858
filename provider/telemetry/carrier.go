// Package telemetry sets up OpenTelemetry for the provider and carries W3C trace context over NATS headers.
package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// InstrumentationName names the tracer and meter every package of this module uses.
const InstrumentationName = "github.com/infisical-secrets-provider/infisical-secrets-provider"

// HeaderCarrier adapts nats.Header to propagation.TextMapCarrier.
type HeaderCarrier nats.Header

// Get returns the first value of key; W3C header names are lowercase on the wire, but be tolerant.
func (c HeaderCarrier) Get(key string) string {
	h := nats.Header(c)
	if v := h.Get(key); v != "" {
		return v
	}
	for k, vs := range h {
		if len(vs) > 0 && equalFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Extract returns ctx with the remote span context found in h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator().Extract(ctx, HeaderCarrier(h))
}

// propagator falls back to W3C trace context when nothing was installed globally, so that trace context crosses
// NATS even when this process exports nothing.
func propagator() propagation.TextMapPropagator {
	p := otel.GetTextMapPropagator()
	if len(p.Fields()) == 0 {
		return fallbackPropagator
	}
	return p
}

// fallbackPropagator is built once: Extract runs for every request.
var fallbackPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
