package fakeinfisical

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	infisical "github.com/infisical/go-sdk"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
)

// newSDK returns the official client configured for tests: no background refresh, no cache, no retries, no logs.
func newSDK(t *testing.T, siteURL, caPEM string) infisical.InfisicalClientInterface {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return infisical.NewInfisicalClient(ctx, infisical.Config{
		SiteUrl:             siteURL,
		CaCertificate:       caPEM,
		AutoTokenRefresh:    infisical.BoolPtr(false),
		SilentMode:          true,
		LogWriter:           io.Discard,
		RetryRequestsConfig: &infisical.RetryRequestsConfig{ExponentialBackoff: &infisical.ExponentialBackoffStrategy{MaxRetries: 0}},
	})
}

// loggedIn starts a fake with one identity "cid" on project "p1" and returns an SDK client logged in as it.
func loggedIn(t *testing.T, opts ...Option) (*Server, infisical.InfisicalClientInterface) {
	t.Helper()
	srv := New(t, opts...)
	srv.AddIdentity("cid", "csecret", "p1")
	c := newSDK(t, srv.URL, "")
	if _, err := c.Auth().UniversalAuthLogin("cid", "csecret"); err != nil {
		t.Fatalf("UniversalAuthLogin: %v", err)
	}
	return srv, c
}

func apiError(t *testing.T, err error) *infisical.APIError {
	t.Helper()
	var ae *infisical.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *infisical.APIError", err, err)
	}
	return ae
}

