package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// withMethod switches h from Universal Auth to method, with that method's settings.
func (h *harness) withMethod(method string, methodSettings map[string]string) {
	delete(h.env, "INFISICAL_CLIENT_ID")
	delete(h.env, "INFISICAL_CLIENT_SECRET")
	h.env["INFISICAL_AUTH_METHOD"] = method
	maps.Copy(h.env, methodSettings)
}

// useFake points h at fake, seeded with the Universal Auth identity and the secret the auth tests read.
func (h *harness) useFake(fake *fakeinfisical.Server) {
	fake.AddIdentity(clientID, secret, project)
	fake.SetSecret(project, "prod", "/", "DB_PASSWORD", "v1-password")
	fake.SetSecret(project, "prod", "/", "DB_PASSWORD", "v2-password")
	h.fake = fake
	h.env["INFISICAL_BASE_URL"] = fake.URL
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lastIdentity is the identity the fake saw on its latest request.
func lastIdentity(fake *fakeinfisical.Server) string {
	reqs := fake.Requests()
	if len(reqs) == 0 {
		return ""
	}
	return reqs[len(reqs)-1].Identity
}

// hermeticAWS gives the process (the AWS SDK reads the real environment, not serve's) static AWS credentials and
// a region, and shuts every other source: the SDK then signs its STS request locally and never calls AWS or IMDS.
func hermeticAWS(t *testing.T) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret", "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "", "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_WEB_IDENTITY_TOKEN_FILE": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(k, v)
	}
}

func TestKubernetesAuthReLogsInWithTheRotatedToken(t *testing.T) {
	h := newHarness(t)
	tokenPath := writeFile(t, filepath.Join(t.TempDir(), "token"), "sa-token-1\n")
	h.fake.AddMethodIdentity(fakeinfisical.MethodKubernetes, "id-k8s", "sa-token-1", project)
	h.withMethod("kubernetes", map[string]string{"INFISICAL_IDENTITY_ID": "id-k8s", "INFISICAL_KUBERNETES_TOKEN_PATH": tokenPath})
	h.env["CACHE_TTL"] = "0"
	h.start()

	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("first fetch: %q", got)
	}
	if n := h.fake.Count(fakeinfisical.RouteKubernetesLogin); n != 1 || h.fake.Logins() != 1 {
		t.Fatalf("%d kubernetes logins of %d; want 1 of 1", n, h.fake.Logins())
	}
	if id := lastIdentity(h.fake); id != "id-k8s" {
		t.Fatalf("the read came from %q; want id-k8s", id)
	}

	// The kubelet rotates the projected token and Infisical accepts only the new one: the re-login after the
	// access token expires must read the file again.
	writeFile(t, tokenPath, "sa-token-2\n")
	h.fake.AddMethodIdentity(fakeinfisical.MethodKubernetes, "id-k8s", "sa-token-2", project)
	h.fake.ExpireTokens()
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after token expiry: %q", got)
	}
	if n := h.fake.Count(fakeinfisical.RouteKubernetesLogin); n != 2 {
		t.Fatalf("%d kubernetes logins after the token expired; want 2", n)
	}
	if strings.Contains(h.logs.String(), "sa-token-") {
		t.Fatal("a service account token reached the logs")
	}
}

