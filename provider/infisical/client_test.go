package infisical

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
)

const (
	clientID     = "client-id"
	clientSecret = "client-secret"
	project      = "p1"
)

// newFake starts a fake Infisical with one Universal Auth identity on project p1 and a few secrets.
func newFake(t *testing.T, opts ...fakeinfisical.Option) *fakeinfisical.Server {
	t.Helper()
	f := fakeinfisical.New(t, opts...)
	f.AddIdentity(clientID, clientSecret, project)
	f.SetSecret(project, "dev", "/", "ROOT", "root-value")
	f.SetSecret(project, "dev", "/", "REF", "x-${ROOT}")
	f.SetSecret(project, "dev", "/app/db", "PASSWORD", "old")
	f.SetSecret(project, "dev", "/app/db", "PASSWORD", "new")
	f.SetSecret("p2", "dev", "/", "OTHER", "x")
	return f
}

// newClient returns a Client for url with short timeouts; change adjusts the config first.
func newClient(t *testing.T, url string, change func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:         url,
		Auth:            Credentials{ClientID: clientID, ClientSecret: clientSecret},
		UpstreamTimeout: 500 * time.Millisecond,
		Logger:          slog.New(slog.DiscardHandler),
	}
	if change != nil {
		change(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxWithin(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantKind(t *testing.T, err error, kind ErrorKind, contains string) *Error {
	t.Helper()
	e, ok := asError(err)
	if !ok || e.Kind != kind || !strings.Contains(err.Error(), contains) {
		t.Fatalf("got %v (%T), want a %s error containing %q", err, err, kind, contains)
	}
	return e
}

// mustLogin logs c in, trying again if a busy machine made the login miss a short UpstreamTimeout.
func mustLogin(t *testing.T, c *Client) {
	t.Helper()
	eventually.NoError(t, "a login", func() error { return c.Login(ctxWithin(t, 5*time.Second)) })
}

// newClock returns the manual clock that tests whose subject is the token lifecycle share between the fake and the
// client (fakeinfisical.WithClock, onClock): expiry, back-off and refresh happen when the test advances it.
func newClock() *testclock.Clock { return testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) }

// onClock runs a client on clk. Only the HTTP exchanges still take real time, so they get the time a loaded
// machine may need: a login that missed a short UpstreamTimeout would start a back-off the test did not ask for.
func onClock(clk *testclock.Clock) func(*Config) {
	return func(cfg *Config) {
		cfg.Now, cfg.AfterFunc = clk.Now, clk.AfterFunc
		cfg.UpstreamTimeout = 10 * time.Second
	}
}

func rootRef(name string) SecretRef {
	return SecretRef{ProjectID: project, Environment: "dev", Name: name}
}

func TestGetSecret(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, nil)
	tests := []struct {
		name        string
		ref         SecretRef
		want        Secret
		wantErr     error     // errors.Is target
		wantKind    ErrorKind // else
		wantMessage string
	}{
		{name: "root", ref: rootRef("ROOT"), want: Secret{Name: "ROOT", Value: "root-value", Path: "/", Environment: "dev", Version: 1}},
		{name: "sub-folder latest", ref: SecretRef{ProjectID: project, Environment: "dev", Path: "/app/db/", Name: "PASSWORD"}, want: Secret{Name: "PASSWORD", Value: "new", Path: "/app/db", Environment: "dev", Version: 2}},
		{name: "older version", ref: SecretRef{ProjectID: project, Environment: "dev", Path: "/app/db", Name: "PASSWORD", Version: 1}, want: Secret{Name: "PASSWORD", Value: "old", Path: "/app/db", Environment: "dev", Version: 1}},
		{name: "references expanded", ref: SecretRef{ProjectID: project, Environment: "dev", Name: "REF", ExpandReferences: true}, want: Secret{Name: "REF", Value: "x-root-value", Path: "/", Environment: "dev", Version: 1}},
		{name: "references left alone", ref: rootRef("REF"), want: Secret{Name: "REF", Value: "x-${ROOT}", Path: "/", Environment: "dev", Version: 1}},
		{name: "missing secret", ref: rootRef("NOPE"), wantErr: ErrNotFound, wantMessage: "Secret with name 'NOPE' not found (reqId req-"},
		{name: "missing version", ref: SecretRef{ProjectID: project, Environment: "dev", Path: "/app/db", Name: "PASSWORD", Version: 9}, wantErr: ErrNotFound, wantMessage: "not found"},
		{name: "missing folder", ref: SecretRef{ProjectID: project, Environment: "dev", Path: "/nope", Name: "ROOT"}, wantErr: ErrNotFound, wantMessage: "Folder with path '/nope'"},
		{name: "missing environment", ref: SecretRef{ProjectID: project, Environment: "qa", Name: "ROOT"}, wantErr: ErrNotFound, wantMessage: "environment with slug 'qa'"},
		{name: "project without access", ref: SecretRef{ProjectID: "p2", Environment: "dev", Name: "OTHER"}, wantKind: KindPermission, wantMessage: "Infisical denied access: Identity is not a member"},
		{name: "name with a slash", ref: rootRef("a/b"), wantKind: KindBadRequest, wantMessage: "may not contain"},
		{name: "no project", ref: SecretRef{Environment: "dev", Name: "ROOT"}, wantKind: KindBadRequest, wantMessage: "no project id"},
		{name: "relative path", ref: SecretRef{ProjectID: project, Environment: "dev", Path: "app", Name: "ROOT"}, wantKind: KindBadRequest, wantMessage: "must start with '/'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.GetSecret(ctxWithin(t, 5*time.Second), tt.ref)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMessage) {
					t.Fatalf("got %v, want %v containing %q", err, tt.wantErr, tt.wantMessage)
				}
			case tt.wantKind != 0:
				wantKind(t, err, tt.wantKind, tt.wantMessage)
			case err != nil:
				t.Fatalf("GetSecret: %v", err)
			case got != tt.want:
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if n := fake.Logins(); n != 1 {
		t.Fatalf("%d logins, want 1 (a permission error must not cause a new login)", n)
	}
	if err := c.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		inject    func(*fakeinfisical.Server)
		budget    time.Duration
		wantReads int
		wantKind  ErrorKind // 0 = success
		wantMsg   string
	}{
		{name: "500 then success", budget: 3 * time.Second, wantReads: 2, inject: func(f *fakeinfisical.Server) {
			f.FailNext(fakeinfisical.RouteGetSecret, 1, 500, "Something went wrong", nil)
		}},
		{name: "429 wait beyond the budget", budget: 700 * time.Millisecond, wantReads: 1, wantKind: KindRateLimited,
			wantMsg: "Infisical is rate limiting requests: Rate limit exceeded. Please try again in 5 seconds", inject: func(f *fakeinfisical.Server) {
				f.FailNext(fakeinfisical.RouteGetSecret, 1, 429, "Rate limit exceeded. Please try again in 5 seconds", nil)
			}},
		{name: "422 is not retried", budget: 3 * time.Second, wantReads: 1, wantKind: KindBadRequest, inject: func(f *fakeinfisical.Server) {
			f.FailNext(fakeinfisical.RouteGetSecret, 1, 422, "bad", nil)
		}},
		{name: "connection refused is retried in the budget", budget: 600 * time.Millisecond, wantReads: 0, wantKind: KindUnavailable,
			wantMsg: "connection refused", inject: func(f *fakeinfisical.Server) { f.Down(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFake(t)
			c := newClient(t, fake.URL, nil)
			mustLogin(t, c)
			tt.inject(fake)
			got, err := c.GetSecret(ctxWithin(t, tt.budget), rootRef("ROOT"))
			if tt.wantKind != 0 {
				wantKind(t, err, tt.wantKind, tt.wantMsg)
			} else if err != nil || got.Value != "root-value" {
				t.Fatalf("got %+v, %v; want root-value", got, err)
			}
			if n := fake.Reads(); n != tt.wantReads {
				t.Fatalf("%d reads reached Infisical, want %d", n, tt.wantReads)
			}
		})
	}
}

// docs/performance.md promises at most three attempts per read: a failing Infisical costs three calls, not more, however
// much of the request's budget is left.
func TestAtMostThreeAttemptsPerRead(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, nil)
	mustLogin(t, c)
	fake.FailNext(fakeinfisical.RouteGetSecret, 100, 500, "Something went wrong", nil)
	_, err := c.GetSecret(ctxWithin(t, 8*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindUnavailable, "Something went wrong")
	if n := fake.Reads(); n != MaxAttempts || MaxAttempts != 3 {
		t.Fatalf("%d reads reached Infisical for one failing read; want MaxAttempts = 3", n)
	}
}

func TestRateLimitWaitsTheNamedTime(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := newFake(t, fakeinfisical.WithClock(clk.Now))
	c := newClient(t, fake.URL, onClock(clk))
	mustLogin(t, c)
	scheduled := clk.Timers() // the token refresh
	fake.FailNext(fakeinfisical.RouteGetSecret, 1, 429, "Rate limit exceeded. Please try again in 1 seconds", http.Header{"Retry-After": {"1"}})
	result := make(chan error, 1)
	go func() {
		_, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
		result <- err
	}()
	eventually.True(t, "the read to wait on the clock after the 429", func() bool { return clk.Timers() == scheduled+1 })
	clk.Advance(999 * time.Millisecond)
	if n := fake.Reads(); n != 1 {
		t.Fatalf("%d reads before the named second had passed; want only the one answered 429", n)
	}
	clk.Advance(time.Millisecond)
	if err := <-result; err != nil {
		t.Fatalf("GetSecret: %v", err)
	}
	var reads []time.Time
	for _, r := range fake.Requests() {
		if r.Route == fakeinfisical.RouteGetSecret {
			reads = append(reads, r.Time)
		}
	}
	if len(reads) != 2 || reads[1].Sub(reads[0]) != time.Second {
		t.Fatalf("reads at %v: want 2, the second 1s after the first", reads)
	}
}

func TestHangTimesOutAndRecovers(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, func(cfg *Config) { cfg.UpstreamTimeout = 200 * time.Millisecond })
	mustLogin(t, c)
	fake.Hang(fakeinfisical.RouteGetSecret, true)
	// When a hung call returns is exact in TestReadTimingInFakeTime; here, what it returns and the recovery.
	_, err := c.GetSecret(ctxWithin(t, time.Second), rootRef("ROOT"))
	wantKind(t, err, KindTimeout, "no answer within 200ms")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v does not wrap context.DeadlineExceeded", err)
	}
	fake.Hang(fakeinfisical.RouteGetSecret, false)
	if got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil || got.Value != "root-value" {
		t.Fatalf("after the hang: %+v, %v", got, err)
	}
}

