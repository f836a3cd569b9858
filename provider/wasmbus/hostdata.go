package wasmbus

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

// DefaultHostDataTimeout is how long a provider waits for the host data line, as the Go SDK does.
const DefaultHostDataTimeout = 5 * time.Second

// maxHostDataSize bounds the line so that a runaway writer cannot exhaust memory; real host data is a few KiB plus
// the links.
const maxHostDataSize = 16 << 20

// HostData is what a wasmCloud 1.x host writes to the provider's stdin (wasmcloud_core::HostData).
type HostData struct {
	HostID                 string                    `json:"host_id"`
	LatticeRPCPrefix       string                    `json:"lattice_rpc_prefix"`
	LinkName               string                    `json:"link_name"`
	LatticeRPCUserJWT      string                    `json:"lattice_rpc_user_jwt"`
	LatticeRPCUserSeed     Redacted                  `json:"lattice_rpc_user_seed"`
	LatticeRPCURL          string                    `json:"lattice_rpc_url"`
	ProviderKey            string                    `json:"provider_key"`
	EnvValues              map[string]string         `json:"env_values"`
	InstanceID             string                    `json:"instance_id"`
	LinkDefinitions        []InterfaceLinkDefinition `json:"link_definitions"`
	ClusterIssuers         []string                  `json:"cluster_issuers"`
	Config                 map[string]string         `json:"config"`
	Secrets                map[string]SecretValue    `json:"secrets"`
	HostXKeyPublicKey      string                    `json:"host_xkey_public_key"`
	ProviderXKeyPrivateKey Redacted                  `json:"provider_xkey_private_key"`
	DefaultRPCTimeoutMS    *uint64                   `json:"default_rpc_timeout_ms,omitempty"`
	StructuredLogging      bool                      `json:"structured_logging"`
	LogLevel               *string                   `json:"log_level,omitempty"`
	OtelConfig             OtelConfig                `json:"otel_config"`
}

// OtelConfig is the host's OpenTelemetry settings (wasmcloud_core::OtelConfig).
type OtelConfig struct {
	EnableObservability   bool     `json:"enable_observability"`
	EnableTraces          *bool    `json:"enable_traces,omitempty"`
	EnableMetrics         *bool    `json:"enable_metrics,omitempty"`
	EnableLogs            *bool    `json:"enable_logs,omitempty"`
	ObservabilityEndpoint *string  `json:"observability_endpoint,omitempty"`
	TracesEndpoint        *string  `json:"traces_endpoint,omitempty"`
	MetricsEndpoint       *string  `json:"metrics_endpoint,omitempty"`
	LogsEndpoint          *string  `json:"logs_endpoint,omitempty"`
	Protocol              string   `json:"protocol"` // "Http" or "Grpc" (lowercase accepted)
	AdditionalCAPaths     []string `json:"additional_ca_paths"`
	TraceLevel            string   `json:"trace_level"`
	TracesSampler         *string  `json:"traces_sampler,omitempty"`
	TracesSamplerArg      *string  `json:"traces_sampler_arg,omitempty"`
	MaxBatchQueueSize     *int     `json:"max_batch_queue_size,omitempty"`
	ConcurrentExports     *int     `json:"concurrent_exports,omitempty"`
}

// InterfaceLinkDefinition is a link as the host sends it (wasmcloud_core::InterfaceLinkDefinition). The secrets are
// sealed JSON maps, to the receiving provider's xkey; nil when the side has none.
type InterfaceLinkDefinition struct {
	SourceID      string            `json:"source_id"`
	Target        string            `json:"target"`
	Name          string            `json:"name"`
	WitNamespace  string            `json:"wit_namespace"`
	WitPackage    string            `json:"wit_package"`
	Interfaces    []string          `json:"interfaces"`
	SourceConfig  map[string]string `json:"source_config"`
	TargetConfig  map[string]string `json:"target_config"`
	SourceSecrets *[]byte           `json:"source_secrets"`
	TargetSecrets *[]byte           `json:"target_secrets"`
}

type linkDefAlias InterfaceLinkDefinition

// UnmarshalJSON applies the host's default link name, "default", when the field is missing.
func (l *InterfaceLinkDefinition) UnmarshalJSON(data []byte) error {
	a := linkDefAlias{Name: "default"}
	if err := json.Unmarshal(data, &a); err != nil {
		return err
	}
	*l = InterfaceLinkDefinition(a)
	return nil
}

// MarshalJSON writes the sealed secrets as number arrays, as the host does (encoding/json would write base64).
func (l InterfaceLinkDefinition) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		linkDefAlias
		SourceSecrets *byteArray `json:"source_secrets"`
		TargetSecrets *byteArray `json:"target_secrets"`
	}{linkDefAlias(l), (*byteArray)(l.SourceSecrets), (*byteArray)(l.TargetSecrets)})
}

