package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
)

func TestServeConnectsToNATSWithAPrivateCA(t *testing.T) {
	url, certs := natstest.StartTLS(t)
	h := newHarness(t)
	h.env["NATS_URL"] = url
	h.env["NATS_TLS_CA"] = certs.CAFile
	nc := natstest.Connect(t, url, nats.RootCAs(certs.CAFile))
	logs := &syncBuffer{}
	startServe(t, h.env, logs, answersXKey(nc))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backend logs:\n%s", logs.String())
		}
	})
	host, err := hostsim.NewHost(nc, prefix, backend)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := host.Fetch(ctx, h.comp, hostsim.Ref{Key: "DB_PASSWORD"})
	if err != nil {
		t.Fatalf("get over TLS: %v", err)
	}
	if s.StringSecret == nil || *s.StringSecret != "v2-password" {
		t.Fatal(errUnexpected(s))
	}
}

func TestServeNATSConnectionErrorsNameNATS(t *testing.T) {
	url, _ := natstest.StartTLS(t)
	other := natstest.NewTLS(t) // a CA that did not sign the server's certificate
	tests := []struct {
		name string
		ca   string
		want string // in the log besides "NATS connection failed"
	}{
		{name: "missing CA file", ca: filepath.Join(t.TempDir(), "nope.pem"), want: "no such file"},
		{name: "not a certificate", ca: tlsTestFile(t, "junk.pem", "not a certificate"), want: "holds no PEM certificate"},
		{name: "CA that did not sign the server", ca: other.CAFile, want: "unknown authority"},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range h.env {
				env[k] = v
			}
			env["NATS_URL"], env["NATS_TLS_CA"] = url, tt.ca
			code, _, out := runCommand(t, env, "serve")
			if code != 1 {
				t.Fatalf("serve exit code = %d; want 1\n%s", code, out)
			}
			if !strings.Contains(out, "NATS connection failed") || !strings.Contains(out, "NATS_TLS_CA") {
				t.Errorf("start-up error does not name NATS and NATS_TLS_CA:\n%s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("start-up error does not say %q:\n%s", tt.want, out)
			}
		})
	}
}

// tlsTestFile writes content to name in a fresh temp dir and returns its path.
func tlsTestFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
