package secrets

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// identity is a minted component and host, as a host would present them.
type identity struct {
	issuer       nkeys.KeyPair
	entitySub    string
	hostSub      string
	entityJWT    string
	hostJWT      string
	providerJWT  string
	providerSub  string
	expiredJWT   string
	componentNam string
}

// mintIdentity mints the JWTs a host would send: a component, a provider and a self-signed host token.
func mintIdentity(t testing.TB) *identity {
	t.Helper()
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("mint: %v", err)
		}
		return s
	}
	acct, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	hostKP, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	id := &identity{issuer: acct, componentNam: "counter"}
	id.entitySub = must(wascap.NewPublicKey(wascap.PrefixModule))
	id.providerSub = must(wascap.NewPublicKey(wascap.PrefixService))
	id.hostSub = must(hostKP.PublicKey())
	now := time.Now()
	id.entityJWT = must(wascap.MintComponent(acct, id.entitySub, id.componentNam, now))
	id.providerJWT = must(wascap.MintProvider(acct, id.providerSub, "kv", "acme", nil, now))
	id.hostJWT = must(wascap.MintHost(acct, id.hostSub, "quiet-sea-1", now))
	iss := must(acct.PublicKey())
	id.expiredJWT = must(wascap.Sign(map[string]any{
		"jti": "j", "iat": 1, "exp": 1000, "iss": iss, "sub": id.entitySub, "wascap": map[string]any{"hash": "AB"},
	}, acct))
	return id
}

func strp(s string) *string { return &s }

// request builds a host-shaped request for key.
func (id *identity) request(key, policy string) *Request {
	return &Request{
		Key: key,
		Context: RequestContext{
			EntityJWT:   id.entityJWT,
			HostJWT:     id.hostJWT,
			Application: &Application{Name: strp("my-app"), Policy: policy},
		},
	}
}

// fixture is a running Server on a real NATS server, plus what a test needs to talk to it.
type fixture struct {
	t        testing.TB
	nc       *nats.Conn
	srv      *Server
	serverKP nkeys.KeyPair
	id       *identity
	backend  string
}

func newFixture(t testing.TB, h Handler, tweak ...func(*ServerConfig)) *fixture {
	t.Helper()
	nc := startNATS(t)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{Backend: "infisical", XKey: kp, Handler: h, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range tweak {
		f(&cfg)
	}
	srv, err := NewServer(nc, cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &fixture{t: t, nc: nc, srv: srv, serverKP: kp, id: mintIdentity(t), backend: cfg.Backend}
}

func (f *fixture) subject(op string) string {
	return DefaultPrefix + "." + DefaultAPIVersion + "." + f.backend + "." + op
}

// pendingGets is how many gets the server has received and not finished.
func (f *fixture) pendingGets() int {
	f.srv.pendingMu.Lock()
	defer f.srv.pendingMu.Unlock()
	return len(f.srv.pending)
}

// seal encodes v (or uses raw bytes) and seals it from a fresh host key to the server, returning the header
// that goes with it and the host key to open the reply.
func (f *fixture) seal(v any) (nats.Header, []byte, nkeys.KeyPair) {
	f.t.Helper()
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			f.t.Fatal(err)
		}
	}
	hk, err := nkeys.CreateCurveKeys()
	if err != nil {
		f.t.Fatal(err)
	}
	pub, _ := hk.PublicKey()
	sealed, err := hk.Seal(body, f.srv.PublicXKey())
	if err != nil {
		f.t.Fatal(err)
	}
	return nats.Header{HostXkeyHeader: []string{pub}}, sealed, hk
}

// raw sends a get with exactly these headers and payload and returns the reply.
func (f *fixture) raw(subject string, hdr nats.Header, data []byte) *nats.Msg {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := f.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: data})
	if err != nil {
		f.t.Fatalf("request %s: %v", subject, err)
	}
	return reply
}

// open decrypts a success reply with the host key.
func (f *fixture) open(reply *nats.Msg, hk nkeys.KeyPair) []byte {
	f.t.Helper()
	rk := reply.Header.Get(ResponseXkeyHeader)
	if rk == "" {
		f.t.Fatalf("success reply without %s header; body %s", ResponseXkeyHeader, reply.Data)
	}
	body, err := hk.Open(reply.Data, rk)
	if err != nil {
		f.t.Fatalf("open reply: %v", err)
	}
	return body
}

func (f *fixture) client() *Client { return NewClient(f.nc, "", f.backend) }

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func startNATS(t testing.TB) *nats.Conn {
	t.Helper()
	url, _ := natstest.Start(t)
	return natstest.Connect(t, url)
}
