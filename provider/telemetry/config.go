package telemetry

import (
	"log/slog"
	"net/url"
	"strings"
)

// DefaultServiceName names the service in standalone mode when no OTEL_* variable names it.
const DefaultServiceName = "infisical-secrets-provider"

// Protocol names accepted in Config.Protocol.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
)

// Config says what to export and where. The lead maps the host's otel_config (managed mode) or the OTEL_*
// environment (standalone mode) into it, then fills in the identity fields.
type Config struct {
	ServiceName, ServiceInstanceID, HostID, ServiceVersion string
	TracesEnabled, MetricsEnabled                          bool
	// TracesEndpoint and MetricsEndpoint are full URLs, or "" to let the exporters read OTEL_* endpoints.
	TracesEndpoint, MetricsEndpoint string
	Protocol                        string // ProtocolHTTP or ProtocolGRPC
	Logger                          *slog.Logger
}

// Enabled reports whether any signal is exported.
func (c Config) Enabled() bool { return c.TracesEnabled || c.MetricsEnabled }

// FromHostOtel resolves the host's otel_config exactly as the host does (wasmcloud_core::OtelConfig), so that the
// provider exports where the host itself does:
//   - a signal is on when its own flag says so, else when enable_observability is set;
//   - a per-signal endpoint is used as it is;
//   - otherwise observability_endpoint: for HTTP, the signal's path (/v1/traces, /v1/metrics) is appended when the
//     URL has no path of its own, and a URL with a path is used as it is; for gRPC the path is dropped; a value
//     that is not a URL is used as it is;
//   - without any endpoint, http://127.0.0.1:4318/v1/<signal> (HTTP) or http://127.0.0.1:4317 (gRPC).
//
// The protocol is matched in any case ("Http", "GRPC", ...), defaulting to HTTP.
func FromHostOtel(enableObservability bool, enableTraces, enableMetrics *bool,
	observabilityEndpoint, tracesEndpoint, metricsEndpoint *string, protocol string) Config {
	proto := ProtocolHTTP
	if strings.EqualFold(strings.TrimSpace(protocol), ProtocolGRPC) {
		proto = ProtocolGRPC
	}
	enabled := func(flag *bool) bool {
		if flag != nil {
			return *flag
		}
		return enableObservability
	}
	signalURL := func(explicit *string, path string) string {
		if v := deref(explicit); v != "" {
			return v
		}
		if base := deref(observabilityEndpoint); base != "" {
			return resolveBase(base, proto, path)
		}
		if proto == ProtocolGRPC {
			return "http://127.0.0.1:4317"
		}
		return "http://127.0.0.1:4318" + path
	}
	return Config{
		TracesEnabled:   enabled(enableTraces),
		MetricsEnabled:  enabled(enableMetrics),
		TracesEndpoint:  signalURL(tracesEndpoint, "/v1/traces"),
		MetricsEndpoint: signalURL(metricsEndpoint, "/v1/metrics"),
		Protocol:        proto,
	}
}

// resolveBase applies the host's rules for observability_endpoint (see FromHostOtel).
func resolveBase(base, proto, signalPath string) string {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return base
	}
	if proto == ProtocolGRPC {
		u.Path, u.RawPath, u.RawQuery, u.Fragment = "", "", "", ""
		return strings.TrimRight(u.String(), "/")
	}
	if u.Path == "" || u.Path == "/" {
		return strings.TrimRight(base, "/") + signalPath
	}
	return base
}

// FromEnv is the standalone mode: telemetry is off unless an OTLP endpoint variable is set, and the exporters
// read the endpoints (and headers, timeouts, certificates) from the environment themselves.
//
//   - traces: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, unless OTEL_TRACES_EXPORTER=none
//   - metrics: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, unless OTEL_METRICS_EXPORTER=none
//   - OTEL_SDK_DISABLED=true turns both off
//   - OTEL_EXPORTER_OTLP_PROTOCOL=grpc selects gRPC, anything else HTTP (protobuf)
//
// ServiceName is DefaultServiceName unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service, in
// which case it is left "" so that the SDK's environment resource decides.
func FromEnv(getenv func(string) string) Config {
	env := func(name string) string { return strings.TrimSpace(getenv(name)) }
	var c Config
	if !strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") {
		common := env("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
		c.TracesEnabled = (common || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") &&
			!strings.EqualFold(env("OTEL_TRACES_EXPORTER"), "none")
		c.MetricsEnabled = (common || env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "") &&
			!strings.EqualFold(env("OTEL_METRICS_EXPORTER"), "none")
	}
	c.Protocol = ProtocolHTTP
	if strings.EqualFold(env("OTEL_EXPORTER_OTLP_PROTOCOL"), ProtocolGRPC) {
		c.Protocol = ProtocolGRPC
	}
	c.ServiceName = DefaultServiceName
	if env("OTEL_SERVICE_NAME") != "" || namesService(env("OTEL_RESOURCE_ATTRIBUTES")) {
		c.ServiceName = ""
	}
	return c
}

// namesService reports whether an OTEL_RESOURCE_ATTRIBUTES value sets service.name.
func namesService(attrs string) bool {
	for _, kv := range strings.Split(attrs, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.TrimSpace(k) == "service.name" && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}
