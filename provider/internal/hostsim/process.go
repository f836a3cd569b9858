package hostsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds the provider binary once per test process, as `make build` does (static, -trimpath), and returns
// its path. Built that way it shares its compiled packages with the image test's build of the same binary.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "infisical-secrets-provider-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "infisical-secrets-provider")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", buildPath, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatalf("build provider binary: %v", buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate source")
	}
	return filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// HostData is the JSON a 1.9 host writes, as a map so tests can also send what a real host would never send.
type HostData map[string]any

// NewHostData fills every field a 1.9.2 host sends, with fresh xkeys; config and secrets are the provider's.
func NewHostData(hostID, natsURL, providerKey string, config map[string]string, secretValues map[string]any) (HostData, nkeys.KeyPair, error) {
	hostXKey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, nil, err
	}
	provXKey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, nil, err
	}
	hostPub, _ := hostXKey.PublicKey()
	provSeed, _ := provXKey.Seed()
	if config == nil {
		config = map[string]string{}
	}
	if secretValues == nil {
		secretValues = map[string]any{}
	}
	return HostData{
		"host_id": hostID, "lattice_rpc_prefix": "default", "link_name": "default",
		"lattice_rpc_user_jwt": "", "lattice_rpc_user_seed": "", "lattice_rpc_url": natsURL,
		"provider_key": providerKey, "env_values": map[string]string{}, "instance_id": "3f0c6b7e-1111-4a2b-9c3d-000000000001",
		"link_definitions": []any{}, "cluster_issuers": []string{}, "config": config, "secrets": secretValues,
		"host_xkey_public_key": hostPub, "provider_xkey_private_key": string(provSeed),
		"default_rpc_timeout_ms": 2000, "structured_logging": false, "log_level": "debug",
		"otel_config": map[string]any{"enable_observability": false, "protocol": "Http", "additional_ca_paths": []string{}, "trace_level": "info"},
	}, hostXKey, nil
}

// StringSecret and BytesSecret encode HostData secret values.
func StringSecret(v string) any { return map[string]any{"kind": "String", "value": v} }

// BytesSecret encodes bytes as the host does: a JSON number array.
func BytesSecret(v []byte) any {
	nums := make([]int, len(v))
	for i, b := range v {
		nums[i] = int(b)
	}
	return map[string]any{"kind": "Bytes", "value": nums}
}

// SealLinkSecrets seals a link's secrets map from the host xkey to the provider's, as the host does.
func SealLinkSecrets(hostXKey nkeys.KeyPair, providerXKeyPublic string, values map[string]any) ([]int, error) {
	raw, err := json.Marshal(values)
	if err != nil {
		return nil, err
	}
	sealed, err := hostXKey.Seal(raw, providerXKeyPublic)
	if err != nil {
		return nil, err
	}
	nums := make([]int, len(sealed))
	for i, b := range sealed {
		nums[i] = int(b)
	}
	return nums, nil
}

// ProviderXKeyPublic returns the public key of the provider xkey in hd.
func (hd HostData) ProviderXKeyPublic() string {
	seed, _ := hd["provider_xkey_private_key"].(string)
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return ""
	}
	pub, _ := kp.PublicKey()
	return pub
}

// Line encodes hd like the host: standard base64 of the JSON, then CRLF.
func (hd HostData) Line() []byte {
	raw, _ := json.Marshal(map[string]any(hd))
	return append([]byte(base64.StdEncoding.EncodeToString(raw)), '\r', '\n')
}

// Process is a provider started like the host starts one.
type Process struct {
	cmd    *exec.Cmd
	stderr *SyncBuffer
	done   chan struct{}
	err    error
}

// Start runs the binary with an empty environment (plus extraEnv, e.g. OTEL_*), writes stdin, then closes it.
func Start(tb testing.TB, bin string, stdin []byte, extraEnv ...string) *Process {
	tb.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{}, extraEnv...)
	p := &Process{cmd: cmd, stderr: &SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("stdin pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start provider: %v", err)
	}
	go func() {
		_, _ = in.Write(stdin)
		_ = in.Close()
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if tb.Failed() {
			tb.Logf("provider output:\n%s", p.Output())
		}
	})
	return p
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return 0, nil
		}
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			return ee.ExitCode(), nil
		}
		return -1, p.err
	case <-time.After(timeout):
		return -1, fmt.Errorf("provider still running after %s", timeout)
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.stderr.String() }

// WaitForOutput waits until the output contains s.
func (p *Process) WaitForOutput(ctx context.Context, s string) error {
	for {
		if bytes.Contains([]byte(p.Output()), []byte(s)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q in provider output: %w", s, ctx.Err())
		case <-p.done:
			if bytes.Contains([]byte(p.Output()), []byte(s)) {
				return nil
			}
			return fmt.Errorf("provider exited before printing %q", s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Health asks the provider's health subject like the host (2 s timeout) and decodes the reply.
func Health(ctx context.Context, nc *nats.Conn, lattice, providerKey string) (healthy bool, message string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, fmt.Sprintf("wasmbus.rpc.%s.%s.health", lattice, providerKey), nil)
	if err != nil {
		return false, "", err
	}
	var r struct {
		Healthy bool   `json:"healthy"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return false, "", fmt.Errorf("health reply %q: %w", msg.Data, err)
	}
	return r.Healthy, r.Message, nil
}

// SyncBuffer collects output written from several goroutines, such as a process's logs, for tests to read.
type SyncBuffer = capture.Buffer
