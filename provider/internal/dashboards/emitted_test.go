package dashboards

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/otlptest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

const (
	project  = "dash-project"
	clientID = "dash-client"
	secret   = "dash-client-secret"
	// instanceID is what a deployment should give each replica (OTEL_RESOURCE_ATTRIBUTES=service.instance.id=...):
	// it becomes Prometheus's instance label.
	instanceID = "replica-1"
)

// logWatch is a replica's log output; wait blocks until a line containing a text was written.
type logWatch struct {
	mu    sync.Mutex
	b     strings.Builder
	waits map[string]chan struct{}
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.signal()
	return len(p), nil
}

func (w *logWatch) signal() {
	for text, ch := range w.waits {
		if strings.Contains(w.b.String(), text) {
			close(ch)
			delete(w.waits, text)
		}
	}
}

func (w *logWatch) wait(t *testing.T, text string) {
	t.Helper()
	w.mu.Lock()
	if w.waits == nil {
		w.waits = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	w.waits[text] = ch
	w.signal()
	w.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("no log line with %q after 30s; log:\n%s", text, w.b.String())
	}
}

// replica is one `serve` running in this process.
type replica struct {
	log    *logWatch
	stop   context.CancelFunc
	exited chan int
}

func startReplica(t *testing.T, env map[string]string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{log: &logWatch{}, stop: cancel, exited: make(chan int, 1)}
	go func() {
		r.exited <- cli.Run(ctx, []string{"serve"}, strings.NewReader(""), r.log, r.log, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
	}()
	t.Cleanup(func() { r.shutdown(t) })
	r.log.wait(t, "serving secrets")
	return r
}

// shutdown stops the replica and waits for it, which flushes its metrics to the collector.
func (r *replica) shutdown(t *testing.T) {
	t.Helper()
	if r.stop == nil {
		return
	}
	r.stop()
	r.stop = nil
	select {
	case code := <-r.exited:
		if code != 0 {
			t.Errorf("replica exited with %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Error("replica still running 30s after its stop")
	}
}

// emit runs two replicas through what the dashboard shows and returns every metric they exported over OTLP: gets
// that hit and miss both cache tiers, a missing secret, a folder listing and a versioned read, a login that fails,
// a 429 and the calls its pause refuses, and JetStream going away under the shared tier.
func emit(t *testing.T) []otlptest.Metric {
	t.Helper()
	rcv := otlptest.NewReceiver(t)
	// The OTLP exporter and the SDK's resource read these from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL())
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id="+instanceID)
	natsURL, ns := natstest.StartJetStream(t)
	fake := fakeinfisical.New(t)
	fake.AddIdentity(clientID, secret, project)
	for _, folder := range []string{"/a", "/b", "/c", "/d", "/e"} {
		fake.SetSecret(project, "prod", folder, "KEY", "value"+folder)
	}
	issuer := hostsim.NewIssuer()
	comp, err := hostsim.Component(issuer, "dash")
	if err != nil {
		t.Fatal(err)
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := xkey.Seed()
	if err != nil {
		t.Fatal(err)
	}
	env := func(backend string) map[string]string {
		return map[string]string{
			"INFISICAL_BASE_URL": fake.URL, "INFISICAL_CLIENT_ID": clientID, "INFISICAL_CLIENT_SECRET": secret,
			"INFISICAL_PROJECT_ID": project, "NATS_URL": natsURL, "SERVER_XKEY_SEED": string(seed),
			"TRUSTED_ISSUERS": comp.IssuerKey(), "BACKEND_NAME": backend,
			"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL(), "OTEL_TRACES_EXPORTER": "none",
		}
	}
	nc := natstest.Connect(t, natsURL)
	host := func(backend string) *hostsim.Host {
		h, err := hostsim.NewHost(nc, secrets.DefaultPrefix, backend)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	get := func(h *hostsim.Host, ref hostsim.Ref) error {
		_, err := h.Fetch(context.Background(), comp, ref)
		return err
	}
	mustGet := func(h *hostsim.Host, ref hostsim.Ref) {
		t.Helper()
		if err := get(h, ref); err != nil {
			t.Fatalf("get %+v: %v", ref, err)
		}
	}

	// Replica a: a login, a listing (memory and shared miss, stored), a memory hit, a versioned read and a
	// secret that does not exist.
	a := startReplica(t, env("a"))
	a.log.wait(t, "logged in to Infisical")
	ha := host("a")
	mustGet(ha, hostsim.Ref{Key: "/a/KEY"})
	mustGet(ha, hostsim.Ref{Key: "/a/KEY"})
	mustGet(ha, hostsim.Ref{Key: "/a/KEY", Version: "1"})
	if err := get(ha, hostsim.Ref{Key: "/a/NOPE"}); err == nil {
		t.Fatal("a missing secret was served")
	}

	// Replica b: Infisical refuses its first login, which pauses its logins; it still serves what replica a shared,
	// and what it must read from Infisical fails.
	fake.FailNext(fakeinfisical.RouteUniversalAuthLogin, 1, http.StatusUnauthorized, fakeinfisical.MsgInvalidCredentials, nil)
	b := startReplica(t, env("b"))
	b.log.wait(t, "Infisical login failed at start")
	hb := host("b")
	mustGet(hb, hostsim.Ref{Key: "/a/KEY"})
	if err := get(hb, hostsim.Ref{Key: "/b/KEY"}); err == nil {
		t.Fatal("replica b read with refused credentials")
	}

	// Infisical answers 429: calls pause, and the next read is refused without being sent.
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, http.StatusTooManyRequests,
		"Rate limit exceeded. Please try again in 60 seconds",
		http.Header{"Retry-After": {"60"}})
	for _, key := range []string{"/c/KEY", "/d/KEY"} {
		if err := get(ha, hostsim.Ref{Key: key}); err == nil {
			t.Fatalf("%s served during a 429's pause", key)
		}
	}

	// JetStream goes away under the shared tier.
	if err := ns.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"/e/KEY", "/e/KEY"} {
		_ = get(ha, hostsim.Ref{Key: key})
	}

	a.shutdown(t)
	b.shutdown(t)
	return rcv.Metrics()
}
