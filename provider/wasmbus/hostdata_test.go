package wasmbus

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

// example192 is the spec's example of what a 1.9.2 host sends, with a Bytes secret added.
const example192 = `{"host_id":"NBHOST","lattice_rpc_prefix":"default","link_name":"default",
 "lattice_rpc_user_jwt":"","lattice_rpc_user_seed":"","lattice_rpc_url":"nats://127.0.0.1:4222",
 "provider_key":"myapp-secrets","env_values":{},"instance_id":"3f0c-uuid",
 "link_definitions":[{"source_id":"myapp-component","target":"myapp-secrets","wit_namespace":"wasi","wit_package":"keyvalue",
   "interfaces":["store"],"source_config":{},"target_config":{"k":"v"},"source_secrets":null,"target_secrets":[120,107,118,49]}],
 "cluster_issuers":[],"config":{"foo":"bar"},
 "secrets":{"api_key":{"kind":"String","value":"s3cr3t"},"cert":{"kind":"Bytes","value":[1,2,255]}},
 "host_xkey_public_key":"XAHOST","provider_xkey_private_key":"SXAPROVIDER",
 "default_rpc_timeout_ms":2000,"structured_logging":false,"log_level":"info",
 "otel_config":{"enable_observability":false,"enable_traces":true,"traces_endpoint":"http://127.0.0.1:4318/v1/traces",
   "protocol":"Http","additional_ca_paths":["/ca.pem"],"trace_level":"info","max_batch_queue_size":512}}`

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDecodeHostDataExample(t *testing.T) {
	hd, err := DecodeHostData([]byte(b64(example192) + "\r\n"))
	if err != nil {
		t.Fatalf("DecodeHostData: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"host_id", hd.HostID, "NBHOST"},
		{"lattice", hd.LatticeRPCPrefix, "default"},
		{"link_name", hd.LinkName, "default"},
		{"url", hd.LatticeRPCURL, "nats://127.0.0.1:4222"},
		{"provider_key", hd.ProviderKey, "myapp-secrets"},
		{"instance_id", hd.InstanceID, "3f0c-uuid"},
		{"env_values", hd.EnvValues, map[string]string{}},
		{"config", hd.Config, map[string]string{"foo": "bar"}},
		{"cluster_issuers", hd.ClusterIssuers, []string{}},
		{"secret string", hd.Secrets["api_key"], StringSecret("s3cr3t")},
		{"secret bytes", hd.Secrets["cert"], BytesSecret([]byte{1, 2, 255})},
		{"host xkey", hd.HostXKeyPublicKey, "XAHOST"},
		{"provider xkey seed", hd.ProviderXKeyPrivateKey.Reveal(), "SXAPROVIDER"},
		{"rpc timeout", *hd.DefaultRPCTimeoutMS, uint64(2000)},
		{"log level", *hd.LogLevel, "info"},
		{"links", len(hd.LinkDefinitions), 1},
		{"link name default", hd.LinkDefinitions[0].Name, "default"},
		{"link target config", hd.LinkDefinitions[0].TargetConfig, map[string]string{"k": "v"}},
		{"link source secrets", hd.LinkDefinitions[0].SourceSecrets == nil, true},
		{"link target secrets", *hd.LinkDefinitions[0].TargetSecrets, []byte("xkv1")},
		{"otel protocol", hd.OtelConfig.Protocol, "Http"},
		{"otel traces", *hd.OtelConfig.EnableTraces, true},
		{"otel metrics unset", hd.OtelConfig.EnableMetrics == nil, true},
		{"otel traces endpoint", *hd.OtelConfig.TracesEndpoint, "http://127.0.0.1:4318/v1/traces"},
		{"otel ca paths", hd.OtelConfig.AdditionalCAPaths, []string{"/ca.pem"}},
		{"otel queue", *hd.OtelConfig.MaxBatchQueueSize, 512},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if got := hd.Secrets["cert"].Text(); got != "\x01\x02\xff" {
		t.Errorf("bytes secret Text() = %q", got)
	}
}

func TestDecodeHostDataErrors(t *testing.T) {
	valid := map[string]any{"lattice_rpc_url": "nats://127.0.0.1:4222", "lattice_rpc_prefix": "default", "provider_key": "p1"}
	without := func(field string) string {
		m := map[string]any{}
		for k, v := range valid {
			if k != field {
				m[k] = v
			}
		}
		raw, _ := json.Marshal(m)
		return b64(string(raw))
	}
	with := func(field string, value any) string {
		m := map[string]any{field: value}
		for k, v := range valid {
			if k != field {
				m[k] = v
			}
		}
		raw, _ := json.Marshal(m)
		return b64(string(raw))
	}
	tests := []struct {
		name, line string
		wantErr    string // "" means success
		notInErr   string
	}{
		{name: "minimal", line: without("none")},
		{name: "crlf", line: without("none") + "\r\n"},
		{name: "surrounding spaces", line: "  " + without("none") + " \n"},
		{name: "empty", line: "", wantErr: "empty"},
		{name: "only crlf", line: "\r\n", wantErr: "empty"},
		{name: "not base64", line: "not base64!!", wantErr: "base64"},
		{name: "url-safe alphabet", line: strings.NewReplacer("+", "-", "/", "_").Replace(b64(`{"a":"???>>>"}`)), wantErr: "base64"},
		{name: "missing padding", line: strings.TrimRight(b64(`{"x":1}`), "="), wantErr: "base64"},
		{name: "not JSON", line: b64("hello"), wantErr: "not valid HostData JSON"},
		{name: "JSON array", line: b64("[1,2]"), wantErr: "not valid HostData JSON"},
		{name: "wrong type does not quote value", line: b64(`{"provider_key":987654321}`), wantErr: "provider_key", notInErr: "987654321"},
		{name: "missing url", line: without("lattice_rpc_url"), wantErr: "lattice_rpc_url"},
		{name: "missing provider key", line: without("provider_key"), wantErr: "provider_key"},
		{name: "missing lattice", line: without("lattice_rpc_prefix"), wantErr: "lattice_rpc_prefix"},
		{name: "wildcard provider key", line: with("provider_key", "p.>"), wantErr: "provider_key"},
		{name: "unknown secret kind", line: with("secrets", map[string]any{"s": map[string]any{"kind": "Json", "value": "x"}}), wantErr: `"Json"`},
		{name: "bytes secret as base64 string", line: with("secrets", map[string]any{"s": map[string]any{"kind": "Bytes", "value": "AQI="}}), wantErr: "array of numbers"},
		{name: "bytes secret out of range", line: with("secrets", map[string]any{"s": map[string]any{"kind": "Bytes", "value": []int{1, 7770001}}}), wantErr: "Bytes", notInErr: "7770001"},
		{name: "string secret as number", line: with("secrets", map[string]any{"s": map[string]any{"kind": "String", "value": 4440004}}), wantErr: "String", notInErr: "4440004"},
		{name: "secret without value", line: with("secrets", map[string]any{"s": map[string]any{"kind": "String"}}), wantErr: `no "value"`},
		{name: "secret null", line: with("secrets", map[string]any{"s": nil}), wantErr: "null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := DecodeHostData([]byte(tt.line))
			if tt.wantErr == "" {
				if err != nil || hd == nil {
					t.Fatalf("DecodeHostData: %v", err)
				}
				if hd.ProviderKey != "p1" {
					t.Errorf("provider key = %q", hd.ProviderKey)
				}
				return
			}
			if err == nil {
				t.Fatalf("DecodeHostData succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if tt.notInErr != "" && strings.Contains(err.Error(), tt.notInErr) {
				t.Errorf("error %q quotes the input %q", err, tt.notInErr)
			}
		})
	}
}

// blockingReader never returns data, like a stdin nobody writes to.
func blockingReader(t *testing.T) io.Reader {
	t.Helper()
	r, w := io.Pipe()
	t.Cleanup(func() { _ = w.Close() })
	return r
}

func TestReadHostData(t *testing.T) {
	line := b64(`{"lattice_rpc_url":"nats://127.0.0.1:4222","lattice_rpc_prefix":"default","provider_key":"p1"}`)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		input   func(t *testing.T) io.Reader
		wantErr string
		wantCtx bool
	}{
		{name: "crlf then EOF", input: func(*testing.T) io.Reader { return strings.NewReader(line + "\r\n") }},
		{name: "no newline then EOF", input: func(*testing.T) io.Reader { return strings.NewReader(line) }},
		{name: "later lines ignored", input: func(*testing.T) io.Reader { return strings.NewReader(line + "\r\nnot host data\n") }},
		{name: "empty input", input: func(*testing.T) io.Reader { return strings.NewReader("") }, wantErr: "closed before any data"},
		{name: "blank line", input: func(*testing.T) io.Reader { return strings.NewReader("\r\n") }, wantErr: "empty"},
		{name: "timeout", input: blockingReader, wantErr: "no host data after 50ms"},
		{name: "context canceled", ctx: canceled, input: blockingReader, wantCtx: true},
		{name: "bad data", input: func(*testing.T) io.Reader { return strings.NewReader("%%%\n") }, wantErr: "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			hd, err := ReadHostData(ctx, tt.input(t), 50*time.Millisecond)
			switch {
			case tt.wantCtx:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatalf("ReadHostData: %v", err)
				}
				if hd.ProviderKey != "p1" {
					t.Errorf("provider key = %q", hd.ProviderKey)
				}
			}
		})
	}
}