// Hung calls keep their slots: beyond MaxInFlight, a call waits for a slot until its deadline, then fails without
// reaching Infisical.
func TestSlow_MaxInFlightWaitsThenFails(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, func(cfg *Config) {
		cfg.UpstreamTimeout = 100 * time.Millisecond
		cfg.MaxInFlight = 3 // filled by three hung reads (the login has returned its slot)
	})
	mustLogin(t, c)
	fake.Hang(fakeinfisical.RouteGetSecret, true)
	for i := range 3 {
		if _, err := c.GetSecret(ctxWithin(t, time.Second), rootRef("ROOT")); err == nil {
			t.Fatalf("call %d succeeded against a hung server", i)
		}
	}
	_, err := c.GetSecret(ctxWithin(t, time.Second), rootRef("ROOT"))
	wantKind(t, err, KindUnavailable, "too many Infisical calls are still in flight (3)")
	if n := fake.Reads(); n != 3 {
		t.Fatalf("%d reads reached Infisical, want 3 (the rest must fail without a call)", n)
	}
	fake.Hang(fakeinfisical.RouteGetSecret, false)
	eventually.NoError(t, "the slots to free up after the hang ended", func() error {
		_, err := c.GetSecret(ctxWithin(t, time.Second), rootRef("ROOT"))
		return err
	})
}

