package wasmbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
)

const (
	testLattice  = "default"
	testProvider = "myapp-secrets"
	testHostID   = "NTESTHOST"
	waitLimit    = 5 * time.Second // only to avoid hangs
)

// syncBuffer collects log output written from other goroutines.
type syncBuffer = capture.Buffer

// recorder is a provider's handlers, remembering every call.
type recorder struct {
	puts, dels chan Link
	configs    chan map[string]string
	shutdowns  chan struct{}

	mu         sync.Mutex
	failConfig error
}

func (r *recorder) setFailConfig(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failConfig = err
}

func newRecorder() *recorder {
	return &recorder{
		puts: make(chan Link, 32), dels: make(chan Link, 32),
		configs: make(chan map[string]string, 32), shutdowns: make(chan struct{}, 32),
	}
}

func (r *recorder) handlers() Handlers {
	return Handlers{
		LinkPut: func(_ context.Context, l Link) error { r.puts <- l; return nil },
		LinkDel: func(_ context.Context, l Link) error { r.dels <- l; return nil },
		ConfigUpdate: func(_ context.Context, cfg map[string]string) error {
			r.mu.Lock()
			err := r.failConfig
			r.mu.Unlock()
			r.configs <- cfg
			return err
		},
		Shutdown: func(context.Context) error { r.shutdowns <- struct{}{}; return nil },
	}
}

type harness struct {
	p    *Provider
	host *nats.Conn
	hd   *HostData
	keys testKeys
	logs *syncBuffer
}

// withXKeys is host data as a 1.x host sends it; legacy hosts (< 1.1) send no xkeys.
func testHostData(k testKeys, withXKeys bool) *HostData {
	hd := &HostData{
		HostID: testHostID, LatticeRPCPrefix: testLattice, LinkName: "default", ProviderKey: testProvider,
		LatticeRPCURL: "nats://unused", InstanceID: "instance-1",
	}
	if withXKeys {
		hd.HostXKeyPublicKey, hd.ProviderXKeyPrivateKey = k.hostPub, k.providerSeed
	}
	return hd
}

