package telemetry

import (
	"testing"
)

func ptr[T any](v T) *T { return &v }

func TestFromHostOtel(t *testing.T) {
	tests := []struct {
		name                       string
		obs                        bool
		traces, metrics            *bool
		obsEP, tracesEP, metricsEP *string
		protocol                   string
		want                       Config
	}{
		{
			name: "all off by default", protocol: "Http",
			want: Config{TracesEndpoint: "http://127.0.0.1:4318/v1/traces", MetricsEndpoint: "http://127.0.0.1:4318/v1/metrics", Protocol: "http"},
		},
		{
			name: "master switch enables both", obs: true, protocol: "Http", obsEP: ptr("http://collector:4318"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://collector:4318/v1/traces",
				MetricsEndpoint: "http://collector:4318/v1/metrics", Protocol: "http"},
		},
		{
			name: "per-signal switch; a trailing slash is no path", traces: ptr(true), metrics: ptr(false), protocol: "HTTP",
			obsEP: ptr("https://otel.example:4318/"),
			want: Config{TracesEnabled: true, TracesEndpoint: "https://otel.example:4318/v1/traces",
				MetricsEndpoint: "https://otel.example:4318/v1/metrics", Protocol: "http"},
		},
		{
			// The host (wasmcloud_core::OtelConfig) uses an observability endpoint that has a path as it is.
			name: "an endpoint with a path is used as is", obs: true, protocol: "Http", obsEP: ptr("http://gw:4318/otlp"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://gw:4318/otlp",
				MetricsEndpoint: "http://gw:4318/otlp", Protocol: "http"},
		},
		{
			name: "an endpoint that is no URL is used as is", obs: true, protocol: "Http", obsEP: ptr("collector:4318"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "collector:4318",
				MetricsEndpoint: "collector:4318", Protocol: "http"},
		},
		{
			name: "grpc endpoint loses its path", obs: true, protocol: "grpc", obsEP: ptr("http://c:4317/some/path"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://c:4317",
				MetricsEndpoint: "http://c:4317", Protocol: "grpc"},
		},
		{
			name: "per-signal endpoints used as they are", obs: true, protocol: "Http", obsEP: ptr("http://ignored:1"),
			tracesEP: ptr("http://t:9/custom/"), metricsEP: ptr("http://m:8"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://t:9/custom/",
				MetricsEndpoint: "http://m:8", Protocol: "http"},
		},
		{
			name: "empty per-signal endpoint falls back", metrics: ptr(true), protocol: "Http", tracesEP: ptr(""), metricsEP: ptr(" "),
			want: Config{MetricsEnabled: true, TracesEndpoint: "http://127.0.0.1:4318/v1/traces",
				MetricsEndpoint: "http://127.0.0.1:4318/v1/metrics", Protocol: "http"},
		},
		{
			name: "grpc default endpoint has no path", obs: true, protocol: "Grpc",
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://127.0.0.1:4317",
				MetricsEndpoint: "http://127.0.0.1:4317", Protocol: "grpc"},
		},
		{
			name: "grpc base endpoint trimmed, nothing appended", obs: true, protocol: "GRPC", obsEP: ptr("http://c:4317/"),
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://c:4317",
				MetricsEndpoint: "http://c:4317", Protocol: "grpc"},
		},
		{
			name: "grpc per-signal endpoint as is", traces: ptr(true), protocol: "grpc", tracesEP: ptr("https://t:4317/"),
			want: Config{TracesEnabled: true, TracesEndpoint: "https://t:4317/", MetricsEndpoint: "http://127.0.0.1:4317", Protocol: "grpc"},
		},
		{
			name: "unknown or empty protocol means http", obs: true, protocol: "",
			want: Config{TracesEnabled: true, MetricsEnabled: true, TracesEndpoint: "http://127.0.0.1:4318/v1/traces",
				MetricsEndpoint: "http://127.0.0.1:4318/v1/metrics", Protocol: "http"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromHostOtel(tt.obs, tt.traces, tt.metrics, tt.obsEP, tt.tracesEP, tt.metricsEP, tt.protocol)
			if got != tt.want {
				t.Errorf("FromHostOtel() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{
			name: "nothing set: off",
			want: Config{Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "common endpoint enables both",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			want: Config{TracesEnabled: true, MetricsEnabled: true, Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "traces endpoint only",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
			want: Config{TracesEnabled: true, Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "metrics endpoint only, grpc",
			env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: Config{MetricsEnabled: true, Protocol: "grpc", ServiceName: DefaultServiceName},
		},
		{
			name: "http/protobuf protocol",
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
				"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			want: Config{TracesEnabled: true, MetricsEnabled: true, Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "sdk disabled wins",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "TRUE"},
			want: Config{Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "exporter none turns one signal off",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "none"},
			want: Config{TracesEnabled: true, Protocol: "http", ServiceName: DefaultServiceName},
		},
		{
			name: "OTEL_SERVICE_NAME leaves the name to the SDK",
			env:  map[string]string{"OTEL_SERVICE_NAME": "secrets-a"},
			want: Config{Protocol: "http"},
		},
		{
			name: "service.name in resource attributes leaves the name to the SDK",
			env:  map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name=x"},
			want: Config{Protocol: "http"},
		},
		{
			name: "other resource attributes keep the default name",
			env:  map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"},
			want: Config{Protocol: "http", ServiceName: DefaultServiceName},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromEnv(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("FromEnv() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