func TestEncodeHostDataRoundTrip(t *testing.T) {
	keys := newTestKeys(t)
	sealed, err := SealLinkSecrets(map[string]SecretValue{"pw": StringSecret("link-pw")}, keys.host, keys.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	level := "debug"
	in := &HostData{
		HostID: "NHOST", LatticeRPCPrefix: "lat", LatticeRPCURL: "nats://127.0.0.1:1", ProviderKey: "p1",
		LatticeRPCUserJWT: "jwt", LatticeRPCUserSeed: "SUSEED", LogLevel: &level,
		Secrets: map[string]SecretValue{"s": StringSecret("v"), "b": BytesSecret([]byte{0, 9})},
		LinkDefinitions: []InterfaceLinkDefinition{{
			SourceID: "c1", Target: "p1", Name: "default", TargetSecrets: sealed,
		}},
		HostXKeyPublicKey: keys.hostPub, ProviderXKeyPrivateKey: keys.providerSeed,
	}
	line, err := EncodeHostData(in)
	if err != nil {
		t.Fatalf("EncodeHostData: %v", err)
	}
	raw, _ := base64.StdEncoding.DecodeString(line)
	if !strings.Contains(string(raw), `"target_secrets":[`) || !strings.Contains(string(raw), `"source_secrets":null`) {
		t.Errorf("link secrets not encoded as number arrays / null: %s", raw)
	}
	out, err := DecodeHostData([]byte(line + "\r\n"))
	if err != nil {
		t.Fatalf("DecodeHostData: %v", err)
	}
	if out.LatticeRPCUserSeed.Reveal() != "SUSEED" || out.ProviderXKeyPrivateKey != keys.providerSeed {
		t.Error("seeds did not survive the round trip")
	}
	if !reflect.DeepEqual(out.Secrets, in.Secrets) {
		t.Errorf("secrets = %#v", out.Secrets)
	}
	if !reflect.DeepEqual(out.LinkDefinitions, in.LinkDefinitions) {
		t.Errorf("links differ after round trip")
	}
	provider, hostPub, err := out.LinkXKeys()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecryptLinkSecrets(out.LinkDefinitions[0].TargetSecrets, provider, hostPub)
	if err != nil || got["pw"].Text() != "link-pw" {
		t.Errorf("link secret after round trip = %v, %v", got["pw"].Text(), err)
	}
}

func TestLevelFromHostData(t *testing.T) {
	tests := []struct {
		name  string
		level *string
		want  slog.Level
	}{
		{"absent", nil, slog.LevelInfo},
		{"trace", ptr("trace"), slog.LevelDebug},
		{"debug", ptr("debug"), slog.LevelDebug},
		{"info", ptr("info"), slog.LevelInfo},
		{"warn", ptr("warn"), slog.LevelWarn},
		{"error", ptr("error"), slog.LevelError},
		{"critical", ptr("critical"), slog.LevelError},
		{"upper case", ptr("DEBUG"), slog.LevelDebug},
		{"unknown", ptr("verbose"), slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LevelFromHostData(&HostData{LogLevel: tt.level}); got != tt.want {
				t.Errorf("LevelFromHostData(%v) = %v, want %v", tt.level, got, tt.want)
			}
		})
	}
	if got := LevelFromHostData(nil); got != slog.LevelInfo {
		t.Errorf("LevelFromHostData(nil) = %v", got)
	}
}

func ptr[T any](v T) *T { return &v }