// startHarness runs a real NATS server, a provider on one connection and a "host" on another.
func startHarness(t *testing.T, k testKeys, hd *HostData, h Handlers) *harness {
	t.Helper()
	url, _ := natstest.Start(t)
	hd.LatticeRPCURL = url
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(natstest.Connect(t, url, NATSOptions(hd, logger)...), hd, h, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return &harness{p: p, host: natstest.Connect(t, url), hd: hd, keys: k, logs: logs}
}

func subject(token, op string) string { return "wasmbus.rpc." + testLattice + "." + token + "." + op }

func (h *harness) publish(t *testing.T, subj string, v any) {
	t.Helper()
	var data []byte
	switch v := v.(type) {
	case string:
		data = []byte(v)
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.host.Publish(subj, data); err != nil {
		t.Fatalf("publish %s: %v", subj, err)
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %s", what, waitLimit)
		var zero T
		return zero
	}
}

// waitLinks waits until p records n links: LinkPut runs before the link is recorded.
func waitLinks(t *testing.T, p *Provider, n int) []Link {
	t.Helper()
	var links []Link
	eventually.NoError(t, fmt.Sprintf("Links() to have %d links", n), func() error {
		if links = p.Links(); len(links) != n {
			return fmt.Errorf("Links() has %d links", len(links))
		}
		return nil
	})
	return links
}

func expectNone[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	default:
	}
}

// componentToUs is a link from a component to this provider (we are the target).
func componentToUs(t *testing.T, k testKeys, secrets map[string]SecretValue) InterfaceLinkDefinition {
	t.Helper()
	sealed, err := SealLinkSecrets(secrets, k.host, k.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	srcSealed, err := SealLinkSecrets(map[string]SecretValue{"not-ours": StringSecret("x")}, k.host, k.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	return InterfaceLinkDefinition{
		SourceID: "myapp-component", Target: testProvider, Name: "default", WitNamespace: "wasmcloud", WitPackage: "secrets",
		Interfaces: []string{"store"}, SourceConfig: map[string]string{"side": "source"}, TargetConfig: map[string]string{"side": "target"},
		SourceSecrets: srcSealed, TargetSecrets: sealed,
	}
}

// usToComponent is a link from this provider to a component (we are the source).
func usToComponent(t *testing.T, k testKeys, secrets map[string]SecretValue) InterfaceLinkDefinition {
	t.Helper()
	sealed, err := SealLinkSecrets(secrets, k.host, k.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	return InterfaceLinkDefinition{
		SourceID: testProvider, Target: "other-component", Name: "alt", WitNamespace: "wasmcloud", WitPackage: "example",
		Interfaces: []string{"process"}, SourceConfig: map[string]string{"side": "source"}, TargetConfig: map[string]string{"side": "target"},
		SourceSecrets: sealed,
	}
}

func checkLink(t *testing.T, got Link, ld InterfaceLinkDefinition, isTarget bool, secrets map[string]SecretValue) {
	t.Helper()
	wantConfig := ld.SourceConfig
	if isTarget {
		wantConfig = ld.TargetConfig
	}
	want := Link{
		SourceID: ld.SourceID, Target: ld.Target, Name: ld.Name, Namespace: ld.WitNamespace, Package: ld.WitPackage,
		Interfaces: ld.Interfaces, Config: wantConfig, Secrets: secrets, IsTarget: isTarget,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("link = %#v\nwant   %#v", got.LogValue(), want.LogValue())
		for name, s := range want.Secrets {
			if got.Secrets[name].Text() != s.Text() || got.Secrets[name].Kind != s.Kind {
				t.Errorf("secret %q differs", name)
			}
		}
	}
}

func TestLinkPutOnXKeySubject(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	h := startHarness(t, k, testHostData(k, true), rec.handlers())

	targetSecrets := map[string]SecretValue{"pw": StringSecret("link-pw"), "blob": BytesSecret([]byte{1, 2, 3})}
	toUs := componentToUs(t, k, targetSecrets)
	fromUs := usToComponent(t, k, map[string]SecretValue{"token": StringSecret("tok")})
	foreign := toUs
	foreign.Target, foreign.SourceID = "someone-else", "another-component"
	undecryptable := toUs
	undecryptable.SourceID = "evil-component"
	undecryptable.TargetSecrets = ptr([]byte("xkv1 not sealed to us at all, nope"))

	// The host's backwards-compat copy on the provider-key subject must not reach the handler a second time.
	h.publish(t, subject(testProvider, "linkdefs.put"), toUs)
	xkeySubject := subject(k.providerPub, "linkdefs.put")
	h.publish(t, xkeySubject, "{not json")
	h.publish(t, xkeySubject, foreign)
	h.publish(t, xkeySubject, undecryptable)
	h.publish(t, xkeySubject, toUs)
	h.publish(t, xkeySubject, fromUs)

	checkLink(t, receive(t, rec.puts, "put of the target link"), toUs, true, targetSecrets)
	checkLink(t, receive(t, rec.puts, "put of the source link"), fromUs, false, map[string]SecretValue{"token": StringSecret("tok")})
	expectNone(t, rec.puts, "link put")
	waitLinks(t, h.p, 2)
	logs := h.logs.String()
	for _, want := range []string{"level=ERROR msg=\"skipping link whose secrets cannot be decrypted\"", "level=ERROR msg=\"ignoring link put that is not a valid link definition\"", "does not involve this provider"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "link-pw") {
		t.Errorf("logs contain a link secret:\n%s", logs)
	}
}

func TestLinkPutReplacesSameKey(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	h := startHarness(t, k, testHostData(k, true), rec.handlers())
	first := componentToUs(t, k, nil)
	second := first
	second.TargetConfig = map[string]string{"side": "target", "version": "2"}
	other := first
	other.Name = "other-name" // a different link name is a different link

	for _, ld := range []InterfaceLinkDefinition{first, second, other} {
		h.publish(t, subject(k.providerPub, "linkdefs.put"), ld)
	}
	for range 3 {
		receive(t, rec.puts, "link put")
	}
	links := waitLinks(t, h.p, 2)
	if links[0].Name != "default" || links[0].Config["version"] != "2" {
		t.Errorf("replaced link = %v", links[0].LogValue())
	}
}

func TestLinkPutLegacyHost(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	h := startHarness(t, k, testHostData(k, false), rec.handlers())
	ld := componentToUs(t, k, nil)
	h.publish(t, subject(testProvider, "linkdefs.put"), ld)
	checkLink(t, receive(t, rec.puts, "link put"), ld, true, map[string]SecretValue{})

	// Sealed secrets cannot be opened without xkeys: the link is skipped.
	sealed := componentToUs(t, k, map[string]SecretValue{"pw": StringSecret("x")})
	sealed.Name = "sealed"
	h.publish(t, subject(testProvider, "linkdefs.put"), sealed)
	sentinel := usToComponent(t, k, nil)
	h.publish(t, subject(testProvider, "linkdefs.put"), sentinel)
	checkLink(t, receive(t, rec.puts, "sentinel link put"), sentinel, false, map[string]SecretValue{})
	waitLinks(t, h.p, 2)
}

func TestInitialLinkDefinitions(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	hd := testHostData(k, true)
	secrets := map[string]SecretValue{"pw": StringSecret("initial-pw")}
	toUs := componentToUs(t, k, secrets)
	fromUs := usToComponent(t, k, nil)
	foreign := fromUs
	foreign.SourceID = "not-us"
	broken := toUs
	broken.Name = "broken"
	broken.TargetSecrets = sealRaw(t, k, "not json")
	hd.LinkDefinitions = []InterfaceLinkDefinition{toUs, foreign, broken, fromUs}

	h := startHarness(t, k, hd, rec.handlers())
	// Start applies them before returning.
	if len(rec.puts) != 2 {
		t.Fatalf("LinkPut called %d times during Start, want 2", len(rec.puts))
	}
	checkLink(t, <-rec.puts, toUs, true, secrets)
	checkLink(t, <-rec.puts, fromUs, false, map[string]SecretValue{})
	if n := len(h.p.Links()); n != 2 {
		t.Errorf("Links() = %d, want 2", n)
	}
	if !strings.Contains(h.logs.String(), "level=ERROR") {
		t.Errorf("undecryptable initial link not logged at ERROR:\n%s", h.logs.String())
	}
}

func TestLinkDel(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	hd := testHostData(k, true)
	secrets := map[string]SecretValue{"pw": StringSecret("pw")}
	known := componentToUs(t, k, secrets)
	hd.LinkDefinitions = []InterfaceLinkDefinition{known}
	h := startHarness(t, k, hd, rec.handlers())
	receive(t, rec.puts, "initial link put")

	// The host's delete carries empty config and no secrets; the handler gets the link as it was put.
	del := known
	del.SourceConfig, del.TargetConfig, del.SourceSecrets, del.TargetSecrets = map[string]string{}, map[string]string{}, nil, nil
	h.publish(t, subject(testProvider, "linkdefs.del"), del)
	checkLink(t, receive(t, rec.dels, "link delete"), known, true, secrets)
	if n := len(h.p.Links()); n != 0 {
		t.Errorf("Links() = %d after delete, want 0", n)
	}

	unknown := usToComponent(t, k, nil)
	unknown.SourceConfig = map[string]string{}
	h.publish(t, subject(testProvider, "linkdefs.del"), InterfaceLinkDefinition{SourceID: "x", Target: "y"})
	h.publish(t, subject(testProvider, "linkdefs.del"), unknown)
	checkLink(t, receive(t, rec.dels, "delete of unknown link"), unknown, false, map[string]SecretValue{})
	expectNone(t, rec.dels, "link delete")
}

func TestConfigUpdate(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	h := startHarness(t, k, testHostData(k, true), rec.handlers())
	subj := subject(testProvider, "config.update")

	h.publish(t, subj, "not json")
	h.publish(t, subj, `{"a":1}`)
	h.publish(t, subj, `null`)
	h.publish(t, subj, `{"log_level":"debug","cache_ttl":"5m"}`)
	got := receive(t, rec.configs, "config update")
	if want := map[string]string{"log_level": "debug", "cache_ttl": "5m"}; !reflect.DeepEqual(got, want) {
		t.Errorf("config = %v, want %v", got, want)
	}
	expectNone(t, rec.configs, "config update")
	if n := strings.Count(h.logs.String(), `level=ERROR msg="ignoring config update`); n != 3 {
		t.Errorf("%d ERROR logs for invalid updates, want 3:\n%s", n, h.logs.String())
	}

	rec.setFailConfig(errors.New("cache_ttl must be positive"))
	h.publish(t, subj, `{"cache_ttl":"-1s"}`)
	receive(t, rec.configs, "rejected config update")
	// The ERROR log follows the callback; a health round trip cannot order it, so wait for it.
	eventually.NoError(t, "the rejected update to be logged at ERROR", func() error {
		if !strings.Contains(h.logs.String(), `level=ERROR msg="config update rejected; keeping the current settings"`) {
			return fmt.Errorf("not in the logs:\n%s", h.logs.String())
		}
		return nil
	})
}

func TestSlow_Health(t *testing.T) {
	k := newTestKeys(t)
	tests := []struct {
		name   string
		health func(ctx context.Context) (bool, string)
		want   healthReply
	}{
		{name: "no callback", want: healthReply{Healthy: true, Message: "healthy"}},
		{name: "healthy", health: func(context.Context) (bool, string) { return true, "ok" }, want: healthReply{true, "ok"}},
		{name: "unhealthy with reason", health: func(context.Context) (bool, string) { return false, "Infisical unreachable" }, want: healthReply{false, "Infisical unreachable"}},
		{name: "unhealthy without reason", health: func(context.Context) (bool, string) { return false, "" }, want: healthReply{false, "unhealthy"}},
		{
			name: "slow callback",
			health: func(ctx context.Context) (bool, string) {
				select {
				case <-ctx.Done():
				case <-time.After(waitLimit):
				}
				return true, "too late"
			},
			want: healthReply{false, "health check timed out"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHarness(t, k, testHostData(k, true), Handlers{Health: tt.health})
			// 2 s is the host's request timeout (WASMCLOUD_RPC_TIMEOUT_MS default): the reply must beat it.
			msg, err := h.host.Request(subject(testProvider, "health"), nil, 2*time.Second)
			if err != nil {
				t.Fatalf("health request: %v", err)
			}
			var got healthReply
			if err := json.Unmarshal(msg.Data, &got); err != nil {
				t.Fatalf("reply %q: %v", msg.Data, err)
			}
			if got != tt.want {
				t.Errorf("reply = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The host waits default_rpc_timeout_ms for a health reply (its RPC client's request timeout): the callback's
// budget must fit inside it, whatever the host sets.
func TestHealthBudgetFollowsHostRPCTimeout(t *testing.T) {
	k := newTestKeys(t)
	for _, tt := range []struct {
		name      string
		timeoutMS *uint64
		limit     time.Duration
	}{
		{"host default (2 s)", nil, 2 * time.Second},
		{"short host timeout", ptrTo(uint64(400)), 400 * time.Millisecond},
		{"long host timeout", ptrTo(uint64(10000)), 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hd := testHostData(k, true)
			hd.DefaultRPCTimeoutMS = tt.timeoutMS
			left := make(chan time.Duration, 1)
			h := startHarness(t, k, hd, Handlers{Health: func(ctx context.Context) (bool, string) {
				d, ok := ctx.Deadline()
				if !ok {
					left <- -1
				} else {
					left <- time.Until(d)
				}
				return true, ""
			}})
			if _, err := h.host.Request(subject(testProvider, "health"), nil, waitLimit); err != nil {
				t.Fatalf("health request: %v", err)
			}
			got := <-left
			// Some of the host's wait must remain for sending the reply, and the budget must not be tiny.
			if got <= tt.limit/2 || got >= tt.limit {
				t.Errorf("health callback budget %v, want between %v and %v (host timeout %v)", got, tt.limit/2, tt.limit, tt.limit)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestShutdown(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	h := startHarness(t, k, testHostData(k, true), rec.handlers())
	subj := subject(testProvider, "default.shutdown")

	for _, ignored := range []string{`{"host_id":"NOTHERHOST"}`, `not json`, `{}`} {
		_, err := h.host.Request(subj, []byte(ignored), 200*time.Millisecond)
		if !errors.Is(err, nats.ErrTimeout) {
			t.Errorf("shutdown %s: err = %v, want a timeout (ignored)", ignored, err)
		}
	}
	select {
	case <-h.p.Done():
		t.Fatal("Done closed by a shutdown for another host")
	default:
	}
	expectNone(t, rec.shutdowns, "shutdown callback")
	if !strings.Contains(h.logs.String(), "level=WARN msg=\"ignoring shutdown request for another host\"") {
		t.Errorf("foreign shutdown not logged at WARN:\n%s", h.logs.String())
	}

	body, _ := json.Marshal(shutdownRequest{HostID: testHostID})
	msg, err := h.host.Request(subj, body, waitLimit)
	if err != nil {
		t.Fatalf("shutdown request: %v", err)
	}
	if string(msg.Data) != "shutting down" {
		t.Errorf("reply = %q", msg.Data)
	}
	receive(t, rec.shutdowns, "shutdown callback")
	select {
	case <-h.p.Done():
	case <-time.After(waitLimit):
		t.Fatal("Done not closed after our host's shutdown")
	}

	if _, err := h.host.Request(subj, body, waitLimit); err != nil {
		t.Fatalf("second shutdown request: %v", err)
	}
	expectNone(t, rec.shutdowns, "second shutdown callback")
}

func TestHostMessagesContinueTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(previous)
		_ = tp.Shutdown(context.Background())
	})

	k := newTestKeys(t)
	h := startHarness(t, k, testHostData(k, true), Handlers{})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := nats.NewMsg(subject(testProvider, "health"))
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := h.host.RequestMsg(req, waitLimit); err != nil {
		t.Fatalf("health request: %v", err)
	}
	var health sdktrace.ReadOnlySpan
	eventually.True(t, "a wasmbus.health span to end", func() bool {
		for _, s := range spans.Ended() {
			if s.Name() == "wasmbus.health" {
				health = s
				return true
			}
		}
		return false
	})
	if got := health.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("span trace id = %s, want the host's %s", got, traceID)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	k := newTestKeys(t)
	url, _ := natstest.Start(t)
	nc := natstest.Connect(t, url)
	badXKey := testHostData(k, true)
	badXKey.ProviderXKeyPrivateKey = "SXNOPE"
	tests := []struct {
		name    string
		nc      *nats.Conn
		hd      *HostData
		wantErr string
	}{
		{"nil conn", nil, testHostData(k, true), "nil NATS connection"},
		{"nil host data", nc, nil, "nil host data"},
		{"no provider key", nc, &HostData{LatticeRPCURL: url, LatticeRPCPrefix: "default"}, "provider_key"},
		{"bad xkey", nc, badXKey, "provider_xkey_private_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.nc, tt.hd, Handlers{}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A link whose secrets cannot be decrypted is not applied, but the provider hears of it (without secrets), so that
// it can fail closed for whatever the link would have configured.
func TestUndecryptableLinkReachesLinkUnreadable(t *testing.T) {
	k := newTestKeys(t)
	rec := newRecorder()
	unreadable := make(chan Link, 1)
	handlers := rec.handlers()
	handlers.LinkUnreadable = func(_ context.Context, l Link, err error) {
		if err == nil {
			t.Error("LinkUnreadable got no error")
		}
		unreadable <- l
	}
	h := startHarness(t, k, testHostData(k, true), handlers)
	ld := componentToUs(t, k, nil)
	ld.SourceID = "shop-api"
	ld.TargetConfig = map[string]string{"APPLICATION": "shop"}
	ld.TargetSecrets = ptr([]byte("xkv1 not sealed to us at all, nope"))
	h.publish(t, subject(k.providerPub, "linkdefs.put"), ld)
	got := receive(t, unreadable, "the undecryptable link")
	if got.SourceID != "shop-api" || got.Config["APPLICATION"] != "shop" || len(got.Secrets) != 0 || !got.IsTarget {
		t.Fatalf("LinkUnreadable got %#v", got.LogValue())
	}
	expectNone(t, rec.puts, "link put")
	if n := len(h.p.Links()); n != 0 {
		t.Fatalf("the undecryptable link was recorded (%d links)", n)
	}
}
