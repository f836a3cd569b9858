// Package e2e tests the backend end to end: a real NATS server, the real command (in-process, or the built binary
// started as a wasmCloud host starts it), the fake Infisical, and a host simulator that speaks the wire protocol.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
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
	stop   func() // stops the backend start ran; set by start
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

// start runs the harness's backend with h.env and waits until it answers server_xkey; h.stop stops it earlier than
// the end of the test.
func (h *harness) start() {
	h.t.Helper()
	h.t.Cleanup(func() {
		if h.t.Failed() {
			h.t.Logf("backend logs:\n%s", h.logs.String())
		}
	})
	h.stop = startServe(h.t, h.env, h.logs, answersXKey(h.nc))
}

// startServe runs `serve` in-process on a copy of env, logging to out, and waits until ready reports true. It
// stops serve when the test ends, or earlier when the returned stop is called.
func startServe(t *testing.T, env map[string]string, out io.Writer, ready func() bool) (stop func()) {
	t.Helper()
	own := maps.Clone(env)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var code int
	go func() {
		defer close(exited)
		code = cli.Run(ctx, []string{"serve"}, strings.NewReader(""), out, out, func(k string) (string, bool) {
			v, ok := own[k]
			return v, ok
		})
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("serve did not stop within 10s")
		}
	})
	t.Cleanup(stop)
	eventually.True(t, "serve to be ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("serve exited with %d before it was ready", code)
		default:
		}
		return ready()
	})
	return stop
}

// startReplicas runs n more `serve`s with env, each logging to its own buffer, and waits until each is serving. The
// test's failure shows every replica's logs.
func startReplicas(t *testing.T, env map[string]string, n int) []*syncBuffer {
	t.Helper()
	logs := make([]*syncBuffer, n)
	for i := range logs {
		logs[i] = &syncBuffer{}
		startServe(t, env, logs[i], logged(logs[i], servingLine))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("replica %d logs:\n%s", i, l.String())
			}
		}
	})
	return logs
}

// logged reports whether logs holds s, for startServe's ready.
func logged(logs fmt.Stringer, s string) func() bool {
	return func() bool { return strings.Contains(logs.String(), s) }
}

// answersXKey reports whether some backend answers server_xkey on nc, for startServe's ready.
func answersXKey(nc *nats.Conn) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := secrets.NewClient(nc, prefix, backend).ServerXKey(ctx)
		return err == nil
	}
}

const servingLine = "serving secrets" // logged once the secrets server has subscribed

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

func errUnexpected(s *secrets.Secret) error {
	raw, _ := json.Marshal(s)
	return fmt.Errorf("unexpected secret %s", raw)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