// Tokens live 30 s on the clock the fake and the client share: the client refreshes each at 20 s (2/3 of its TTL)
// and stops using it at 27 s, so no read ever carries an expired one.
const refreshedTTL = 30 * time.Second

func TestTokenRefreshKeepsServing(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := newFake(t, fakeinfisical.WithClock(clk.Now), fakeinfisical.WithTokenTTL(refreshedTTL, time.Hour))
	c := newClient(t, fake.URL, onClock(clk))
	mustLogin(t, c)
	// The clock moves a second at a time through two token lifetimes, each step alongside four concurrent reads:
	// the refreshes at 20 s and 40 s run while reads are in flight.
	for second := 1; second < 2*int(refreshedTTL/time.Second); second++ {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT")); err != nil {
					t.Errorf("GetSecret at %ds: %v", second, err)
				}
			})
		}
		clk.Advance(time.Second)
		wg.Wait()
	}
	if n := fake.Logins(); n != 3 {
		t.Fatalf("%d logins in 59s with a 30s token, want 3 (the first, then a refresh at 2/3 of each TTL)", n)
	}
	for _, r := range fake.Requests() {
		if r.Status == http.StatusForbidden {
			t.Fatalf("a request used an expired token: %+v", r)
		}
	}
	c.Close()
	if n := clk.Timers(); n != 0 {
		t.Fatalf("%d timers still scheduled after Close; want the refresh cancelled", n)
	}
	clk.Advance(time.Hour) // past every refresh point
	if n := fake.Logins(); n != 3 {
		t.Fatalf("%d logins after Close, want 3: the refresh must stop", n)
	}
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	c := newClient(t, fake.URL, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil {
				t.Errorf("GetSecret: %v", err)
			}
		})
	}
	wg.Wait()
	if n := fake.Logins(); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
}

func TestRefusedTokenLogsInOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		spoil      func(*fakeinfisical.Server)
		wantLogins int
		wantKind   ErrorKind // 0 = success
	}{
		{name: "expired token (403 TokenError)", spoil: (*fakeinfisical.Server).ExpireTokens, wantLogins: 2},
		{name: "revoked token (401)", spoil: (*fakeinfisical.Server).RevokeTokens, wantLogins: 2},
		{name: "refused again after the new login", wantLogins: 2, wantKind: KindAuth, spoil: func(f *fakeinfisical.Server) {
			f.FailNext(fakeinfisical.RouteGetSecret, 2, 403, fakeinfisical.MsgTokenExpired, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			c := newClient(t, fake.URL, nil)
			if _, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil {
				t.Fatalf("first GetSecret: %v", err)
			}
			tt.spoil(fake)
			_, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
			if tt.wantKind != 0 {
				wantKind(t, err, tt.wantKind, "authentication to Infisical failed: "+fakeinfisical.MsgTokenExpired)
			} else if err != nil {
				t.Fatalf("GetSecret after the token was refused: %v", err)
			}
			if n := fake.Logins(); n != tt.wantLogins {
				t.Fatalf("%d logins, want %d", n, tt.wantLogins)
			}
		})
	}
}

// Rejected credentials pause logins for 15 s, so callers cannot drive the identity into Infisical's lockout.
func TestWrongSecretBacksOff(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := newFake(t, fakeinfisical.WithClock(clk.Now))
	c := newClient(t, fake.URL, func(cfg *Config) { onClock(clk)(cfg); cfg.Auth.ClientSecret = "wrong" })
	const refused = "authentication to Infisical failed: Invalid credentials (HTTP 401, reqId req-"
	_, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindAuth, refused)
	// A call every second of the pause fails at once, naming what is left of it.
	for paused := time.Duration(0); paused < DefaultAuthBackoff; paused += time.Second {
		_, err = c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
		if e := wantKind(t, err, KindAuth, refused); e.RetryAfter != DefaultAuthBackoff-paused {
			t.Fatalf("%s into the pause: RetryAfter %s, want %s", paused, e.RetryAfter, DefaultAuthBackoff-paused)
		}
		clk.Advance(time.Second)
	}
	if n := fake.Logins(); n != 1 {
		t.Fatalf("%d GetSecret calls in 15s caused %d login attempts, want 1 (then a 15s pause)", DefaultAuthBackoff/time.Second+1, n)
	}
	// The pause over, the next call tries again; two failures in 15 s stay below the lockout (3 in 30 s).
	_, err = c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindAuth, refused)
	if n := fake.Logins(); n != 2 {
		t.Fatalf("%d login attempts once the pause ended, want 2", n)
	}
	if fake.Locked(clientID) {
		t.Fatal("the identity got locked out")
	}
	if fake.Reads() != 0 {
		t.Fatal("reads were sent without a token")
	}
	wantKind(t, c.Healthy(), KindAuth, "Invalid credentials")
}

