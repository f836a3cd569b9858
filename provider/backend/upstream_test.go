package backend

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

const (
	testProject = "proj-1"
	testClient  = "client-1"
	testSecret  = "client-secret-1"
)

// providerDefaults are a provider's Infisical settings: Universal Auth against url.
func providerDefaults(t *testing.T, url string) settings.Infisical {
	t.Helper()
	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_CLIENT_ID": testClient, "INFISICAL_PROJECT_ID": testProject, "INFISICAL_BASE_URL": url,
	}, map[string]string{"INFISICAL_CLIENT_SECRET": testSecret}))
	if err != nil {
		t.Fatalf("provider settings: %v", err)
	}
	return s.Infisical
}

func writeTestFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAs dials s and reads DB_PASSWORD with it.
func readAs(t *testing.T, s settings.Infisical) (string, error) {
	t.Helper()
	up, err := Dial(5*time.Second, slog.New(slog.DiscardHandler))(s)
	if err != nil {
		return "", err
	}
	t.Cleanup(up.Close)
	ref, err := ResolveRef(s, "DB_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sec, err := up.GetSecret(ctx, ref)
	return sec.Value, err
}

func TestTenantLogsInWithItsOwnMethod(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.AddIdentity(testClient, testSecret, testProject)
	fake.AddIdentity("tenant-client", "tenant-secret", testProject)
	fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-jwt", "signed-jwt", testProject)
	fake.AddMethodIdentity(fakeinfisical.MethodKubernetes, "id-k8s", "sa-token", testProject)
	fake.AddMethodIdentity(fakeinfisical.MethodOIDC, "id-oidc", "oidc-token", testProject)
	fake.AddMethodIdentity(fakeinfisical.MethodJWT, "id-static", "", testProject)
	fake.SetSecret(testProject, "prod", "/", "DB_PASSWORD", "pw")
	defaults := providerDefaults(t, fake.URL)
	provider := &settings.Settings{Infisical: defaults, TenantAmbientAuth: true}
	provider.Infisical.KubernetesTokenPath = writeTestFile(t, "k8s", "sa-token\n") // the provider's own, lent to links

	tests := []struct {
		name            string
		config, secrets map[string]string
		route           fakeinfisical.Route // the login route; "" = no login
		identity        string
		ownIdentity     bool
	}{
		{name: "provider's identity", config: map[string]string{"INFISICAL_ENVIRONMENT": "prod"},
			route: fakeinfisical.RouteUniversalAuthLogin, identity: testClient},
		{name: "own universal-auth client", config: map[string]string{"INFISICAL_CLIENT_ID": "tenant-client"},
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "tenant-secret"},
			route:   fakeinfisical.RouteUniversalAuthLogin, identity: "tenant-client", ownIdentity: true},
		{name: "jwt", config: map[string]string{"INFISICAL_AUTH_METHOD": "jwt", "INFISICAL_IDENTITY_ID": "id-jwt"},
			secrets: map[string]string{"INFISICAL_JWT": "signed-jwt"},
			route:   fakeinfisical.RouteJWTLogin, identity: "id-jwt", ownIdentity: true},
		{name: "kubernetes with the provider's token (TENANT_AMBIENT_AUTH)",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "kubernetes", "INFISICAL_IDENTITY_ID": "id-k8s"},
			route:  fakeinfisical.RouteKubernetesLogin, identity: "id-k8s", ownIdentity: true},
		{name: "oidc token", config: map[string]string{"INFISICAL_AUTH_METHOD": "oidc", "INFISICAL_IDENTITY_ID": "id-oidc"},
			secrets: map[string]string{"INFISICAL_OIDC_TOKEN": "oidc-token"},
			route:   fakeinfisical.RouteOIDCLogin, identity: "id-oidc", ownIdentity: true},
		{name: "static token", config: map[string]string{"INFISICAL_AUTH_METHOD": "token"},
			secrets:  map[string]string{"INFISICAL_ACCESS_TOKEN": fake.IssueToken("id-static")},
			identity: "id-static", ownIdentity: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, err := settings.LoadTenant(settings.Maps(tt.config, tt.secrets), provider)
			if err != nil {
				t.Fatalf("LoadTenant: %v", err)
			}
			if own := IdentityID(tenant.Infisical) != IdentityID(provider.Infisical); own != tt.ownIdentity {
				t.Fatalf("tenant has its own identity id: %v; want %v", own, tt.ownIdentity)
			}
			logins, routeLogins := fake.Logins(), 0
			if tt.route != "" {
				routeLogins = fake.Count(tt.route)
			}
			got, err := readAs(t, tenant.Infisical)
			if err != nil || got != "pw" {
				t.Fatalf("read: %q, %v", got, err)
			}
			wantLogins := 0
			if tt.route != "" {
				wantLogins = 1
				if n := fake.Count(tt.route) - routeLogins; n != 1 {
					t.Fatalf("%d logins on %s; want 1", n, tt.route)
				}
			}
			if n := fake.Logins() - logins; n != wantLogins {
				t.Fatalf("%d logins; want %d", n, wantLogins)
			}
			reqs := fake.Requests()
			if last := reqs[len(reqs)-1]; last.Identity != tt.identity {
				t.Fatalf("the read came from %q; want %q", last.Identity, tt.identity)
			}
		})
	}
}