func TestSDKRetrieve(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.AddProject("p1", "proj-one")
	srv.SetSecret("p1", "dev", "/", "ROOT", "  root-value \n")
	srv.SetSecret("p1", "dev", "/a/b", "NESTED", "v1")
	srv.SetSecret("p1", "dev", "/a/b", "NESTED", "v2")
	srv.SetSecret("p1", "dev", "/", "REF", "url=${ROOT}|${dev.a.b.NESTED}|${MISSING}")
	srv.SetSecret("p1", "prod", "/shared", "IMPORTED", "from-prod")
	srv.AddImport("p1", "dev", "/", "prod", "/shared")
	srv.SetSecret("p2", "dev", "/", "OTHER", "x")

	tests := []struct {
		name        string
		opts        infisical.RetrieveSecretOptions
		wantValue   string
		wantVersion int
		wantStatus  int
		wantMessage string
	}{
		{name: "root, value trimmed with one newline kept", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1", Environment: "dev"}, wantValue: "root-value\n", wantVersion: 1},
		{name: "sub-folder with trailing slash", opts: infisical.RetrieveSecretOptions{SecretKey: "NESTED", ProjectID: "p1", Environment: "dev", SecretPath: " /a/b/ "}, wantValue: "v2", wantVersion: 2},
		{name: "older version", opts: infisical.RetrieveSecretOptions{SecretKey: "NESTED", ProjectID: "p1", Environment: "dev", SecretPath: "/a/b", Version: 1}, wantValue: "v1", wantVersion: 1},
		{name: "by project slug", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectSlug: "proj-one", Environment: "dev"}, wantValue: "root-value\n", wantVersion: 1},
		{name: "references kept when not expanded", opts: infisical.RetrieveSecretOptions{SecretKey: "REF", ProjectID: "p1", Environment: "dev"}, wantValue: "url=${ROOT}|${dev.a.b.NESTED}|${MISSING}", wantVersion: 1},
		{name: "references expanded", opts: infisical.RetrieveSecretOptions{SecretKey: "REF", ProjectID: "p1", Environment: "dev", ExpandSecretReferences: true}, wantValue: "url=root-value\n|v2|${MISSING}", wantVersion: 1},
		{name: "import searched when asked", opts: infisical.RetrieveSecretOptions{SecretKey: "IMPORTED", ProjectID: "p1", Environment: "dev", IncludeImports: true}, wantValue: "from-prod", wantVersion: 1},
		{name: "import ignored by default", opts: infisical.RetrieveSecretOptions{SecretKey: "IMPORTED", ProjectID: "p1", Environment: "dev"}, wantStatus: 404, wantMessage: "Secret with name 'IMPORTED' not found"},
		{name: "missing secret", opts: infisical.RetrieveSecretOptions{SecretKey: "NOPE", ProjectID: "p1", Environment: "dev"}, wantStatus: 404, wantMessage: "Secret with name 'NOPE' not found"},
		{name: "missing version", opts: infisical.RetrieveSecretOptions{SecretKey: "NESTED", ProjectID: "p1", Environment: "dev", SecretPath: "/a/b", Version: 3}, wantStatus: 404, wantMessage: "Secret with name 'NESTED' not found"},
		{name: "missing folder", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1", Environment: "dev", SecretPath: "/a/x"}, wantStatus: 404, wantMessage: "Folder with path '/a/x' in environment with slug 'dev' not found"},
		{name: "missing environment", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1", Environment: "qa"}, wantStatus: 404, wantMessage: "Folder with path '/' in environment with slug 'qa' not found"},
		{name: "personal type", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1", Environment: "dev", Type: "personal"}, wantStatus: 404, wantMessage: "Secret with name 'ROOT' not found"},
		{name: "bad type is a 422", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1", Environment: "dev", Type: "bogus"}, wantStatus: 422, wantMessage: "Invalid enum value. Expected 'shared' | 'personal'"},
		{name: "missing environment parameter", opts: infisical.RetrieveSecretOptions{SecretKey: "ROOT", ProjectID: "p1"}, wantStatus: 400, wantMessage: "Missing environment"},
		{name: "project without access", opts: infisical.RetrieveSecretOptions{SecretKey: "OTHER", ProjectID: "p2", Environment: "dev"}, wantStatus: 403, wantMessage: "Identity is not a member of the specified project with ID 'p2'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Secrets().Retrieve(tt.opts)
			if tt.wantStatus != 0 {
				ae := apiError(t, err)
				if ae.StatusCode != tt.wantStatus || !strings.Contains(ae.ErrorMessage, tt.wantMessage) || ae.ReqId == "" {
					t.Fatalf("got status %d message %q reqId %q, want %d containing %q and a reqId", ae.StatusCode, ae.ErrorMessage, ae.ReqId, tt.wantStatus, tt.wantMessage)
				}
				return
			}
			if err != nil {
				t.Fatalf("Retrieve: %v", err)
			}
			if got.SecretValue != tt.wantValue || got.Version != tt.wantVersion || got.SecretKey != tt.opts.SecretKey {
				t.Fatalf("got %q v%d key %q, want %q v%d", got.SecretValue, got.Version, got.SecretKey, tt.wantValue, tt.wantVersion)
			}
		})
	}
}

func TestSDKListSecrets(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.SetSecret("p1", "dev", "/app", "B", "b")
	srv.SetSecret("p1", "dev", "/app", "A", "a")
	srv.SetSecret("p1", "dev", "/app/deeper", "C", "c")
	srv.SetSecret("p1", "prod", "/", "A", "prod-a")
	srv.SetSecret("p1", "prod", "/", "D", "prod-d")
	srv.AddImport("p1", "dev", "/app", "prod", "/")

	tests := []struct {
		name string
		opts infisical.ListSecretsOptions
		want string
	}{
		{name: "folder only", opts: infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev", SecretPath: "/app"}, want: "A=a,B=b"},
		{name: "recursive", opts: infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev", SecretPath: "/app", Recursive: true}, want: "A=a,B=b,C=c"},
		{name: "imports, local wins", opts: infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev", SecretPath: "/app", IncludeImports: true}, want: "A=a,B=b,D=prod-d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Secrets().ListSecrets(tt.opts)
			if err != nil {
				t.Fatalf("ListSecrets: %v", err)
			}
			var got []string
			for _, s := range res.Secrets {
				got = append(got, s.SecretKey+"="+s.SecretValue)
			}
			if strings.Join(got, ",") != tt.want || res.ETag == "" {
				t.Fatalf("got %v etag %q, want %s and an ETag", got, res.ETag, tt.want)
			}
			tt.opts.IfNoneMatch = res.ETag
			var nm *infisical.NotModifiedError
			if _, err := c.Secrets().ListSecrets(tt.opts); !errors.As(err, &nm) {
				t.Fatalf("same ETag: got %v, want NotModifiedError", err)
			}
		})
	}
	if srv.Lists() != 2*len(tests) {
		t.Fatalf("Lists() = %d, want %d", srv.Lists(), 2*len(tests))
	}
}

// A value the identity may describe but not read comes back masked, in a get and in a list, as Infisical sends it.
func TestSDKHiddenValue(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.SetSecret("p1", "dev", "/", "OPEN", "open")
	srv.SetSecret("p1", "dev", "/", "SHUT", "shut")
	srv.HideValue("p1", "dev", "/", "SHUT")
	got, err := c.Secrets().Retrieve(infisical.RetrieveSecretOptions{ProjectID: "p1", Environment: "dev", SecretKey: "SHUT"})
	if err != nil || got.SecretValue != "<hidden-by-infisical>" {
		t.Fatalf("Retrieve = %q, %v; want the mask", got.SecretValue, err)
	}
	res, err := c.Secrets().ListSecrets(infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev"})
	if err != nil || len(res.Secrets) != 2 || res.Secrets[0].SecretValue != "open" || res.Secrets[1].SecretValue != "<hidden-by-infisical>" {
		t.Fatalf("ListSecrets = %+v, %v; want OPEN readable and SHUT masked", res.Secrets, err)
	}
	if etag := res.ETag; etag == "" {
		t.Fatal("no ETag")
	}
	_, _ = c.Secrets().ListSecrets(infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev", IfNoneMatch: res.ETag})
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; last.IfNoneMatch != res.ETag || last.Status != http.StatusNotModified {
		t.Fatalf("last request: If-None-Match %q status %d; want the ETag logged and 304", last.IfNoneMatch, last.Status)
	}
}

// Past WithRateLimit, gets and lists are answered 429 with Infisical's message and a Retry-After header; logins are
// counted elsewhere and pass.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t, WithRateLimit(2, time.Minute))
	srv.SetSecret("p1", "dev", "/", "K", "v")
	get := func() error {
		_, err := c.Secrets().Retrieve(infisical.RetrieveSecretOptions{ProjectID: "p1", Environment: "dev", SecretKey: "K"})
		return err
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Secrets().ListSecrets(infisical.ListSecretsOptions{ProjectID: "p1", Environment: "dev"}); err != nil {
		t.Fatal(err)
	}
	ae := apiError(t, get())
	if ae.StatusCode != http.StatusTooManyRequests || !strings.HasPrefix(ae.ErrorMessage, "Rate limit exceeded. Please try again in ") {
		t.Fatalf("third request: %d %q; want 429 with Infisical's message", ae.StatusCode, ae.ErrorMessage)
	}
	if n := srv.Answered(http.StatusTooManyRequests); n != 1 {
		t.Fatalf("Answered(429) = %d, want 1", n)
	}
	resp, err := http.Get(srv.URL + "/api/v3/secrets/raw/K?workspaceId=p1&environment=dev")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra := resp.Header.Get("Retry-After"); resp.StatusCode != http.StatusTooManyRequests || ra == "" || ra == "0" {
		t.Fatalf("raw request: %d Retry-After %q; want 429 with the seconds left", resp.StatusCode, ra)
	}
}

func TestSDKTokenErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		spoil       func(*Server)
		wantStatus  int
		wantMessage string
	}{
		{name: "expired", spoil: (*Server).ExpireTokens, wantStatus: 403, wantMessage: MsgTokenExpired},
		{name: "revoked", spoil: (*Server).RevokeTokens, wantStatus: 401, wantMessage: "No identity access token found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := loggedIn(t)
			srv.SetSecret("p1", "dev", "/", "K", "v")
			opts := infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"}
			if _, err := c.Secrets().Retrieve(opts); err != nil {
				t.Fatalf("Retrieve before: %v", err)
			}
			tt.spoil(srv)
			_, err := c.Secrets().Retrieve(opts)
			if ae := apiError(t, err); ae.StatusCode != tt.wantStatus || ae.ErrorMessage != tt.wantMessage {
				t.Fatalf("got %d %q, want %d %q", ae.StatusCode, ae.ErrorMessage, tt.wantStatus, tt.wantMessage)
			}
		})
	}
}

func TestSDKShortTTLAndRenew(t *testing.T) {
	t.Parallel()
	clk := testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	srv := New(t, WithClock(clk.Now), WithTokenTTL(time.Second, 3*time.Second))
	srv.AddIdentity("cid", "csecret", "p1")
	srv.SetSecret("p1", "dev", "/", "K", "v")
	c := newSDK(t, srv.URL, "")
	cred, err := c.Auth().UniversalAuthLogin("cid", "csecret")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if cred.ExpiresIn != 1 || cred.AccessTokenMaxTTL != 3 || cred.TokenType != "Bearer" {
		t.Fatalf("credential %+v, want expiresIn 1, maxTTL 3, Bearer", cred)
	}
	opts := infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"}
	clk.Advance(time.Second)
	if _, err := c.Secrets().Retrieve(opts); err != nil {
		t.Fatalf("at the end of the TTL: %v", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := c.Secrets().Retrieve(opts); apiError(t, err).StatusCode != 403 {
		t.Fatalf("after TTL: got %v, want 403", err)
	}
	// Renew needs a live token: log in again and renew it over raw HTTP (the SDK only renews in its refresher).
	cred, err = c.Auth().UniversalAuthLogin("cid", "csecret")
	if err != nil {
		t.Fatalf("login again: %v", err)
	}
	var renewed struct {
		AccessToken string `json:"accessToken"`
		ExpiresIn   int64  `json:"expiresIn"`
	}
	if status := postJSON(t, srv.URL+"/api/v1/auth/token/renew", `{"accessToken":"`+cred.AccessToken+`"}`, &renewed); status != 200 {
		t.Fatalf("renew status %d", status)
	}
	if renewed.AccessToken == "" || renewed.AccessToken == cred.AccessToken || renewed.ExpiresIn != 1 {
		t.Fatalf("renew gave %+v, want a new token with expiresIn 1", renewed)
	}
	c.Auth().SetAccessToken(renewed.AccessToken)
	if _, err := c.Secrets().Retrieve(opts); err != nil {
		t.Fatalf("Retrieve with renewed token: %v", err)
	}
	if srv.Renewals() != 1 || srv.Logins() != 2 {
		t.Fatalf("renewals %d logins %d, want 1 and 2", srv.Renewals(), srv.Logins())
	}
}

func TestSDKLockout(t *testing.T) {
	t.Parallel()
	srv := New(t, WithLockout(3, 30*time.Second, time.Hour))
	srv.AddIdentity("cid", "csecret", "p1")
	c := newSDK(t, srv.URL, "")
	wants := []string{MsgInvalidCredentials, MsgInvalidCredentials, MsgInvalidCredentials, MsgLocked}
	for i, want := range wants {
		_, err := c.Auth().UniversalAuthLogin("cid", "wrong")
		if ae := apiError(t, err); ae.StatusCode != 401 || ae.ErrorMessage != want || ae.Operation != "CallUniversalAuthLogin" {
			t.Fatalf("attempt %d: got %d %q (%s), want 401 %q", i+1, ae.StatusCode, ae.ErrorMessage, ae.Operation, want)
		}
	}
	// While locked even the right secret is refused.
	if _, err := c.Auth().UniversalAuthLogin("cid", "csecret"); apiError(t, err).ErrorMessage != MsgLocked {
		t.Fatalf("right secret while locked: got %v, want %q", err, MsgLocked)
	}
	if !srv.Locked("cid") || srv.Logins() != 5 {
		t.Fatalf("locked=%v logins=%d, want true and 5", srv.Locked("cid"), srv.Logins())
	}
}

func TestSDKMethodLogins(t *testing.T) {
	t.Parallel()
	srv := New(t)
	srv.SetSecret("p1", "dev", "/", "K", "v")
	srv.AddMethodIdentity(MethodKubernetes, "id-k8s", "k8s-jwt", "p1")
	srv.AddMethodIdentity(MethodOIDC, "id-oidc", "oidc-jwt", "p1")
	srv.AddMethodIdentity(MethodJWT, "id-jwt", "plain-jwt", "p1")
	tests := []struct {
		name      string
		login     func(infisical.AuthInterface) (infisical.MachineIdentityCredential, error)
		route     Route
		wantError string
	}{
		{name: "kubernetes", route: RouteKubernetesLogin, login: func(a infisical.AuthInterface) (infisical.MachineIdentityCredential, error) {
			return a.KubernetesRawServiceAccountTokenLogin("id-k8s", "k8s-jwt")
		}},
		{name: "oidc", route: RouteOIDCLogin, login: func(a infisical.AuthInterface) (infisical.MachineIdentityCredential, error) {
			return a.OidcAuthLogin("id-oidc", "oidc-jwt")
		}},
		{name: "jwt", route: RouteJWTLogin, login: func(a infisical.AuthInterface) (infisical.MachineIdentityCredential, error) {
			return a.JwtAuthLogin("id-jwt", "plain-jwt")
		}},
		{name: "jwt with the wrong token", route: RouteJWTLogin, wantError: "JWT does not match", login: func(a infisical.AuthInterface) (infisical.MachineIdentityCredential, error) {
			return a.JwtAuthLogin("id-jwt", "other")
		}},
		{name: "method the identity does not use", route: RouteOIDCLogin, wantError: MsgInvalidCredentials, login: func(a infisical.AuthInterface) (infisical.MachineIdentityCredential, error) {
			return a.OidcAuthLogin("id-jwt", "plain-jwt")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.Count(tt.route)
			c := newSDK(t, srv.URL, "")
			_, err := tt.login(c.Auth())
			if srv.Count(tt.route) != before+1 {
				t.Fatalf("route %s not hit", tt.route)
			}
			if tt.wantError != "" {
				if ae := apiError(t, err); ae.StatusCode != 401 || !strings.Contains(ae.ErrorMessage, tt.wantError) {
					t.Fatalf("got %d %q, want 401 containing %q", ae.StatusCode, ae.ErrorMessage, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if _, err := c.Secrets().Retrieve(infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"}); err != nil {
				t.Fatalf("Retrieve after login: %v", err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := NewTLS(t)
	srv.AddIdentity("cid", "csecret")
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") || !strings.Contains(srv.CACertPEM(), "BEGIN CERTIFICATE") {
		t.Fatalf("URL %q / CA %q: want https and a PEM CA", srv.URL, srv.CACertPEM())
	}
	_, err := newSDK(t, srv.URL, "").Auth().UniversalAuthLogin("cid", "csecret")
	var re *infisical.RequestError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "x509:") {
		t.Fatalf("without CA: got %v, want a RequestError about x509", err)
	}
	if _, err := newSDK(t, srv.URL, srv.CACertPEM()).Auth().UniversalAuthLogin("cid", "csecret"); err != nil {
		t.Fatalf("with CA: %v", err)
	}
}

func TestRawRequests(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.SetSecret("p1", "dev", "/", "K", "v")
	tok := c.Auth().GetAccessToken()
	tests := []struct {
		name        string
		query       string
		auth        string
		wantStatus  int
		wantError   string
		wantMessage string // substring of the JSON message
	}{
		{name: "no token", query: "workspaceId=p1&environment=dev", wantStatus: 401, wantError: "UnauthorizedError", wantMessage: `"Token missing"`},
		{name: "unknown token", query: "workspaceId=p1&environment=dev", auth: "Bearer nope", wantStatus: 403, wantError: "TokenError"},
		{name: "bad expand flag", query: "workspaceId=p1&environment=dev&expandSecretReferences=yes", auth: "Bearer " + tok, wantStatus: 422, wantError: "ValidationFailure", wantMessage: `"path":["expandSecretReferences"]`},
		{name: "bad imports flag", query: "workspaceId=p1&environment=dev&include_imports=1", auth: "Bearer " + tok, wantStatus: 422, wantError: "ValidationFailure", wantMessage: `"path":["include_imports"]`},
		{name: "bad version", query: "workspaceId=p1&environment=dev&version=x", auth: "Bearer " + tok, wantStatus: 422, wantError: "ValidationFailure", wantMessage: "Expected number"},
		{name: "no project", query: "environment=dev", auth: "Bearer " + tok, wantStatus: 400, wantError: "BadRequest", wantMessage: "workspaceSlug or workspaceId"},
		{name: "empty slug ignored", query: "workspaceId=p1&workspaceSlug=&environment=dev", auth: "Bearer " + tok, wantStatus: 200},
		{name: "path defaults to root", query: "workspaceId=p1&environment=dev&secretPath=", auth: "Bearer " + tok, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v3/secrets/raw/K?"+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Fatalf("status %d content type %q body %s, want %d JSON", resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				return
			}
			var env struct {
				ReqID      string          `json:"reqId"`
				StatusCode int             `json:"statusCode"`
				Error      string          `json:"error"`
				Message    json.RawMessage `json:"message"`
			}
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatal(err)
			}
			if env.ReqID == "" || env.StatusCode != tt.wantStatus || env.Error != tt.wantError || !strings.Contains(string(env.Message), tt.wantMessage) {
				t.Fatalf("envelope %s, want error %s message containing %s", body, tt.wantError, tt.wantMessage)
			}
		})
	}
}

func TestFailNextHangDown(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.SetSecret("p1", "dev", "/", "K", "v")
	opts := infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"}

	srv.FailNext(RouteGetSecret, 1, 429, "Rate limit exceeded. Please try again in 1 seconds", http.Header{"Retry-After": {"1"}})
	if ae := apiError(t, func() error { _, err := c.Secrets().Retrieve(opts); return err }()); ae.StatusCode != 429 || !strings.Contains(ae.ErrorMessage, "try again in 1 seconds") {
		t.Fatalf("got %d %q, want the injected 429", ae.StatusCode, ae.ErrorMessage)
	}
	if _, err := c.Secrets().Retrieve(opts); err != nil {
		t.Fatalf("after the injected failure: %v", err)
	}

	srv.Hang(RouteGetSecret, true)
	done := make(chan error, 1)
	go func() { _, err := c.Secrets().Retrieve(opts); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("hung request answered: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	srv.Hang(RouteGetSecret, false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("released request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still hanging after Hang(false)")
	}

	srv.Down(true)
	var re *infisical.RequestError
	if _, err := c.Secrets().Retrieve(opts); !errors.As(err, &re) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("down: got %v, want connection refused", err)
	}
	srv.Down(false)
	if _, err := c.Secrets().Retrieve(opts); err != nil {
		t.Fatalf("up again: %v", err)
	}

	reqs := srv.Requests()
	last := reqs[len(reqs)-1]
	if last.Route != RouteGetSecret || last.Identity != "cid" || last.Status != 200 || last.Query.Get("environment") != "dev" {
		t.Fatalf("last logged request %+v", last)
	}
	if got := reqs[1]; got.Status != 429 || got.ReqID == "" {
		t.Fatalf("failed request logged as %+v, want status 429 with a reqId", got)
	}
}

// TestHangReleasedOnClose checks a hung request does not keep Close (and the test) waiting.
func TestHangReleasedOnClose(t *testing.T) {
	t.Parallel()
	srv, c := loggedIn(t)
	srv.Hang(RouteAll, true)
	done := make(chan error, 1)
	go func() {
		_, err := c.Secrets().Retrieve(infisical.RetrieveSecretOptions{SecretKey: "K", ProjectID: "p1", Environment: "dev"})
		done <- err
	}()
	eventually.True(t, "the read to reach the fake", func() bool { return srv.Reads() > 0 })
	srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("aborted request reported success")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the hung request")
	}
}

func postJSON(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}