func TestLockoutPausesLogins(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := newFake(t, fakeinfisical.WithClock(clk.Now), fakeinfisical.WithLockout(1, 30*time.Second, time.Hour))
	c := newClient(t, fake.URL, func(cfg *Config) {
		onClock(clk)(cfg)
		cfg.Auth.ClientSecret = "wrong"
		cfg.AuthBackoff = 50 * time.Millisecond
	})
	// The first attempt fails and locks the identity; the next one, after the back-off, hears about the lockout.
	_, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindAuth, fakeinfisical.MsgInvalidCredentials)
	clk.Advance(50 * time.Millisecond)
	for range 10 {
		_, err = c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT"))
	}
	e := wantKind(t, err, KindAuth, fakeinfisical.MsgLocked)
	if e.RetryAfter != DefaultLockoutBackoff {
		t.Fatalf("RetryAfter %v, want the 5 minute lockout back-off", e.RetryAfter)
	}
	if n := fake.Logins(); n != 2 {
		t.Fatalf("%d login attempts, want 2 (the failure, then the lockout report)", n)
	}
}

// login gets an access token for the static-token method, as an operator would with the CLI.
func login(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/auth/universal-auth/login", "application/json",
		strings.NewReader(`{"clientId":"`+clientID+`","clientSecret":"`+clientSecret+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"accessToken"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("login: %v", err)
	}
	return body.AccessToken
}