func TestAuthMethodsServe(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, h *harness) map[string]string // registers the identity; returns the method's settings
		method   string
		route    fakeinfisical.Route // the login route; "" = no login
		identity string
	}{
		{name: "oidc token file", method: "oidc", route: fakeinfisical.RouteOIDCLogin, identity: "id-oidc",
			setup: func(t *testing.T, h *harness) map[string]string {
				h.fake.AddMethodIdentity(fakeinfisical.MethodOIDC, "id-oidc", "oidc-token", project)
				path := writeFile(t, filepath.Join(t.TempDir(), "oidc"), "oidc-token\n")
				return map[string]string{"INFISICAL_IDENTITY_ID": "id-oidc", "INFISICAL_OIDC_TOKEN_PATH": path}
			}},
		{name: "oidc token", method: "oidc", route: fakeinfisical.RouteOIDCLogin, identity: "id-oidc",
			setup: func(t *testing.T, h *harness) map[string]string {
				h.fake.AddMethodIdentity(fakeinfisical.MethodOIDC, "id-oidc", "oidc-token", project)
				return map[string]string{"INFISICAL_IDENTITY_ID": "id-oidc", "INFISICAL_OIDC_TOKEN": "oidc-token"}
			}},
		{name: "jwt", method: "jwt", route: fakeinfisical.RouteJWTLogin, identity: "id-jwt",
			setup: func(t *testing.T, h *harness) map[string]string {
				h.fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-jwt", "signed-jwt", project)
				return map[string]string{"INFISICAL_IDENTITY_ID": "id-jwt", "INFISICAL_JWT": "signed-jwt"}
			}},
		{name: "static token", method: "token", identity: "id-static",
			setup: func(t *testing.T, h *harness) map[string]string {
				h.fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-static", "", project)
				return map[string]string{"INFISICAL_ACCESS_TOKEN": h.fake.IssueToken("id-static")}
			}},
		{name: "aws-iam signature shape", method: "aws-iam", route: fakeinfisical.RouteAWSLogin, identity: "id-aws",
			setup: func(t *testing.T, h *harness) map[string]string {
				hermeticAWS(t)
				h.fake.AddMethodIdentity(fakeinfisical.MethodAWS, "id-aws", "", project)
				return map[string]string{"INFISICAL_IDENTITY_ID": "id-aws"}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.withMethod(tt.method, tt.setup(t, h))
			h.start()
			if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
				t.Fatalf("fetch: %q", got)
			}
			wantLogins := 0
			if tt.route != "" {
				wantLogins = 1
				if n := h.fake.Count(tt.route); n != 1 {
					t.Fatalf("%d requests to %s; want 1", n, tt.route)
				}
			}
			if n := h.fake.Logins(); n != wantLogins {
				t.Fatalf("%d logins; want %d", n, wantLogins)
			}
			if id := lastIdentity(h.fake); id != tt.identity {
				t.Fatalf("the read came from %q; want %q", id, tt.identity)
			}
		})
	}
}

func TestStaticTokenIsNeverRefreshed(t *testing.T) {
	h := newHarness(t)
	h.fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-static", "", project)
	h.withMethod("token", map[string]string{"INFISICAL_ACCESS_TOKEN": h.fake.IssueToken("id-static")})
	h.env["CACHE_TTL"] = "0"
	h.start()
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})

	h.fake.ExpireTokens()
	_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
	werr := wantKind(t, err, secrets.KindUpstreamError)
	if !strings.Contains(werr.Message, "token has expired") {
		t.Fatalf("UpstreamError %q does not say the token expired", werr.Message)
	}
	if n := h.fake.Logins(); n != 0 {
		t.Fatalf("%d logins with a static token; want none", n)
	}
}

// A method other than Universal Auth backs off after a failed login just the same: a wrong token costs one login,
// not one per request.
func TestFailedMethodLoginBacksOff(t *testing.T) {
	h := newHarness(t)
	h.fake.AddMethodIdentity(fakeinfisical.MethodOIDC, "id-oidc", "the-right-token", project)
	path := writeFile(t, filepath.Join(t.TempDir(), "oidc"), "a-wrong-token\n")
	h.withMethod("oidc", map[string]string{"INFISICAL_IDENTITY_ID": "id-oidc", "INFISICAL_OIDC_TOKEN_PATH": path})
	h.start()
	for i := range 6 {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
		werr := wantKind(t, err, secrets.KindUpstreamError)
		if !strings.Contains(werr.Message, "authentication to Infisical failed") {
			t.Fatalf("fetch %d: UpstreamError %q does not say the login failed", i, werr.Message)
		}
	}
	// One login fails; a second may come once the first pause (1 s) is over on a slow machine.
	if n := h.fake.Count(fakeinfisical.RouteOIDCLogin); n < 1 || n > 2 {
		t.Fatalf("%d oidc logins for 6 fetches; want 1 or 2", n)
	}
	if strings.Contains(h.logs.String(), "a-wrong-token") {
		t.Fatal("the OIDC token reached the logs")
	}
}

