package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// testHandler answers by key, so one server covers every handler outcome.
type testHandler struct {
	calls atomic.Int64
	mu    sync.Mutex
	last  *Verified
	// release holds the answer to key "slow" until it is closed, whatever the request's context says, as a handler
	// stuck in a call that cannot be cancelled; answered is closed once that late answer is returned.
	release, answered chan struct{}
}

// slowHandler is a testHandler whose key "slow" answers only once the test closes release.
func slowHandler() *testHandler {
	return &testHandler{release: make(chan struct{}), answered: make(chan struct{})}
}

func (h *testHandler) Get(ctx context.Context, v *Verified) (*Secret, error) {
	h.calls.Add(1)
	h.mu.Lock()
	h.last = v
	h.mu.Unlock()
	switch v.Request.Key {
	case "notfound":
		return nil, NewError(KindSecretNotFound, "")
	case "denied":
		return nil, fmt.Errorf("rule 2: %w", NewError(KindUnauthorized, ""))
	case "boom":
		return nil, errors.New("infisical: 503 from api")
	case "nil":
		return nil, nil
	case "empty":
		return &Secret{Version: "1"}, nil
	case "panic":
		panic("handler bug")
	case "binary":
		return &Secret{Version: "1", BinarySecret: ByteArray{0, 1, 2, 255}}, nil
	case "slow":
		<-h.release // ignores ctx on purpose
		defer close(h.answered)
		return &Secret{Version: "1", StringSecret: strp("late")}, nil
	case "annotated":
		Annotate(ctx, slog.String("tenant", "t1"), slog.Int("folder_depth", 2))
	}
	return &Secret{Version: "3", StringSecret: strp("value-of-" + v.Request.Key)}, nil
}