// ReadHostData reads the host data line from r (the provider's stdin) and decodes it. The host closes r right after
// the line, so EOF after data is normal. It gives up after timeout (DefaultHostDataTimeout when <= 0) or when ctx
// ends; the read then stays blocked in the background, which is fine because the caller is about to exit.
func ReadHostData(ctx context.Context, r io.Reader, timeout time.Duration) (*HostData, error) {
	if timeout <= 0 {
		timeout = DefaultHostDataTimeout
	}
	type result struct {
		line []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readLine(r)
		done <- result{line, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case res := <-done:
		if res.err != nil {
			return nil, res.err
		}
		return DecodeHostData(res.line)
	case <-timer.C:
		return nil, fmt.Errorf("no host data after %s: a wasmCloud host writes one base64 line to stdin when it starts a provider", timeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for host data: %w", ctx.Err())
	}
}

func readLine(r io.Reader) ([]byte, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHostDataSize+1))
	line, err := br.ReadBytes('\n')
	switch {
	case len(line) > maxHostDataSize:
		return nil, fmt.Errorf("host data line is longer than %d bytes", maxHostDataSize)
	case errors.Is(err, io.EOF) && len(line) == 0:
		return nil, errors.New("no host data: input was closed before any data arrived (a wasmCloud host writes one base64 line to stdin)")
	case err != nil && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("read host data: %w", err)
	}
	return line, nil
}

// DecodeHostData decodes one host data line: base64 (standard alphabet) of the JSON HostData, surrounding
// whitespace (the host's CRLF) ignored.
func DecodeHostData(line []byte) (*HostData, error) {
	text := strings.TrimSpace(string(line))
	if text == "" {
		return nil, errors.New("host data line is empty")
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("host data is not standard base64: %w", err)
	}
	var hd HostData
	if err := json.Unmarshal(raw, &hd); err != nil {
		return nil, fmt.Errorf("host data is not valid HostData JSON: %w", safeJSONError(err))
	}
	if err := hd.validate(); err != nil {
		return nil, err
	}
	return &hd, nil
}

func (h *HostData) validate() error {
	if h.LatticeRPCURL == "" {
		return errors.New("host data has no lattice_rpc_url")
	}
	for _, f := range []struct{ name, value string }{
		{"provider_key", h.ProviderKey},
		{"lattice_rpc_prefix", h.LatticeRPCPrefix},
	} {
		if f.value == "" {
			return fmt.Errorf("host data has no %s", f.name)
		}
		// Both are spliced into subjects: a wildcard or blank would subscribe to other providers' traffic or fail.
		if strings.ContainsAny(f.value, " \t\r\n*>") {
			return fmt.Errorf("host data %s %q is not a valid NATS subject token", f.name, f.value)
		}
	}
	return nil
}

// EncodeHostData returns the line a host writes (without the CRLF), secrets and seeds included. It is the inverse of
// DecodeHostData, for host simulators and tests.
func EncodeHostData(h *HostData) (string, error) {
	if h == nil {
		return "", errors.New("encode host data: nil HostData")
	}
	secrets, err := wireSecrets(h.Secrets)
	if err != nil {
		return "", fmt.Errorf("encode host data: %w", err)
	}
	type alias HostData
	raw, err := json.Marshal(struct {
		*alias
		LatticeRPCUserSeed     string                `json:"lattice_rpc_user_seed"`
		Secrets                map[string]wireSecret `json:"secrets"`
		ProviderXKeyPrivateKey string                `json:"provider_xkey_private_key"`
	}{(*alias)(h), h.LatticeRPCUserSeed.Reveal(), secrets, h.ProviderXKeyPrivateKey.Reveal()})
	if err != nil {
		return "", fmt.Errorf("encode host data: %w", err)
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// LogValue summarizes the host data without credentials, config values or secret values.
func (h *HostData) LogValue() slog.Value {
	if h == nil {
		return slog.StringValue("<nil>")
	}
	level := ""
	if h.LogLevel != nil {
		level = *h.LogLevel
	}
	return slog.GroupValue(
		slog.String("host_id", h.HostID),
		slog.String("lattice", h.LatticeRPCPrefix),
		slog.String("provider_key", h.ProviderKey),
		slog.String("instance_id", h.InstanceID),
		slog.String("lattice_rpc_url", h.LatticeRPCURL),
		slog.Bool("nats_credentials", h.LatticeRPCUserJWT != "" && h.LatticeRPCUserSeed != ""),
		slog.Bool("xkeys", h.HostXKeyPublicKey != "" && h.ProviderXKeyPrivateKey != ""),
		slog.Int("links", len(h.LinkDefinitions)),
		slog.Any("config_keys", sortedKeys(h.Config)),
		slog.Any("secret_names", sortedKeys(h.Secrets)),
		slog.Bool("structured_logging", h.StructuredLogging),
		slog.String("log_level", level),
		slog.Bool("observability", h.OtelConfig.EnableObservability),
	)
}

// LevelFromHostData maps the host's log level as the Go SDK does: trace is debug, critical is error, anything
// unknown or absent is info.
func LevelFromHostData(hd *HostData) slog.Level {
	if hd == nil || hd.LogLevel == nil {
		return slog.LevelInfo
	}
	switch strings.ToLower(strings.TrimSpace(*hd.LogLevel)) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "critical":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