func TestMissingMethodSettingStopsServe(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		settings map[string]string
		want     []string // every one must be named
	}{
		{name: "universal-auth without a secret", method: "universal-auth",
			settings: map[string]string{"INFISICAL_CLIENT_ID": clientID}, want: []string{"INFISICAL_CLIENT_SECRET"}},
		{name: "universal-auth without anything", method: "universal-auth",
			want: []string{"INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET"}},
		{name: "kubernetes", method: "kubernetes", want: []string{"INFISICAL_IDENTITY_ID"}},
		{name: "aws-iam", method: "aws-iam", want: []string{"INFISICAL_IDENTITY_ID"}},
		{name: "gcp-id-token", method: "gcp-id-token", want: []string{"INFISICAL_IDENTITY_ID"}},
		{name: "gcp-iam without a key file", method: "gcp-iam",
			settings: map[string]string{"INFISICAL_IDENTITY_ID": "id"}, want: []string{"INFISICAL_GCP_KEY_FILE"}},
		{name: "gcp-iam without anything", method: "gcp-iam", want: []string{"INFISICAL_IDENTITY_ID", "INFISICAL_GCP_KEY_FILE"}},
		{name: "azure", method: "azure", want: []string{"INFISICAL_IDENTITY_ID"}},
		{name: "oidc without a token", method: "oidc",
			settings: map[string]string{"INFISICAL_IDENTITY_ID": "id"}, want: []string{"INFISICAL_OIDC_TOKEN", "INFISICAL_OIDC_TOKEN_PATH"}},
		{name: "oidc without an identity", method: "oidc",
			settings: map[string]string{"INFISICAL_OIDC_TOKEN": "t"}, want: []string{"INFISICAL_IDENTITY_ID"}},
		{name: "jwt", method: "jwt", settings: map[string]string{"INFISICAL_IDENTITY_ID": "id"}, want: []string{"INFISICAL_JWT"}},
		{name: "token", method: "token", want: []string{"INFISICAL_ACCESS_TOKEN"}},
		{name: "unknown method", method: "ldap", want: []string{"INFISICAL_AUTH_METHOD", "universal-auth, kubernetes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.withMethod(tt.method, tt.settings)
			code, _, stderr := runServeBriefly(t, h.env)
			if code != 2 {
				t.Fatalf("serve exit code = %d; want 2\n%s", code, stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("start-up error does not name %s:\n%s", want, stderr)
				}
			}
		})
	}
}

// runServeBriefly runs serve, which must fail at start; a serve that starts anyway is stopped after 10 s.
func runServeBriefly(t *testing.T, env map[string]string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = cli.Run(ctx, []string{"serve"}, strings.NewReader(""), &out, &errOut, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	return code, out.String(), errOut.String()
}

func TestSelfHostedInfisicalBehindAPrivateCA(t *testing.T) {
	other := fakeinfisical.NewTLS(t) // its CA signed nothing the tested server presents
	tests := []struct {
		name    string
		env     func(t *testing.T, fake *fakeinfisical.Server) map[string]string
		trusted bool
	}{
		{name: "no CA setting", env: func(*testing.T, *fakeinfisical.Server) map[string]string { return nil }},
		{name: "another CA", env: func(*testing.T, *fakeinfisical.Server) map[string]string {
			return map[string]string{"INFISICAL_CA_CERT": other.CACertPEM()}
		}},
		{name: "INFISICAL_CA_CERT", trusted: true, env: func(_ *testing.T, fake *fakeinfisical.Server) map[string]string {
			return map[string]string{"INFISICAL_CA_CERT": fake.CACertPEM()}
		}},
		{name: "INFISICAL_CA_CERT with escaped newlines", trusted: true, env: func(_ *testing.T, fake *fakeinfisical.Server) map[string]string {
			return map[string]string{"INFISICAL_CA_CERT": strings.ReplaceAll(fake.CACertPEM(), "\n", `\n`)}
		}},
		{name: "INFISICAL_CA_CERT_PATH", trusted: true, env: func(t *testing.T, fake *fakeinfisical.Server) map[string]string {
			return map[string]string{"INFISICAL_CA_CERT_PATH": writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), fake.CACertPEM())}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			fake := fakeinfisical.NewTLS(t)
			h.useFake(fake)
			maps.Copy(h.env, tt.env(t, fake))
			h.start()
			s, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
			if tt.trusted {
				if err != nil || s.StringSecret == nil || *s.StringSecret != "v2-password" {
					t.Fatalf("fetch: %v, %v", s, err)
				}
				return
			}
			werr := wantKind(t, err, secrets.KindUpstreamError)
			for _, want := range []string{"certificate problem", "INFISICAL_CA_CERT", "INFISICAL_CA_CERT_PATH"} {
				if !strings.Contains(werr.Message, want) {
					t.Errorf("UpstreamError %q does not say %q", werr.Message, want)
				}
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "certificate problem") || !strings.Contains(logs, "set INFISICAL_CA_CERT or INFISICAL_CA_CERT_PATH") {
				t.Errorf("the logs do not report the certificate problem and its setting:\n%s", logs)
			}
			if fake.Count(fakeinfisical.RouteAll) != 0 {
				t.Error("a request reached Infisical over a connection the backend should not trust")
			}
		})
	}
}

