package secrets

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// fakeBackend is a hand-written backend that records what the client sends and replies as each test says.
type fakeBackend struct {
	kp        nkeys.KeyPair
	xkeyCalls atomic.Int64

	mu        sync.Mutex
	xkeyReply []byte
	headers   nats.Header
	body      []byte
	reply     func(hostKey string) *nats.Msg // Subject is filled in
}

func newFakeBackend(t *testing.T, nc *nats.Conn) *fakeBackend {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	fb := &fakeBackend{kp: kp, xkeyReply: []byte(pub)}
	sub, err := nc.Subscribe("wasmcloud.secrets.v1alpha1.fake.>", func(m *nats.Msg) {
		switch {
		case strings.HasSuffix(m.Subject, ".server_xkey"):
			fb.xkeyCalls.Add(1)
			fb.mu.Lock()
			reply := fb.xkeyReply
			fb.mu.Unlock()
			_ = m.Respond(reply)
		case strings.HasSuffix(m.Subject, ".get"):
			hostKey := m.Header.Get(HostXkeyHeader)
			body, _ := fb.kp.Open(m.Data, hostKey)
			fb.mu.Lock()
			fb.headers, fb.body = m.Header, body
			reply := fb.reply
			fb.mu.Unlock()
			out := reply(hostKey)
			out.Subject = m.Reply
			_ = nc.PublishMsg(out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return fb
}

func (fb *fakeBackend) setXKeyReply(b []byte) {
	fb.mu.Lock()
	fb.xkeyReply = b
	fb.mu.Unlock()
}

func (fb *fakeBackend) setReply(f func(hostKey string) *nats.Msg) {
	fb.mu.Lock()
	fb.reply = f
	fb.mu.Unlock()
}

func (fb *fakeBackend) last() (nats.Header, []byte) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return fb.headers, fb.body
}

func plain(body string) func(string) *nats.Msg {
	return func(string) *nats.Msg { return &nats.Msg{Data: []byte(body)} }
}

// sealedReply seals body to the host key from a fresh key and names it in the header, unless header overrides it.
func sealedReply(t *testing.T, body string, header string) func(string) *nats.Msg {
	return func(hostKey string) *nats.Msg {
		rk, _ := nkeys.CreateCurveKeys()
		pub, _ := rk.PublicKey()
		data, err := rk.Seal([]byte(body), hostKey)
		if err != nil {
			t.Errorf("seal: %v", err)
		}
		if header != "" {
			pub = header
		}
		m := nats.NewMsg("")
		m.Header.Set(ResponseXkeyHeader, pub)
		m.Data = data
		return m
	}
}

func TestClientServerXKey(t *testing.T) {
	nc := startNATS(t)
	fb := newFakeBackend(t, nc)
	c := NewClient(nc, "", "fake")
	for range 2 {
		k, err := c.ServerXKey(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if k != string(fb.xkeyReply) {
			t.Fatalf("key %s, want %s", k, fb.xkeyReply)
		}
	}
	if n := fb.xkeyCalls.Load(); n != 1 {
		t.Errorf("server_xkey asked %d times, want 1 (cached)", n)
	}
}

func TestClientServerXKeyErrors(t *testing.T) {
	nc := startNATS(t)
	fb := newFakeBackend(t, nc)
	tests := []struct {
		name    string
		backend string
		reply   []byte
		want    string
	}{
		{"not a key", "fake", []byte("hello"), "failed to parse server xkey"},
		{"account key", "fake", []byte("ABOGB4W5DOX3UO3RVWWQGYSMVXHRPQYXVZP5U4VFMJDCYCWAR7S5CYMO"), "failed to parse server xkey"},
		{"not utf-8", "fake", []byte{0xff, 0xfe}, "failed to convert server xkey"},
		{"no responders", "nobody", nil, "failed to fetch server xkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.setXKeyReply(tt.reply)
			c := NewClient(nc, "", tt.backend)
			_, err := c.ServerXKey(testCtx(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A failure is not cached: once the backend answers properly, the same client succeeds.
	fb.setXKeyReply([]byte("junk"))
	c := NewClient(nc, "", "fake")
	if _, err := c.ServerXKey(testCtx(t)); err == nil {
		t.Fatal("junk key accepted")
	}
	pub, _ := fb.kp.PublicKey()
	fb.setXKeyReply([]byte(pub))
	if k, err := c.ServerXKey(testCtx(t)); err != nil || k != pub {
		t.Fatalf("retry: %s, %v", k, err)
	}
}

func TestClientSendsWhatTheHostSends(t *testing.T) {
	nc := startNATS(t)
	fb := newFakeBackend(t, nc)
	fb.setReply(plain(`{"error":"SecretNotFound"}`))
	c := NewClient(nc, "", "fake")
	req := &Request{Key: "db", Context: RequestContext{EntityJWT: "e.j.t", HostJWT: "h.j.t"}}
	_, err := c.Get(testCtx(t), req)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindSecretNotFound {
		t.Fatalf("err = %v, want SecretNotFound", err)
	}
	hdr, body := fb.last()
	want := `{"key":"db","field":null,"version":null,"context":{"entity_jwt":"e.j.t","host_jwt":"h.j.t","application":{"name":null,"policy":""}}}`
	if string(body) != want {
		t.Errorf("body = %s\nwant   %s", body, want)
	}
	if len(hdr) != 1 || len(hdr[HostXkeyHeader]) != 1 {
		t.Errorf("headers = %v, want exactly %s", hdr, HostXkeyHeader)
	}
	if req.Context.Application != nil {
		t.Error("Get modified the caller's request")
	}
	// Every request uses a new key.
	first := hdr.Get(HostXkeyHeader)
	_, _ = c.Get(testCtx(t), req)
	if hdr, _ := fb.last(); hdr.Get(HostXkeyHeader) == first {
		t.Error("request xkey reused")
	}
}

func TestClientDecodesReplies(t *testing.T) {
	nc := startNATS(t)
	fb := newFakeBackend(t, nc)
	c := NewClient(nc, "", "fake")
	other, _ := nkeys.CreateCurveKeys()
	otherPub, _ := other.PublicKey()
	tests := []struct {
		name    string
		reply   func(string) *nats.Msg
		want    string // string value on success
		wantBin []byte
		kind    ErrorKind
		wantErr string
	}{
		{"string", sealedReply(t, `{"secret":{"version":"1","string_secret":"s3cr3t","binary_secret":null}}`, ""), "s3cr3t", nil, "", ""},
		{"binary", sealedReply(t, `{"secret":{"version":"1","string_secret":null,"binary_secret":[0,1,2,255]}}`, ""), "", []byte{0, 1, 2, 255}, "", ""},
		{"unit error", plain(`{"error":"Unauthorized"}`), "", nil, KindUnauthorized, "Error fetching secret: unauthorized"},
		{"message error", plain(`{"error":{"UpstreamError":"down"}}`), "", nil, KindUpstreamError, "Error fetching secret: down"},
		{"no error", plain(`{}`), "", nil, "", "unhandled server error (the server errored without explanation)"},
		{"unknown variant", plain(`{"error":"PermissionDenied"}`), "", nil, "", "failed to deserialize secret response"},
		{"plain text", plain(`unknown operation get`), "", nil, "", "failed to deserialize secret response"},
		{"sealed error is dropped like the host does", sealedReply(t, `{"error":"SecretNotFound"}`, ""), "", nil, "", "missing secret: no secret found with name [db]"},
		{"missing version", sealedReply(t, `{"secret":{"string_secret":"s"}}`, ""), "", nil, "", `missing field "version"`},
		{"no value", sealedReply(t, `{"secret":{"version":"1"}}`, ""), "", nil, "", "secret db did not contain a value"},
		{"bad response key", sealedReply(t, `{}`, "XBAD"), "", nil, "", "failed to parse xkey from server response"},
		{"wrong response key", sealedReply(t, `{}`, otherPub), "", nil, "", "failed to open secret response"},
		{"sealed garbage", sealedReply(t, `nope`, ""), "", nil, "", "failed to deserialize secret response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb.setReply(tt.reply)
			sec, err := c.Get(testCtx(t), &Request{Key: "db"})
			switch {
			case tt.kind != "":
				e, ok := err.(*Error)
				if !ok || e.Kind != tt.kind || e.Error() != tt.wantErr {
					t.Fatalf("err = %#v, want *Error %s", err, tt.kind)
				}
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if tt.wantBin != nil {
					if string(sec.BinarySecret) != string(tt.wantBin) || sec.StringSecret != nil {
						t.Fatalf("secret %+v", sec)
					}
				} else if sec.StringSecret == nil || *sec.StringSecret != tt.want || sec.Version != "1" {
					t.Fatalf("secret %+v", sec)
				}
			}
		})
	}
}

func TestClientRespectsContext(t *testing.T) {
	nc := startNATS(t)
	fb := newFakeBackend(t, nc)
	// The backend answers only after the test ends: the client must give up at its context's deadline.
	testEnded := make(chan struct{})
	t.Cleanup(func() { close(testEnded) })
	fb.setReply(func(string) *nats.Msg { <-testEnded; return &nats.Msg{Data: []byte(`{}`)} })
	c := NewClient(nc, "", "fake")
	if _, err := c.ServerXKey(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, &Request{Key: "db"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestClientAgainstServer(t *testing.T) {
	f := newFixture(t, &testHandler{})
	c := f.client()
	sec, err := c.Get(testCtx(t), f.id.request("db", ""))
	if err != nil || sec.Version != "3" || *sec.StringSecret != "value-of-db" || sec.BinarySecret != nil {
		t.Fatalf("get: %+v, %v", sec, err)
	}
	sec, err = c.Get(testCtx(t), f.id.request("binary", ""))
	if err != nil || string(sec.BinarySecret) != "\x00\x01\x02\xff" {
		t.Fatalf("binary: %+v, %v", sec, err)
	}
	_, err = c.Get(testCtx(t), f.id.request("notfound", ""))
	if !errors.Is(err, NewError(KindSecretNotFound, "")) {
		t.Fatalf("notfound: %v", err)
	}
	k, err := c.ServerXKey(testCtx(t))
	if err != nil || k != f.srv.PublicXKey() {
		t.Fatalf("server xkey %s, %v", k, err)
	}
}
