package infisical

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/infisical/go-sdk"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
)

// panickingTracer panics when a span starts, standing in for a bug anywhere in a login outside the SDK call.
type panickingTracer struct{ noop.Tracer }

func (panickingTracer) Start(context.Context, string, ...trace.SpanStartOption) (context.Context, trace.Span) {
	panic("s3cr3t-from-a-panic")
}

func TestPanicsBecomeErrors(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	tests := []struct {
		name     string
		run      func(c *Client) error
		wantText string
	}{
		{name: "SDK call panics with a string", wantText: "the Infisical SDK panicked: a value of type string", run: func(c *Client) error {
			_, err := call(c, ctxWithin(t, 5*time.Second), routeGet, func() (int, error) { panic("s3cr3t-from-a-panic") })
			return err
		}},
		{name: "SDK call panics with an error", wantText: "a value of type *errors.errorString", run: func(c *Client) error {
			_, err := call(c, ctxWithin(t, 5*time.Second), routeGet, func() (int, error) { panic(errors.New("s3cr3t-from-a-panic")) })
			return err
		}},
		{name: "SDK call hits a runtime error", wantText: "the Infisical SDK panicked: runtime error: index out of range", run: func(c *Client) error {
			_, err := call(c, ctxWithin(t, 5*time.Second), routeGet, func() (int, error) {
				var s []int
				return s[len(c.baseURL)], nil
			})
			return err
		}},
		{name: "login panics outside the SDK call", wantText: "the login to Infisical panicked: a value of type string", run: func(c *Client) error {
			c.tel.tracer = panickingTracer{}
			return c.Login(ctxWithin(t, 5*time.Second))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, fake.URL, nil)
			err := tt.run(c)
			wantKind(t, err, KindUnavailable, tt.wantText)
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("%v: the panic value leaked into the error", err)
			}
			if IsFinal(err) {
				t.Fatalf("%v is final; a panic says nothing about the secret", err)
			}
		})
	}
}

// A full in-flight bound is normal under load: a call waits for a slot rather than failing at once.
func TestCallWaitsForASlot(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, func(cfg *Config) { cfg.MaxInFlight = 1 })
	mustLogin(t, c)
	c.slots <- struct{}{} // a call still in flight
	release := time.AfterFunc(100*time.Millisecond, func() { <-c.slots })
	t.Cleanup(func() { release.Stop() })
	got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
	if err != nil || got.Value != "root-value" {
		t.Fatalf("got %+v, %v; want root-value once the slot is free", got, err)
	}
}

// A login kept from being sent by the in-flight bound did not fail at Infisical: it must not pause logins.
func TestBusyIsNotALoginFailure(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, func(cfg *Config) { cfg.MaxInFlight = 1; cfg.UpstreamTimeout = 100 * time.Millisecond })
	c.slots <- struct{}{}
	err := c.Login(ctxWithin(t, 5*time.Second))
	wantKind(t, err, KindUnavailable, "too many Infisical calls are still in flight (1)")
	if fake.Logins() != 0 {
		t.Fatal("a login was sent without a slot")
	}
	if err := c.Healthy(); err != nil {
		t.Fatalf("Healthy: %v; a full bound is not a login failure", err)
	}
	<-c.slots
	c.cfg.UpstreamTimeout = 5 * time.Second // the busy machine must not fail the login this test is about
	if err := c.Login(ctxWithin(t, 5*time.Second)); err != nil {
		t.Fatalf("Login once a slot is free: %v", err)
	}
}

func TestLoginWait(t *testing.T) {
	t.Parallel()
	cfg := Config{AuthBackoff: DefaultAuthBackoff, LoginBackoff: DefaultLoginBackoff, LockoutBackoff: DefaultLockoutBackoff}
	rejected := &Error{Kind: KindAuth, Status: http.StatusUnauthorized, Message: "Invalid credentials"}
	tests := []struct {
		name string
		err  *Error
		want []time.Duration // after the 1st, 2nd, ... failure in a row
	}{
		{name: "rejected credentials", err: rejected, want: []time.Duration{
			15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}},
		{name: "lockout", err: &Error{Kind: KindAuth, Status: http.StatusUnauthorized, Message: fakeinfisical.MsgLocked},
			want: []time.Duration{5 * time.Minute, 5 * time.Minute}},
		{name: "5xx", err: &Error{Kind: KindUnavailable, Status: http.StatusBadGateway}, want: []time.Duration{
			time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}},
		{name: "timeout", err: &Error{Kind: KindTimeout}, want: []time.Duration{time.Second, 2 * time.Second}},
		{name: "token file unreadable (nothing sent)", err: &Error{Kind: KindAuth, Message: "read token"}, want: []time.Duration{time.Second}},
		{name: "429 names a longer wait", err: &Error{Kind: KindRateLimited, Status: http.StatusTooManyRequests, RetryAfter: 20 * time.Second},
			want: []time.Duration{20 * time.Second, 20 * time.Second, 20 * time.Second, 20 * time.Second, 20 * time.Second, 32 * time.Second}},
		{name: "a huge failure count does not overflow", err: rejected, want: append(make([]time.Duration, 999), 5*time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if got := loginWait(cfg, tt.err, i+1); want != 0 && got != want {
					t.Fatalf("after failure %d: wait %v, want %v", i+1, got, want)
				}
			}
		})
	}
	// Universal Auth locks an identity after 3 failures within 30 s: back-to-back rejected logins never get there.
	var attempts []time.Duration
	for at, n := time.Duration(0), 1; at < time.Hour; n++ {
		attempts = append(attempts, at)
		at += loginWait(cfg, rejected, n)
	}
	for i := 2; i < len(attempts); i++ {
		if attempts[i]-attempts[i-2] <= 30*time.Second {
			t.Fatalf("3 login attempts within 30s: at %v", attempts[i-2:i+1])
		}
	}
}

func TestLoginBackoffByFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		message  string
		min, max time.Duration // of the pause the next Login reports
	}{
		{name: "rejected credentials", status: http.StatusUnauthorized, message: fakeinfisical.MsgInvalidCredentials, min: 10 * time.Second, max: 15 * time.Second},
		{name: "429 with a named wait", status: http.StatusTooManyRequests, message: "Rate limit exceeded. Please try again in 20 seconds", min: 15 * time.Second, max: 20 * time.Second},
		{name: "5xx", status: http.StatusBadGateway, message: "Bad gateway", min: time.Millisecond, max: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			c := newClient(t, fake.URL, nil)
			fake.FailNext(fakeinfisical.RouteUniversalAuthLogin, 1, tt.status, tt.message, nil)
			if err := c.Login(ctxWithin(t, 5*time.Second)); err == nil {
				t.Fatal("Login succeeded despite the injected failure")
			}
			err := c.Login(ctxWithin(t, 5*time.Second))
			e, ok := asError(err)
			if !ok || !strings.Contains(err.Error(), tt.message) || e.RetryAfter < tt.min || e.RetryAfter > tt.max {
				t.Fatalf("second Login: %v; want the first failure, paused for %v to %v", err, tt.min, tt.max)
			}
			if n := fake.Logins(); n != 1 {
				t.Fatalf("%d logins, want 1 (the second is paused)", n)
			}
		})
	}
}

// notFoundProxy stands in front of fake Infisical and answers secret reads with its own 404 while its body is set.
func notFoundProxy(t *testing.T, fake *fakeinfisical.Server) (*httptest.Server, *atomic.Pointer[string]) {
	t.Helper()
	target, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var body atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b := body.Load(); b != nil && strings.HasPrefix(r.URL.Path, "/api/v3/secrets/raw/") {
			if strings.HasPrefix(*b, "{") {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, *b)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &body
}

// Only Infisical's own 404 means "no such secret"; any other 404 is an outage that must not wipe a cached value.
func TestNotFoundOnlyFromInfisical(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	srv, body := notFoundProxy(t, fake)
	c := newClient(t, srv.URL, nil)
	mustLogin(t, c)
	tests := []struct {
		name     string
		body     string // "" = pass through to Infisical
		secret   string
		notFound bool
		wantText string
	}{
		{name: "Infisical's 404 with reqId", secret: "NOPE", notFound: true, wantText: "Secret with name 'NOPE' not found (reqId req-"},
		{name: "ingress default backend", body: "default backend - 404", secret: "ROOT", wantText: "Not Found; the answer did not come from Infisical"},
		{name: "proxy JSON without reqId", body: `{"message":"Not Found","statusCode":404}`, secret: "ROOT", wantText: "(HTTP 404)"},
		{name: "Infisical's message without reqId", body: `{"message":"Secret with name 'ROOT' not found"}`, secret: "ROOT", notFound: true, wantText: "Secret with name 'ROOT' not found"},
		{name: "Infisical's unknown route", body: `{"reqId":"req-1","statusCode":404,"message":"Route GET:/api/v3/secrets/raw/ROOT not found","error":"NotFound"}`,
			secret: "ROOT", wantText: "Route GET:/api/v3/secrets/raw/ROOT not found; the answer did not come from Infisical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.body == "" {
				body.Store(nil)
			} else {
				body.Store(&tt.body)
			}
			_, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef(tt.secret))
			if errors.Is(err, ErrNotFound) != tt.notFound || IsFinal(err) != tt.notFound || !strings.Contains(fmt.Sprint(err), tt.wantText) {
				t.Fatalf("got %v; want not-found %v, saying %q", err, tt.notFound, tt.wantText)
			}
			if !tt.notFound {
				wantKind(t, err, KindUnavailable, tt.wantText)
			}
		})
	}
}

func TestIsFinal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "not found", err: fmt.Errorf("read: %w", fmt.Errorf("%w: Secret with name 'X' not found", ErrNotFound)), want: true},
		{name: "permission denied", err: &Error{Kind: KindPermission, Status: http.StatusForbidden, RequestID: "req-1"}, want: true},
		{name: "credentials rejected", err: fmt.Errorf("tenant a: %w", &Error{Kind: KindAuth, Status: http.StatusUnauthorized, RequestID: "req-2"}), want: true},
		{name: "token refused after the re-login", err: classify(&sdk.APIError{StatusCode: http.StatusForbidden, ErrorMessage: fakeinfisical.MsgTokenExpired, ReqId: "req-3"}, opRead, nil), want: true},
		{name: "a proxy's 401, not Infisical's", err: &Error{Kind: KindAuth, Status: http.StatusUnauthorized}},
		{name: "unreadable token file", err: &Error{Kind: KindAuth, Message: "cannot read INFISICAL_KUBERNETES_TOKEN_PATH"}},
		{name: "5xx", err: &Error{Kind: KindUnavailable, Status: http.StatusBadGateway}},
		{name: "foreign 404", err: classify(&sdk.APIError{StatusCode: http.StatusNotFound}, opRead, nil)},
		{name: "rate limited", err: &Error{Kind: KindRateLimited, Status: http.StatusTooManyRequests}},
		{name: "timeout", err: &Error{Kind: KindTimeout, Err: context.DeadlineExceeded}},
		{name: "tls", err: &Error{Kind: KindTLS}},
		{name: "bad request", err: &Error{Kind: KindBadRequest, Status: http.StatusUnprocessableEntity}},
		{name: "caller's context", err: context.Canceled},
		{name: "nil", err: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsFinal(tt.err); got != tt.want {
				t.Fatalf("IsFinal(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