func (h *testHandler) lastVerified() *Verified {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func TestGetErrorReplies(t *testing.T) {
	h := &testHandler{}
	f := newFixture(t, h)
	id := f.id
	otherServer, _ := nkeys.CreateCurveKeys()
	otherPub, _ := otherServer.PublicKey()
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()

	good := func(mut func(r *Request)) any {
		r := id.request("db", `{"type":"t","properties":{"project":"p"}}`)
		if mut != nil {
			mut(r)
		}
		return r
	}
	type input struct {
		hdr  nats.Header
		data []byte
	}
	sealedTo := func(v any) input {
		hdr, data, _ := f.seal(v)
		return input{hdr, data}
	}
	tests := []struct {
		name string
		in   func() input
		want string
	}{
		{"payload over limit", func() input {
			hdr, _, _ := f.seal(good(nil))
			return input{hdr, bytes.Repeat([]byte{1}, MaxPayload+1)}
		}, `"InvalidPayload"`},
		{"no headers", func() input { _, data, _ := f.seal(good(nil)); return input{nil, data} }, `"InvalidHeaders"`},
		{"no xkey header", func() input {
			_, data, _ := f.seal(good(nil))
			return input{nats.Header{"Other": []string{"x"}}, data}
		}, `"InvalidHeaders"`},
		{"empty xkey header", func() input {
			_, data, _ := f.seal(good(nil))
			return input{nats.Header{HostXkeyHeader: []string{""}}, data}
		}, `"InvalidHeaders"`},
		{"xkey not a key", func() input {
			_, data, _ := f.seal(good(nil))
			return input{nats.Header{HostXkeyHeader: []string{"XNOTAKEY"}}, data}
		}, `"InvalidXKey"`},
		{"xkey is an account key", func() input {
			_, data, _ := f.seal(good(nil))
			return input{nats.Header{HostXkeyHeader: []string{acctPub}}, data}
		}, `"InvalidXKey"`},
		{"empty payload", func() input { hdr, _, _ := f.seal(good(nil)); return input{hdr, nil} }, `"InvalidPayload"`},
		{"garbage payload", func() input {
			hdr, _, _ := f.seal(good(nil))
			return input{hdr, []byte("not sealed at all, just text")}
		}, `"DecryptionError"`},
		{"sealed to another server key", func() input {
			hk, _ := nkeys.CreateCurveKeys()
			pub, _ := hk.PublicKey()
			data, _ := hk.Seal([]byte(`{}`), otherPub)
			return input{nats.Header{HostXkeyHeader: []string{pub}}, data}
		}, `"DecryptionError"`},
		{"header names another key than the sealer", func() input {
			_, data, _ := f.seal(good(nil))
			hk, _ := nkeys.CreateCurveKeys()
			pub, _ := hk.PublicKey()
			return input{nats.Header{HostXkeyHeader: []string{pub}}, data}
		}, `"DecryptionError"`},
		{"body not json", func() input { return sealedTo([]byte("hello")) }, `"InvalidPayload"`},
		{"body an array", func() input { return sealedTo([]byte("[1,2]")) }, `"InvalidPayload"`},
		{"missing key", func() input { return sealedTo([]byte(`{"context":{}}`)) }, `"InvalidPayload"`},
		{"empty key", func() input { return sealedTo(good(func(r *Request) { r.Key = "" })) }, `"InvalidRequest"`},
		{"entity jwt garbage", func() input { return sealedTo(good(func(r *Request) { r.Context.EntityJWT = "garbage" })) },
			`{"InvalidEntityJWT":"invalid token format, expected 3 segments, found 1"}`},
		{"entity jwt expired", func() input { return sealedTo(good(func(r *Request) { r.Context.EntityJWT = id.expiredJWT })) },
			`{"InvalidEntityJWT":"token expired at 1970-01-01T00:16:40Z"}`},
		{"entity jwt subject not a module key", func() input {
			tok, err := wascap.MintComponent(id.issuer, acctPub, "c", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return sealedTo(good(func(r *Request) { r.Context.EntityJWT = tok }))
		}, `{"InvalidEntityJWT":"JWT error: invalid subject: subject \"` + acctPub + `\" is not a module key (M...), as a component's: invalid public key: prefix \"A\", want \"M\""}`},
		{"entity jwt is a host jwt", func() input { return sealedTo(good(func(r *Request) { r.Context.EntityJWT = id.hostJWT })) },
			`{"InvalidEntityJWT":"token is neither a component nor a capability provider: missing field ` + "`hash`" + ` (want wascap.hash for a component, or wascap.vendor and wascap.target_hashes for a provider)"}`},
		{"host jwt missing", func() input { return sealedTo(good(func(r *Request) { r.Context.HostJWT = "" })) },
			`{"InvalidHostJWT":"invalid token format, expected 3 segments, found 1"}`},
		{"policy number property", func() input {
			return sealedTo(good(func(r *Request) { r.Context.Application.Policy = `{"properties":{"ttl":30}}` }))
		}, `{"PolicyError":"policy property \"ttl\" is not a string (got a number)"}`},
		{"policy not json", func() input {
			return sealedTo(good(func(r *Request) { r.Context.Application.Policy = `nope` }))
		}, `{"PolicyError":"policy is not a JSON object"}`},
		{"handler not found", func() input { return sealedTo(good(func(r *Request) { r.Key = "notfound" })) }, `"SecretNotFound"`},
		{"handler wrapped unauthorized", func() input { return sealedTo(good(func(r *Request) { r.Key = "denied" })) }, `"Unauthorized"`},
		{"handler plain error", func() input { return sealedTo(good(func(r *Request) { r.Key = "boom" })) }, `{"UpstreamError":"infisical: 503 from api"}`},
		{"handler nil secret", func() input { return sealedTo(good(func(r *Request) { r.Key = "nil" })) }, `{"Other":"backend returned no secret"}`},
		{"handler secret without value", func() input { return sealedTo(good(func(r *Request) { r.Key = "empty" })) }, `{"Other":"backend returned a secret without a value"}`},
		{"handler panic", func() input { return sealedTo(good(func(r *Request) { r.Key = "panic" })) }, `{"Other":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			reply := f.raw(f.subject("get"), in.hdr, in.data)
			if got := string(reply.Data); got != `{"error":`+tt.want+`}` {
				t.Errorf("reply = %s\nwant    {\"error\":%s}", got, tt.want)
			}
			if len(reply.Header) != 0 {
				t.Errorf("error reply has headers %v", reply.Header)
			}
		})
	}
	// After all of that, including a panic, the server still serves.
	hdr, data, hk := f.seal(id.request("after", ""))
	if body := f.open(f.raw(f.subject("get"), hdr, data), hk); !strings.Contains(string(body), "value-of-after") {
		t.Errorf("server stopped serving: %s", body)
	}
}

func TestGetSuccess(t *testing.T) {
	h := &testHandler{}
	f := newFixture(t, h)
	tests := []struct {
		name     string
		req      *Request
		header   string
		want     string
		wantKind string
		subject  string
	}{
		{"string secret from a component", f.id.request("db", `{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{"project":"p1"}}`), HostXkeyHeader,
			`{"secret":{"version":"3","string_secret":"value-of-db","binary_secret":null}}`, "component", f.id.entitySub},
		{"binary secret", f.id.request("binary", ""), HostXkeyHeader,
			`{"secret":{"version":"1","string_secret":null,"binary_secret":[0,1,2,255]}}`, "component", f.id.entitySub},
		{"provider entity", func() *Request { r := f.id.request("db", ""); r.Context.EntityJWT = f.id.providerJWT; return r }(), HostXkeyHeader,
			`{"secret":{"version":"3","string_secret":"value-of-db","binary_secret":null}}`, "provider", f.id.providerSub},
		{"header in old docs spelling", f.id.request("db", ""), "Wasmcloud-Host-Xkey",
			`{"secret":{"version":"3","string_secret":"value-of-db","binary_secret":null}}`, "component", f.id.entitySub},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, data, hk := f.seal(tt.req)
			if tt.header != HostXkeyHeader {
				hdr = nats.Header{tt.header: hdr[HostXkeyHeader]}
			}
			reply := f.raw(f.subject("get"), hdr, data)
			body := f.open(reply, hk)
			if string(body) != tt.want {
				t.Errorf("body = %s\nwant   %s", body, tt.want)
			}
			rk := reply.Header.Get(ResponseXkeyHeader)
			if rk == f.srv.PublicXKey() || seen[rk] {
				t.Errorf("response xkey %s is not fresh", rk)
			}
			seen[rk] = true
			v := h.lastVerified()
			if v.Entity.Subject != tt.subject || v.Entity.Kind.String() != tt.wantKind || v.Host.Subject != f.id.hostSub ||
				v.Application != "my-app" {
				t.Errorf("verified = %+v entity %+v", v, v.Entity)
			}
		})
	}
	if v := h.lastVerified(); v.Policy.Properties == nil {
		t.Error("policy properties nil")
	}
}

func TestGetPassesPolicyAndApplication(t *testing.T) {
	h := &testHandler{}
	f := newFixture(t, h)
	r := f.id.request("db", `{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{"project":"p1","environment":"prod"}}`)
	r.Field = strp("password")
	r.Version = strp("7")
	if _, err := f.client().Get(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	v := h.lastVerified()
	if v.Policy.Type != PolicyType || v.Policy.Properties["project"] != "p1" || v.Policy.Properties["environment"] != "prod" {
		t.Errorf("policy = %+v", v.Policy)
	}
	if *v.Request.Field != "password" || *v.Request.Version != "7" || v.Application != "my-app" {
		t.Errorf("request = %+v", v.Request)
	}
	r.Context.Application = nil // the client fills in what a host always sends
	if _, err := f.client().Get(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	if v := h.lastVerified(); v.Application != "" || v.Policy.Type != "" {
		t.Errorf("verified = %+v", v)
	}
}

func TestServerXKeyAndUnknownOps(t *testing.T) {
	f := newFixture(t, &testHandler{})
	reply := f.raw(f.subject("server_xkey"), nil, nil)
	if string(reply.Data) != f.srv.PublicXKey() || len(reply.Data) != 56 || reply.Data[0] != 'X' || len(reply.Header) != 0 {
		t.Fatalf("server_xkey reply %q headers %v", reply.Data, reply.Header)
	}
	for _, op := range []string{"put_secret", "get.extra", "server_xkey.x", "add_mapping.MABC"} {
		t.Run(op, func(t *testing.T) {
			reply := f.raw(f.subject(op), nil, nil)
			if string(reply.Data) != `{"error":"InvalidRequest"}` || len(reply.Header) != 0 {
				t.Errorf("reply %s headers %v", reply.Data, reply.Header)
			}
		})
	}
}

func TestMessagesWithoutReplyAreIgnored(t *testing.T) {
	h := &testHandler{}
	f := newFixture(t, h)
	hdr, data, _ := f.seal(f.id.request("db", ""))
	if err := f.nc.PublishMsg(&nats.Msg{Subject: f.subject("get"), Header: hdr, Data: data}); err != nil {
		t.Fatal(err)
	}
	if err := f.nc.Publish(f.subject("server_xkey"), nil); err != nil {
		t.Fatal(err)
	}
	// The server handles messages in order of arrival on one subscription, so once this reply is back the
	// reply-less message has been seen.
	if _, err := f.client().Get(testCtx(t), f.id.request("db", "")); err != nil {
		t.Fatal(err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (the reply-less get must be ignored)", n)
	}
}

func TestSlowHandlerGetsTimeoutReply(t *testing.T) {
	h := slowHandler()
	f := newFixture(t, h, func(c *ServerConfig) { c.Budget = 300 * time.Millisecond })
	hdr, data, _ := f.seal(f.id.request("slow", ""))
	// The handler answers only once released, after the reply: a reply at all comes from the timeout path.
	reply := f.raw(f.subject("get"), hdr, data)
	if got := string(reply.Data); got != `{"error":{"UpstreamError":"timed out after 225ms"}}` || len(reply.Header) != 0 {
		t.Fatalf("reply = %s headers %v", got, reply.Header)
	}
	close(h.release)
	<-h.answered
	// The late result is dropped: no second reply arrives on a fresh inbox, and the server keeps serving.
	sec, err := f.client().Get(testCtx(t), f.id.request("db", ""))
	if err != nil || *sec.StringSecret != "value-of-db" {
		t.Fatalf("after timeout: %v, %v", sec, err)
	}
}

func TestTimeoutReplyIsSentOnce(t *testing.T) {
	h := slowHandler()
	f := newFixture(t, h, func(c *ServerConfig) { c.Budget = 300 * time.Millisecond })
	inbox := nats.NewInbox()
	sub, err := f.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	hdr, data, _ := f.seal(f.id.request("slow", ""))
	if err := f.nc.PublishMsg(&nats.Msg{Subject: f.subject("get"), Reply: inbox, Header: hdr, Data: data}); err != nil {
		t.Fatal(err)
	}
	first, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if !strings.Contains(string(first.Data), "UpstreamError") {
		t.Errorf("first reply %s", first.Data)
	}
	// Let the handler return its late result, and the server finish with it; then make sure it was not sent.
	close(h.release)
	<-h.answered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Not a synchronisation: the window in which a second reply would arrive.
	if extra, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("second reply sent: %s", extra.Data)
	}
}

func TestConcurrentGets(t *testing.T) {
	var inFlight, peak atomic.Int64
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &Secret{Version: "1", StringSecret: strp(v.Request.Key)}, nil
	})
	f := newFixture(t, h)
	c := f.client()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			sec, err := c.Get(testCtx(t), f.id.request(key, ""))
			if err == nil && *sec.StringSecret != key {
				err = fmt.Errorf("got %q for %s", *sec.StringSecret, key)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if peak.Load() < 2 {
		t.Errorf("handlers never overlapped (peak %d): requests are serialized", peak.Load())
	}
}

// A shutdown whose context ends before an in-flight request finishes answers that request at once (the process is
// about to exit, and the host would otherwise wait out its timeout), and ignores the handler's late result.
func TestShutdownAnswersInFlightWhenItCannotWait(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		close(entered)
		<-release
		return &Secret{Version: "1", StringSecret: strp("done")}, nil
	})
	f := newFixture(t, h)
	type res struct {
		sec *Secret
		err error
	}
	got := make(chan res, 1)
	go func() {
		sec, err := f.client().Get(testCtx(t), f.id.request("db", ""))
		got <- res{sec, err}
	}()
	<-entered

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a request in flight returned %v, want deadline exceeded", err)
	}
	r := <-got // answered before the handler returns
	var werr *Error
	if !errors.As(r.err, &werr) || werr.Kind != KindUpstreamError || !strings.Contains(werr.Message, "shutting down") {
		t.Fatalf("in-flight request: %v, %v; want UpstreamError saying the backend is shutting down", r.sec, r.err)
	}
	close(release)
	if err := f.srv.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// No new work after shutdown: nobody answers any more.
	ctx, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := f.nc.RequestWithContext(ctx, f.subject("server_xkey"), nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after shutdown: %v, want no responders", err)
	}
	if err := f.srv.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	nc := startNATS(t)
	kp, _ := nkeys.CreateCurveKeys()
	srv, err := NewServer(nc, ServerConfig{Backend: "b", XKey: kp, Handler: &testHandler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestNewServerValidates(t *testing.T) {
	nc := startNATS(t)
	curve, _ := nkeys.CreateCurveKeys()
	curvePub, _ := curve.PublicKey()
	pubOnly, _ := nkeys.FromPublicKey(curvePub)
	acct, _ := nkeys.CreateAccount()
	h := &testHandler{}
	tests := []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no backend", ServerConfig{XKey: curve, Handler: h}, "backend name is required"},
		{"dotted backend", ServerConfig{Backend: "a.b", XKey: curve, Handler: h}, "single subject token"},
		{"wildcard backend", ServerConfig{Backend: "*", XKey: curve, Handler: h}, "wildcard"},
		{"bad prefix", ServerConfig{Prefix: "a..b", Backend: "b", XKey: curve, Handler: h}, "empty subject token"},
		{"no handler", ServerConfig{Backend: "b", XKey: curve}, "handler is required"},
		{"no xkey", ServerConfig{Backend: "b", Handler: h}, "xkey is required"},
		{"account key", ServerConfig{Backend: "b", XKey: acct, Handler: h}, "not a curve"},
		{"public only", ServerConfig{Backend: "b", XKey: pubOnly, Handler: h}, "no private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(nc, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	srv, err := NewServer(nc, ServerConfig{Backend: "b", XKey: curve, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.QueueGroup != "wasmcloud.secrets.b" || srv.Subject() != "wasmcloud.secrets.v1alpha1.b.>" || srv.cfg.Workers != DefaultWorkers {
		t.Errorf("defaults: %+v", srv.cfg)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		close(entered)
		<-release
		return &Secret{Version: "1", StringSecret: strp("done")}, nil
	})
	f := newFixture(t, h)
	got := make(chan error, 1)
	var sec *Secret
	go func() {
		var err error
		sec, err = f.client().Get(testCtx(t), f.id.request("db", ""))
		got <- err
	}()
	<-entered
	shutdown := make(chan error, 1)
	go func() { shutdown <- f.srv.Shutdown(testCtx(t)) }()
	// Once the server takes no more requests its shutdown is under way, and must wait for the one in flight.
	eventually.True(t, "the server to stop taking requests", func() bool {
		_, err := f.nc.Request(f.subject(OpServerXKey), nil, time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
	select {
	case err := <-shutdown:
		t.Fatalf("shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-shutdown; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-got; err != nil || sec == nil || *sec.StringSecret != "done" {
		t.Fatalf("in-flight request: %v, %v; want it served", sec, err)
	}
}

// When a shutdown cannot wait, every request already received is answered, queued ones included, and later ones are
// refused: none is left for the host to time out on.
func TestShutdownThatCannotWaitAnswersEveryRequest(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		<-release
		return &Secret{Version: "1", StringSecret: strp("late")}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) { c.Workers = 1 })
	const n = 10
	replies := make(chan *nats.Msg, n)
	inbox := nats.NewInbox()
	sub, err := f.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for range n {
		hdr, data, _ := f.seal(f.id.request("db", ""))
		if err := f.nc.PublishMsg(&nats.Msg{Subject: f.subject("get"), Reply: inbox, Header: hdr, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "every request to reach the server", func() bool { return f.pendingGets() == n })
	short, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_ = f.srv.Shutdown(short)
	for i := range n {
		select {
		case m := <-replies:
			if !strings.Contains(string(m.Data), "shutting down") {
				t.Errorf("reply %d = %s; want the shutting-down error", i, m.Data)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("only %d of %d requests were answered", i, n)
		}
	}
}

// Hosts send requests on their control connection's account; credentials that may not subscribe there leave the
// backend deaf. NATS only says so asynchronously, so the server must notice and say why (health reports it).
func TestStartNoticesSubscribePermissionDenied(t *testing.T) {
	srv, err := natstest.Run(&server.Options{Users: []*server.User{{
		Username: "deaf", Password: "pw",
		Permissions: &server.Permissions{Subscribe: &server.SubjectPermission{Deny: []string{"wasmcloud.secrets.>"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc := natstest.Connect(t, srv.ClientURL(), nats.UserInfo("deaf", "pw"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	s, err := NewServer(nc, ServerConfig{Backend: "infisical", XKey: newCurveKey(t), Handler: HandlerFunc(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	err = s.Receiving()
	if err == nil || !strings.Contains(err.Error(), "wasmcloud.secrets.v1alpha1.infisical.>") || !strings.Contains(err.Error(), "ermission") {
		t.Errorf("Receiving() = %v, want a permissions error naming the subject", err)
	}

	// With the right to subscribe, nothing is reported.
	ok := natstestServerWithoutAuth(t)
	s2, err := NewServer(ok, ServerConfig{Backend: "infisical", XKey: newCurveKey(t), Handler: HandlerFunc(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Shutdown(context.Background()) })
	if err := s2.Receiving(); err != nil {
		t.Errorf("Receiving() = %v, want nil", err)
	}
}

func natstestServerWithoutAuth(t *testing.T) *nats.Conn {
	t.Helper()
	url, _ := natstest.Start(t)
	return natstest.Connect(t, url)
}

func newCurveKey(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// An oversized request is refused when it arrives, never queued: the queue's memory bound holds only if nothing
// bigger than MaxPayload (and MaxHeaderBytes of headers) ever waits in it. Here the one worker is busy and the one
// queue slot taken, so only the arrival check can answer.
func TestOversizedRequestsAreRefusedOnArrival(t *testing.T) {
	entered, release := make(chan struct{}, 4), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, v *Verified) (*Secret, error) {
		entered <- struct{}{}
		<-release
		return &Secret{Version: "1", StringSecret: strp("v")}, nil
	})
	f := newFixture(t, h, func(c *ServerConfig) { c.Workers, c.QueueSize = 1, 1 })
	inbox := nats.NewInbox()
	sub, err := f.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	send := func(hdr nats.Header, data []byte) {
		t.Helper()
		if err := f.nc.PublishMsg(&nats.Msg{Subject: f.subject("get"), Reply: inbox, Header: hdr, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	hdr, data, _ := f.seal(f.id.request("db", ""))
	send(hdr, data)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request never reached the handler")
	}
	send(hdr, data) // waits in the one queue slot
	if err := f.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	big := nats.Header{HostXkeyHeader: hdr[HostXkeyHeader], "X-Padding": []string{strings.Repeat("p", MaxHeaderBytes)}}
	for _, tt := range []struct {
		name string
		hdr  nats.Header
		data []byte
		want string
	}{
		{name: "payload", hdr: hdr, data: bytes.Repeat([]byte{1}, MaxPayload+1), want: `{"error":"InvalidPayload"}`},
		{name: "headers", hdr: big, data: data, want: `{"error":"InvalidHeaders"}`},
	} {
		reply := f.raw(f.subject("get"), tt.hdr, tt.data)
		if string(reply.Data) != tt.want {
			t.Errorf("oversized %s while the queue is full: reply %s; want %s", tt.name, reply.Data, tt.want)
		}
	}
	close(release)
	for range 2 {
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("a queued request got no reply: %v", err)
		}
	}
}

// The server remembers verified JWTs (VerifiedTokens), but a remembered entity JWT that has expired since is refused
// exactly as a new one would be.
func TestRememberedJWTStillExpires(t *testing.T) {
	var now atomic.Int64
	start := time.Now()
	now.Store(start.UnixNano())
	h := &testHandler{}
	f := newFixture(t, h, func(c *ServerConfig) { c.Now = func() time.Time { return time.Unix(0, now.Load()) } })
	iss, _ := f.id.issuer.PublicKey()
	expires := start.Add(time.Minute).Unix()
	expiring, err := wascap.Sign(map[string]any{"jti": "j", "iat": start.Unix(), "exp": expires, "iss": iss,
		"sub": f.id.entitySub, "wascap": map[string]any{"hash": "AB"}}, f.id.issuer)
	if err != nil {
		t.Fatal(err)
	}
	req := f.id.request("db", "")
	req.Context.EntityJWT = expiring
	get := func() string {
		hdr, data, hk := f.seal(req)
		reply := f.raw(f.subject("get"), hdr, data)
		if reply.Header.Get(ResponseXkeyHeader) == "" {
			return string(reply.Data) // an error reply is plain JSON
		}
		return string(f.open(reply, hk))
	}
	for range 2 {
		if got := get(); !strings.Contains(got, `"string_secret":"value-of-db"`) {
			t.Fatalf("before expiry: %s", got)
		}
	}
	if f.srv.tokens.Len() != 2 {
		t.Fatalf("the server remembers %d tokens, want the entity and the host JWT", f.srv.tokens.Len())
	}
	now.Store(start.Add(2 * time.Minute).UnixNano())
	want := fmt.Sprintf(`{"error":{"InvalidEntityJWT":"token expired at %s"}}`, time.Unix(expires, 0).UTC().Format(time.RFC3339))
	if got := get(); got != want {
		t.Fatalf("after expiry: %s\nwant %s", got, want)
	}
}
