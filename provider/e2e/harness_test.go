// Package e2e tests the backend end to end: a real NATS server, the real command (in-process, or the built binary
// started as a wasmCloud host starts it), the fake Infisical, and a host simulator that speaks the wire protocol.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

const (
	project  = "proj-1"
	clientID = "client-1"
	secret   = "client-secret-1"
	prefix   = "wasmcloud.secrets"
	backend  = "infisical"
)

// harness is one standalone backend (`serve`, in-process) with its NATS server, fake Infisical and a host.
type harness struct {
	t      *testing.T
	url    string
	nats   *server.Server
	nc     *nats.Conn
	fake   *fakeinfisical.Server
	host   *hostsim.Host
	issuer nkeys.KeyPair
	comp   *hostsim.Entity
	env    map[string]string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan int
}

// newHarness seeds the fake with a demo project and starts nothing yet; start runs the backend.
func newHarness(t *testing.T) *harness {
	t.Helper()
	url, ns := natstest.Start(t)
	h := newHarnessOn(t, url)
	h.nats = ns
	return h
}

// newHarnessOn is newHarness on the NATS server at url (e.g. one with JetStream).
func newHarnessOn(t *testing.T, url string) *harness {
	t.Helper()
	fake := fakeinfisical.New(t)
	fake.AddIdentity(clientID, secret, project)
	fake.SetSecret(project, "prod", "/", "DB_PASSWORD", "v1-password")
	fake.SetSecret(project, "prod", "/", "DB_PASSWORD", "v2-password")
	fake.SetSecret(project, "prod", "/payments", "API_KEY", "pay-key")
	fake.SetSecret(project, "prod", "/shop", "TOKEN", "shop-token")
	fake.SetSecret(project, "prod", "/other", "TOKEN", "other-token")
	fake.SetSecret(project, "dev", "/", "DB_PASSWORD", "dev-password")
	fake.SetSecret(project, "prod", "/", "JSON", `{"user":"bob","password":"pw","port":5432}`)
	fake.SetSecret(project, "prod", "/", "BLOB", "AAEC/w==")

	issuer := hostsim.NewIssuer()
	comp, err := hostsim.Component(issuer, "api")
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, url)
	host, err := hostsim.NewHost(nc, prefix, backend)
	if err != nil {
		t.Fatal(err)
	}
	seed := testkeys.CurveSeed(t)
	return &harness{
		t: t, url: url, nc: nc, fake: fake, host: host, issuer: issuer, comp: comp, logs: &syncBuffer{},
		env: map[string]string{
			"INFISICAL_CLIENT_ID":     clientID,
			"INFISICAL_CLIENT_SECRET": secret,
			"INFISICAL_PROJECT_ID":    project,
			"INFISICAL_BASE_URL":      fake.URL,
			"NATS_URL":                url,
			"SERVER_XKEY_SEED":        seed,
			"TRUSTED_ISSUERS":         comp.IssuerKey(),
			"LOG_LEVEL":               "debug",
		},
	}
}

// start runs `serve` in-process and waits until it answers server_xkey.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan int, 1)
	env := map[string]string{}
	for k, v := range h.env {
		env[k] = v
	}
	go func() {
		h.done <- cli.Run(ctx, []string{"serve"}, strings.NewReader(""), h.logs, h.logs, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
	}()
	h.t.Cleanup(h.stop)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-h.done:
			h.t.Fatalf("serve exited with %d:\n%s", code, h.logs.String())
		default:
		}
		c := secrets.NewClient(h.nc, prefix, backend)
		rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := c.ServerXKey(rctx)
		rcancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("backend did not answer server_xkey:\n%s", h.logs.String())
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.t.Errorf("serve did not stop within 10s")
	}
	h.cancel = nil
	if h.t.Failed() {
		h.t.Logf("backend logs:\n%s", h.logs.String())
	}
}

// fetch gets ref as the harness component, like a host.
func (h *harness) fetch(ref hostsim.Ref) (*secrets.Secret, error) {
	return h.fetchAs(h.comp, ref)
}

func (h *harness) fetchAs(e *hostsim.Entity, ref hostsim.Ref) (*secrets.Secret, error) {
	return h.host.Fetch(context.Background(), e, ref)
}

// mustString fetches ref and requires a string value.
func (h *harness) mustString(ref hostsim.Ref) string {
	h.t.Helper()
	s, err := h.fetch(ref)
	if err != nil {
		h.t.Fatalf("fetch %+v: %v", ref, err)
	}
	if s.StringSecret == nil {
		h.t.Fatalf("fetch %+v: no string value in %+v", ref, s)
	}
	return *s.StringSecret
}

// wantKind requires err to be the wire error kind.
func wantKind(t *testing.T, err error, kind secrets.ErrorKind) *secrets.Error {
	t.Helper()
	var werr *secrets.Error
	if !errors.As(err, &werr) {
		t.Fatalf("err = %v; want wire error %s", err, kind)
	}
	if werr.Kind != kind {
		t.Fatalf("wire error = %s (%q); want %s", werr.Kind, werr.Message, kind)
	}
	return werr
}

// syncBuffer collects a backend's logs while it runs.
type syncBuffer = hostsim.SyncBuffer

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func errUnexpected(s *secrets.Secret) error {
	raw, _ := json.Marshal(s)
	return fmt.Errorf("unexpected secret %s", raw)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
