package infisical

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
)

// route names the kind of Infisical call, for metrics: a small fixed set, never a key or a URL path.
type route string

const (
	routeGet   route = "get"   // read one secret
	routeList  route = "list"  // list a folder
	routeLogin route = "login" // any login method
)

var attrRoute = attribute.Key("route")

func (r route) attr() attribute.KeyValue { return attrRoute.String(string(r)) }

// instruments are the client's spans and metrics. Labels come from small fixed sets.
type instruments struct {
	tracer       trace.Tracer
	logins       metric.Int64Counter   // infisical.logins{status}
	calls        metric.Int64Counter   // infisical.calls{route, status}: every call sent, logins included
	refused      metric.Int64Counter   // infisical.calls.refused{route}: not sent, paused after a 429
	pauses       metric.Int64Counter   // infisical.rate_limit.pauses: pauses started or extended
	pauseSeconds metric.Float64Counter // infisical.rate_limit.pause: seconds of pause started
}

func newInstruments() instruments {
	meter := otel.Meter(telemetry.InstrumentationName)
	fallback := noop.NewMeterProvider().Meter("")
	// Only an invalid instrument name fails; a missing metric must not stop reading secrets.
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc))
		if err != nil {
			c, _ = fallback.Int64Counter(name)
		}
		return c
	}
	seconds, err := meter.Float64Counter("infisical.rate_limit.pause", metric.WithUnit("s"),
		metric.WithDescription("Seconds of pause started after Infisical answered 429, for every identity on its URL"))
	if err != nil {
		seconds, _ = fallback.Float64Counter("infisical.rate_limit.pause")
	}
	return instruments{
		tracer:       otel.Tracer(telemetry.InstrumentationName),
		logins:       counter("infisical.logins", "Logins to Infisical, by status"),
		calls:        counter("infisical.calls", "Calls sent to Infisical, by route (get, list, login) and status"),
		refused:      counter("infisical.calls.refused", "Calls not sent to Infisical because a 429 paused them, by route"),
		pauses:       counter("infisical.rate_limit.pauses", "Pauses of every call to an Infisical after it answered 429"),
		pauseSeconds: seconds,
	}
}