func TestDialReadsTheCACertPath(t *testing.T) {
	fake := fakeinfisical.NewTLS(t)
	fake.AddIdentity(testClient, testSecret, testProject)
	fake.SetSecret(testProject, "prod", "/", "DB_PASSWORD", "pw")
	defaults := providerDefaults(t, fake.URL)

	tests := []struct {
		name    string
		path    string
		wantErr []string // "" = served
	}{
		{name: "CA file", path: writeTestFile(t, "ca.pem", fake.CACertPEM())},
		{name: "missing file", path: filepath.Join(t.TempDir(), "missing.pem"),
			wantErr: []string{"INFISICAL_CA_CERT_PATH", "cannot read", "missing.pem"}},
		{name: "no PEM in the file", path: writeTestFile(t, "junk.pem", "junk"),
			wantErr: []string{"INFISICAL_CA_CERT_PATH", "junk.pem holds no PEM certificate"}},
		{name: "file over 1 MiB", path: writeTestFile(t, "huge.pem", strings.Repeat("x", 2<<20)),
			wantErr: []string{"INFISICAL_CA_CERT_PATH", "larger than 1 MiB"}},
		{name: "not a regular file", path: os.DevNull,
			wantErr: []string{"INFISICAL_CA_CERT_PATH", "not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaults
			s.CACertPath = tt.path
			got, err := readAs(t, s)
			if len(tt.wantErr) == 0 {
				if err != nil || got != "pw" {
					t.Fatalf("read: %q, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("read succeeded (%q); want an error", got)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A folder too large to cache whole is refused with an error that says how to read it; read one secret at a time,
// it is served.
func TestOversizedListingIsRefusedClearly(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	for i := range maxListedSecrets + 1 {
		fake.SetSecret(testProject, "prod", "/big", "K"+strconv.Itoa(i), "v")
	}
	// Listing 10 001 secrets under -race on a busy machine can take seconds: give it the most a request may wait.
	r := newReplica(t, fake, clk, nil, "UPSTREAM_TIMEOUT", "8s")
	msg := r.wantKind(t, "/big/K1", secrets.KindUpstreamError)
	for _, want := range []string{`folder "/big" lists 10001 secrets`, "CACHE_PREFETCH=false"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	newReplica(t, fake, clk, nil, "CACHE_PREFETCH", "false", "UPSTREAM_TIMEOUT", "8s").mustGet(t, "/big/K1", "v")
}

func TestCheckListingBoundsBytes(t *testing.T) {
	big := infisical.Listing{Secrets: map[string]infisical.Secret{
		"A": {Name: "A", Value: strings.Repeat("x", maxListingBytes), Path: "/", Environment: "prod"},
	}}
	if err := checkListing("/f", big); err == nil || !strings.Contains(err.Error(), "4 MiB") {
		t.Fatalf("a listing over %d bytes: %v", maxListingBytes, err)
	}
	if infisical.IsFinal(checkListing("/f", big)) {
		t.Fatal("an oversized listing is final: it would drop cached values")
	}
	small := infisical.Listing{Secrets: map[string]infisical.Secret{"A": {Name: "A", Value: "x"}}}
	if err := checkListing("/f", small); err != nil {
		t.Fatalf("a small listing: %v", err)
	}
}

// The Infisical client speaks of its own configuration; NewClient makes its errors name the settings to fix.
func TestNewClientErrorsNameSettings(t *testing.T) {
	good := providerDefaults(t, "https://infisical.example")
	tests := []struct {
		name string
		edit func(*settings.Infisical)
		want string
	}{
		{name: "missing secret", edit: func(s *settings.Infisical) { s.ClientSecret = "" },
			want: "auth method universal-auth needs INFISICAL_CLIENT_SECRET"},
		{name: "oidc without a token", edit: func(s *settings.Infisical) {
			s.Credentials = infisical.Credentials{Method: infisical.MethodOIDC, IdentityID: "i"}
		}, want: "needs INFISICAL_OIDC_TOKEN or INFISICAL_OIDC_TOKEN_PATH"},
		{name: "unknown method", edit: func(s *settings.Infisical) { s.Method = "ldap" },
			want: `INFISICAL_AUTH_METHOD "ldap" is not supported`},
		{name: "bad URL", edit: func(s *settings.Infisical) { s.BaseURL = "app.infisical.com" },
			want: "INFISICAL_BASE_URL is not an http(s) URL"},
		{name: "bad CA", edit: func(s *settings.Infisical) { s.CACert = "not pem" },
			want: "INFISICAL_CA_CERT or INFISICAL_CA_CERT_PATH holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.edit(&s)
			if _, err := NewClient(s, time.Second, slog.New(slog.DiscardHandler), nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %s", err, tt.want)
			}
		})
	}
}

// An Infisical behind a private CA the settings do not name: the error says which settings take its certificate.
func TestUntrustedCertificateNamesTheCASettings(t *testing.T) {
	fake := fakeinfisical.NewTLS(t)
	fake.AddIdentity(testClient, testSecret, testProject)
	fake.SetSecret(testProject, "prod", "/", "DB_PASSWORD", "pw")
	_, err := readAs(t, providerDefaults(t, fake.URL))
	if err == nil || !strings.Contains(err.Error(), "set INFISICAL_CA_CERT or INFISICAL_CA_CERT_PATH to its certificate") {
		t.Fatalf("read: %v; want an error naming the CA settings", err)
	}
}

// A folder whose listing is larger than the client reads at all is refused with an error that says how to read
// it; read one secret at a time, it is served.
func TestListingTooLargeToReadSaysHowToReadTheFolder(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	fake.SetSecret(testProject, "prod", "/huge", "BIG", strings.Repeat("x", infisical.MaxResponseBytes))
	fake.SetSecret(testProject, "prod", "/huge", "SMALL", "small")
	msg := newReplica(t, fake, clk, nil, "UPSTREAM_TIMEOUT", "8s").wantKind(t, "/huge/SMALL", secrets.KindUpstreamError)
	for _, want := range []string{"larger than 4 MiB", "CACHE_PREFETCH=false"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	newReplica(t, fake, clk, nil, "CACHE_PREFETCH", "false", "UPSTREAM_TIMEOUT", "8s").mustGet(t, "/huge/SMALL", "small")
}