func TestAuthMethods(t *testing.T) {
	fake := newFake(t)
	fake.AddMethodIdentity(fakeinfisical.MethodKubernetes, "id-k8s", "k8s-sa-token", project)
	fake.AddMethodIdentity(fakeinfisical.MethodOIDC, "id-oidc", "oidc-token", project)
	fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-jwt", "the-jwt", project)
	fake.AddMethodIdentity(fakeinfisical.MethodAWS, "id-aws", "", project)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k8sPath := write("k8s", "k8s-sa-token\n")
	// A setting that names a huge file must fail with a clear error, not be read whole and sent to Infisical.
	huge := write("huge", strings.Repeat("x", 2<<20))
	oidcPath := write("oidc", "oidc-token\n")
	// AWS credentials from the environment only: the SDK signs an STS request locally and never calls AWS.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example-secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))

	tests := []struct {
		name      string
		creds     Credentials
		route     fakeinfisical.Route // "" = no login expected
		identity  string
		wantError string
	}{
		{name: "universal-auth", creds: Credentials{ClientID: clientID, ClientSecret: clientSecret}, route: fakeinfisical.RouteUniversalAuthLogin, identity: clientID},
		{name: "kubernetes", creds: Credentials{Method: MethodKubernetes, IdentityID: "id-k8s", KubernetesTokenPath: k8sPath}, route: fakeinfisical.RouteKubernetesLogin, identity: "id-k8s"},
		{name: "oidc token", creds: Credentials{Method: MethodOIDC, IdentityID: "id-oidc", OIDCToken: "oidc-token"}, route: fakeinfisical.RouteOIDCLogin, identity: "id-oidc"},
		{name: "oidc token file", creds: Credentials{Method: MethodOIDC, IdentityID: "id-oidc", OIDCTokenPath: oidcPath}, route: fakeinfisical.RouteOIDCLogin, identity: "id-oidc"},
		{name: "jwt", creds: Credentials{Method: MethodJWT, IdentityID: "id-jwt", JWT: "the-jwt"}, route: fakeinfisical.RouteJWTLogin, identity: "id-jwt"},
		{name: "aws-iam", creds: Credentials{Method: MethodAWSIAM, IdentityID: "id-aws"}, route: fakeinfisical.RouteAWSLogin, identity: "id-aws"},
		{name: "static token", creds: Credentials{Method: MethodToken, AccessToken: login(t, fake.URL)}, identity: clientID},
		{name: "wrong jwt", creds: Credentials{Method: MethodJWT, IdentityID: "id-jwt", JWT: "other"}, route: fakeinfisical.RouteJWTLogin, identity: "id-jwt", wantError: "JWT does not match"},
		{name: "kubernetes token file over 1 MiB", creds: Credentials{Method: MethodKubernetes, IdentityID: "id-k8s", KubernetesTokenPath: huge}, wantError: "larger than 1 MiB"},
		{name: "oidc token file over 1 MiB", creds: Credentials{Method: MethodOIDC, IdentityID: "id-oidc", OIDCTokenPath: huge}, wantError: "larger than 1 MiB"},
		{name: "gcp key file over 1 MiB", creds: Credentials{Method: MethodGCPIAM, IdentityID: "id-gcp", GCPKeyFile: huge}, wantError: "larger than 1 MiB"},
		{name: "kubernetes token file missing", creds: Credentials{Method: MethodKubernetes, IdentityID: "id-k8s", KubernetesTokenPath: filepath.Join(dir, "missing")}, wantError: "read Kubernetes service account token from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.Logins()
			var routeBefore int
			if tt.route != "" {
				routeBefore = fake.Count(tt.route)
			}
			c := newClient(t, fake.URL, func(cfg *Config) { cfg.Auth = tt.creds })
			got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
			if tt.wantError != "" {
				wantKind(t, err, KindAuth, tt.wantError)
			} else if err != nil || got.Value != "root-value" {
				t.Fatalf("GetSecret: %+v, %v", got, err)
			}
			wantLogins := 0
			if tt.route != "" {
				wantLogins = 1
				if n := fake.Count(tt.route) - routeBefore; n != 1 {
					t.Fatalf("%d requests to %s, want 1", n, tt.route)
				}
			}
			if n := fake.Logins() - before; n != wantLogins {
				t.Fatalf("%d logins, want %d", n, wantLogins)
			}
			reqs := fake.Requests()
			if last := reqs[len(reqs)-1]; tt.identity != "" && last.Identity != tt.identity {
				t.Fatalf("last request came from identity %q, want %q", last.Identity, tt.identity)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	fake := fakeinfisical.NewTLS(t)
	fake.AddIdentity(clientID, clientSecret, project)
	fake.SetSecret(project, "dev", "/", "ROOT", "root-value")

	// A TLS handshake under -race on a busy machine can outlast the short default of these tests.
	slowTLS := func(cfg *Config) { cfg.UpstreamTimeout = 4 * time.Second }
	_, err := newClient(t, fake.URL, slowTLS).GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindTLS, "set Config.CACert to its certificate")
	for _, want := range []string{"x509:", "certificate problem"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%v does not say %q", err, want)
		}
	}

	c := newClient(t, fake.URL, func(cfg *Config) { slowTLS(cfg); cfg.CACert = fake.CACertPEM() })
	if got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil || got.Value != "root-value" {
		t.Fatalf("with the CA: %+v, %v", got, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := Credentials{ClientID: "a", ClientSecret: "b"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "missing secret", cfg: Config{Auth: Credentials{ClientID: "a"}}, want: "auth method universal-auth needs Credentials.ClientSecret"},
		{name: "bad URL", cfg: Config{BaseURL: "app.infisical.com", Auth: good}, want: "Config.BaseURL is not an http(s) URL"},
		{name: "bad CA", cfg: Config{CACert: "not pem", Auth: good}, want: "Config.CACert holds no PEM certificate"},
		{name: "unknown method", cfg: Config{Auth: Credentials{Method: "ldap"}}, want: `Credentials.Method "ldap" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %s", err, tt.want)
			}
		})
	}
}

// The caller's names for fields (its settings) replace the package's own in New's errors and in hints.
func TestConfigNamesNameFields(t *testing.T) {
	t.Parallel()
	names := func(f Field) string {
		if f == FieldClientSecret {
			return "THE_SECRET"
		}
		return ""
	}
	_, err := New(Config{Auth: Credentials{}, Names: names})
	if err == nil || !strings.Contains(err.Error(), "needs Credentials.ClientID and THE_SECRET") {
		t.Fatalf("got %v, want the caller's name for the client secret, the package's for the client ID", err)
	}
}

func TestMissing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		creds Credentials
		want  []Field
	}{
		{name: "universal-auth by default", creds: Credentials{ClientID: "a", ClientSecret: "b"}},
		{name: "universal-auth without id", creds: Credentials{ClientSecret: "b"}, want: []Field{FieldClientID}},
		{name: "universal-auth without anything", creds: Credentials{Method: MethodUniversalAuth}, want: []Field{FieldClientID, FieldClientSecret}},
		{name: "kubernetes", creds: Credentials{Method: MethodKubernetes, IdentityID: "i"}},
		{name: "kubernetes without identity", creds: Credentials{Method: MethodKubernetes}, want: []Field{FieldIdentityID}},
		{name: "aws-iam without identity", creds: Credentials{Method: MethodAWSIAM}, want: []Field{FieldIdentityID}},
		{name: "gcp-id-token", creds: Credentials{Method: MethodGCPIDToken, IdentityID: "i"}},
		{name: "gcp-iam without key file", creds: Credentials{Method: MethodGCPIAM, IdentityID: "i"}, want: []Field{FieldGCPKeyFile}},
		{name: "azure", creds: Credentials{Method: MethodAzure, IdentityID: "i"}},
		{name: "oidc without token", creds: Credentials{Method: MethodOIDC, IdentityID: "i"}, want: []Field{FieldOIDCToken}},
		{name: "oidc with token path", creds: Credentials{Method: MethodOIDC, IdentityID: "i", OIDCTokenPath: "/t"}},
		{name: "jwt without jwt", creds: Credentials{Method: MethodJWT, IdentityID: "i"}, want: []Field{FieldJWT}},
		{name: "jwt without anything", creds: Credentials{Method: MethodJWT}, want: []Field{FieldIdentityID, FieldJWT}},
		{name: "token without token", creds: Credentials{Method: MethodToken}, want: []Field{FieldAccessToken}},
		{name: "blank counts as missing", creds: Credentials{Method: MethodToken, AccessToken: " "}, want: []Field{FieldAccessToken}},
		{name: "unknown method", creds: Credentials{Method: "ldap"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.creds.Missing(); !slices.Equal(got, tt.want) {
				t.Fatalf("Missing() = %v, want %v", got, tt.want)
			}
		})
	}
}

// Every method says what it needs, and only the methods that log in with the platform's identity are ambient.
func TestEveryMethodIsDescribed(t *testing.T) {
	t.Parallel()
	ambient := []Method{MethodKubernetes, MethodAWSIAM, MethodGCPIDToken, MethodGCPIAM, MethodAzure}
	for _, m := range Methods {
		if _, ok := needs[m]; !ok {
			t.Errorf("%s: no entry in needs", m)
		}
		if !m.Supported() {
			t.Errorf("%s: not Supported", m)
		}
		if got := m.Ambient(); got != slices.Contains(ambient, m) {
			t.Errorf("%s: Ambient() = %v", m, got)
		}
	}
	if len(needs) != len(Methods) {
		t.Errorf("needs describes %d methods; Methods lists %d", len(needs), len(Methods))
	}
	if Method("ldap").Supported() {
		t.Error("ldap is Supported")
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	a := Credentials{ClientID: "id", ClientSecret: "secret-one"}
	tests := []struct {
		name string
		b    Credentials
		same bool
	}{
		{name: "same credentials", b: Credentials{Method: MethodUniversalAuth, ClientID: "id", ClientSecret: "secret-one"}, same: true},
		{name: "other secret", b: Credentials{ClientID: "id", ClientSecret: "secret-two"}},
		{name: "other client", b: Credentials{ClientID: "id2", ClientSecret: "secret-one"}},
		{name: "other method", b: Credentials{Method: MethodJWT, IdentityID: "id", JWT: "secret-one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Identity() == tt.b.Identity(); got != tt.same {
				t.Fatalf("Identity equal = %v, want %v", got, tt.same)
			}
			if id := tt.b.Identity(); len(id) != 32 || strings.Contains(id, "secret") {
				t.Fatalf("Identity %q: want 32 hex characters", id)
			}
		})
	}
}

// A retired client still serves the reads already running on it but no longer refreshes its token on its own.
func TestRetireStopsTheRefreshButKeepsServing(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := newFake(t, fakeinfisical.WithClock(clk.Now), fakeinfisical.WithTokenTTL(refreshedTTL, time.Hour))
	c := newClient(t, fake.URL, onClock(clk))
	if _, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT")); err != nil {
		t.Fatal(err)
	}
	c.Retire()
	clk.Advance(25 * time.Second) // past the refresh point at 20 s, while the token is still in use (until 27 s)
	if n := fake.Logins(); n != 1 {
		t.Fatalf("%d logins after Retire, want 1: a retired client must not refresh", n)
	}
	if _, err := c.GetSecret(ctxWithin(t, 10*time.Second), rootRef("ROOT")); err != nil {
		t.Fatalf("a read on a retired client: %v", err)
	}
	if n := fake.Logins(); n != 1 {
		t.Fatalf("%d logins after a read on the retired client, want 1: its token was still good", n)
	}
}

// A secret name goes into the URL path: every character Infisical allows in a name must reach it as that name, and
// none may end the path or change another parameter (';', '&', '=', '?', '#', '%').
func TestSecretNamesAreEscaped(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, fake.URL, nil)
	names := map[string]string{
		"a;b=c&d":              "/api/v3/secrets/raw/a%3Bb%3Dc%26d",
		"what?environment=dev": "/api/v3/secrets/raw/what%3Fenvironment%3Ddev",
		"100% #1":              "/api/v3/secrets/raw/100%25%20%231",
		"plain.NAME-1":         "/api/v3/secrets/raw/plain.NAME-1",
	}
	for name, rawPath := range names {
		fake.SetSecret(project, "dev", "/", name, "value of "+name)
		got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef(name))
		if err != nil || got.Value != "value of "+name {
			t.Fatalf("%q: %+v, %v", name, got, err)
		}
		reqs := fake.Requests()
		last := reqs[len(reqs)-1]
		if last.RawPath != rawPath || last.Query.Get("environment") != "dev" || len(last.Query["environment"]) != 1 {
			t.Fatalf("%q was sent as %s?%s; want path %s and the one environment dev", name, last.RawPath, last.Query.Encode(), rawPath)
		}
	}
	// Names Infisical cannot hold are refused before anything is sent.
	for _, name := range []string{"a/b", "a:b", "a\nb", "a\x00b", "..", "."} {
		before := fake.Reads()
		_, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef(name))
		wantKind(t, err, KindBadRequest, "may not contain")
		if fake.Reads() != before {
			t.Fatalf("%q was sent to Infisical", name)
		}
	}
}

// Credentials printed or logged by mistake show the method and the identity hash, never a secret.
func TestCredentialsNeverPrintSecrets(t *testing.T) {
	t.Parallel()
	c := Credentials{ClientID: "client-id", ClientSecret: "the-client-secret", OIDCToken: "the-oidc-token",
		JWT: "the-jwt", AccessToken: "the-access-token"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("login", "credentials", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), logged.String()} {
		for _, secret := range []string{"the-client-secret", "the-oidc-token", "the-jwt", "the-access-token"} {
			if strings.Contains(out, secret) {
				t.Fatalf("%q shows %s", out, secret)
			}
		}
		if !strings.Contains(out, "universal-auth identity "+c.Identity()) {
			t.Fatalf("%q does not name the method and identity", out)
		}
	}
}