func TestUnusableCACertPathStopsServe(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		want string
	}{
		{name: "missing file", path: filepath.Join(dir, "missing.pem"), want: "cannot read the CA certificate file"},
		{name: "no PEM in it", path: writeFile(t, filepath.Join(dir, "junk.pem"), "not a certificate"), want: "junk.pem holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.env["INFISICAL_CA_CERT_PATH"] = tt.path
			code, _, stderr := runServeBriefly(t, h.env)
			if code == 0 {
				t.Fatalf("serve exit code 0 with an unusable INFISICAL_CA_CERT_PATH\n%s", stderr)
			}
			for _, want := range []string{"INFISICAL_CA_CERT_PATH", tt.want} {
				if !strings.Contains(stderr, want) {
					t.Errorf("start-up error does not say %q:\n%s", want, stderr)
				}
			}
		})
	}
}

// loginRecorder is a proxy in front of the fake that keeps the JSON body of every login it forwards.
type loginRecorder struct {
	mu     sync.Mutex
	bodies []map[string]any
}

func recordLogins(t *testing.T, target string) (*loginRecorder, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &loginRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/login") {
			raw, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var body map[string]any
			_ = json.Unmarshal(raw, &body)
			rec.mu.Lock()
			rec.bodies = append(rec.bodies, body)
			rec.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(raw))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

func (r *loginRecorder) last() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		return nil
	}
	return r.bodies[len(r.bodies)-1]
}

func TestOrganizationSlugReachesTheLogin(t *testing.T) {
	tests := []struct {
		name   string
		method func(h *harness)
		slug   string
	}{
		{name: "universal-auth", slug: "sub-org", method: func(*harness) {}},
		{name: "jwt", slug: "sub-org", method: func(h *harness) {
			h.fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-jwt", "signed-jwt", project)
			h.withMethod("jwt", map[string]string{"INFISICAL_IDENTITY_ID": "id-jwt", "INFISICAL_JWT": "signed-jwt"})
		}},
		{name: "unset", method: func(*harness) {}},
	}
	// The SDK falls back to this variable of the process when the slug is empty.
	t.Setenv("INFISICAL_AUTH_ORGANIZATION_SLUG", "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.method(h)
			rec, proxyURL := recordLogins(t, h.fake.URL)
			h.env["INFISICAL_BASE_URL"] = proxyURL
			if tt.slug != "" {
				h.env["INFISICAL_ORGANIZATION_SLUG"] = tt.slug
			}
			h.start()
			h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
			body := rec.last()
			if body == nil {
				t.Fatal("no login went through the proxy")
			}
			got, present := body["organizationSlug"]
			switch {
			case tt.slug == "" && present:
				t.Fatalf("login body has organizationSlug %v without INFISICAL_ORGANIZATION_SLUG", got)
			case tt.slug != "" && got != tt.slug:
				t.Fatalf("login body organizationSlug = %v; want %q", got, tt.slug)
			}
		})
	}
}
