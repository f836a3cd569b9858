package settings

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

// minimal is the least a valid provider configuration needs.
func minimal() map[string]string {
	return map[string]string{
		"INFISICAL_PROJECT_ID":    "proj-1",
		"INFISICAL_CLIENT_ID":     "client-1",
		"INFISICAL_CLIENT_SECRET": "s3cret-client",
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func without(base map[string]string, names ...string) map[string]string {
	m := maps.Clone(base)
	for _, n := range names {
		delete(m, n)
	}
	return m
}

func load(t *testing.T, m map[string]string) *Settings {
	t.Helper()
	s, err := Load(Maps(m, nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func problemsOf(t *testing.T, err error) []Problem {
	t.Helper()
	var serr *Error
	if !errors.As(err, &serr) {
		t.Fatalf("error %v (%T) is not a *settings.Error", err, err)
	}
	return serr.Problems
}

func caPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestDefaults(t *testing.T) {
	s := load(t, minimal())
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"INFISICAL_BASE_URL", s.Infisical.BaseURL, "https://app.infisical.com"},
		{"INFISICAL_ENVIRONMENT", s.Infisical.Environment, "prod"},
		{"INFISICAL_SECRET_PATH", s.Infisical.SecretPath, "/"},
		{"INFISICAL_AUTH_METHOD", s.Infisical.Method, infisical.MethodUniversalAuth},
		{"INFISICAL_KUBERNETES_TOKEN_PATH", s.Infisical.KubernetesTokenPath, "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		{"INFISICAL_AZURE_RESOURCE", s.Infisical.AzureResource, ""},
		{"INFISICAL_CA_CERT", s.Infisical.CACert, ""},
		{"NATS_URL", s.NATSURL, "nats://localhost:4222"},
		{"NATS_CREDS", s.NATSCreds, ""},
		{"NATS_SUBJECT_PREFIX", s.SubjectPrefix, "wasmcloud.secrets"},
		{"BACKEND_NAME", s.BackendName, "infisical"},
		{"API_VERSION", s.APIVersion, "v1alpha1"},
		{"SERVER_XKEY_SEED", s.ServerXKeySeed, ""},
		{"CACHE_TTL", s.CacheTTL, 30 * time.Second},
		{"STALE_IF_ERROR", s.StaleIfError, 10 * time.Minute},
		{"CACHE_NOT_FOUND_TTL", s.NotFoundTTL, 5 * time.Second},
		{"CACHE_PREFETCH", s.CachePrefetch, true},
		{"SHARED_CACHE", s.SharedCache, true},
		{"SHARED_CACHE_BUCKET", s.SharedCacheBucket, "infisical-secrets-cache"},
		{"UPSTREAM_TIMEOUT", s.UpstreamTimeout, 5 * time.Second},
		{"TRUSTED_ISSUERS", s.TrustedIssuers == nil, true},
		{"ACCESS_RULES", s.AccessRules, ""},
		{"LOG_LEVEL", s.LogLevel, slog.LevelInfo},
		{"LOG_FORMAT", s.LogFormat, "text"},
		{"HEALTH_ADDR", s.HealthAddr, ""},
		{"INFISICAL_PROJECT_ID", s.Infisical.ProjectID, "proj-1"},
		{"INFISICAL_CLIENT_ID", s.Infisical.ClientID, "client-1"},
		{"INFISICAL_CLIENT_SECRET", s.Infisical.ClientSecret, "s3cret-client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

// Every documented default must parse to what the table says, so --help never lies.
func TestSpecsDefaultsMatchLoad(t *testing.T) {
	s := load(t, minimal())
	for _, sp := range Specs() {
		t.Run(sp.Name, func(t *testing.T) {
			e := byName[sp.Name]
			if e.get == nil || sp.Default == "" {
				return
			}
			if got := e.get(s); got != sp.Default && !isDurationSpelling(sp.Default, got) {
				t.Errorf("loaded %q, documented default %q", got, sp.Default)
			}
		})
	}
}

func isDurationSpelling(doc, got string) bool {
	d1, err1 := time.ParseDuration(doc)
	d2, err2 := time.ParseDuration(got)
	return err1 == nil && err2 == nil && d1 == d2
}

func TestSpecs(t *testing.T) {
	specs := Specs()
	names := map[string]bool{}
	for _, sp := range specs {
		if names[sp.Name] {
			t.Errorf("%s listed twice", sp.Name)
		}
		names[sp.Name] = true
		if sp.Help == "" {
			t.Errorf("%s has no help", sp.Name)
		}
	}
	// The settings named in the brief and the original README, all present.
	for _, n := range []string{"INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET", "INFISICAL_PROJECT_ID", "INFISICAL_BASE_URL",
		"INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH", "INFISICAL_AUTH_METHOD", "INFISICAL_IDENTITY_ID",
		"INFISICAL_KUBERNETES_TOKEN_PATH", "INFISICAL_AZURE_RESOURCE", "INFISICAL_GCP_KEY_FILE", "INFISICAL_OIDC_TOKEN",
		"INFISICAL_OIDC_TOKEN_PATH", "INFISICAL_JWT", "INFISICAL_ACCESS_TOKEN", "INFISICAL_CA_CERT", "INFISICAL_CA_CERT_PATH",
		"INFISICAL_ORGANIZATION_SLUG", "NATS_URL", "NATS_CREDS", "NATS_TLS_CA", "NATS_SUBJECT_PREFIX", "BACKEND_NAME",
		"API_VERSION", "SERVER_XKEY_SEED", "CACHE_TTL", "STALE_IF_ERROR", "UPSTREAM_TIMEOUT", "TRUSTED_ISSUERS",
		"ACCESS_RULES", "LOG_LEVEL", "RUST_LOG", "LOG_FORMAT", "APPLICATION"} {
		if !names[n] {
			t.Errorf("%s missing from Specs", n)
		}
	}
	if !slices.EqualFunc(specs, Specs(), func(a, b Spec) bool { return a == b }) {
		t.Error("Specs order is not stable")
	}
	secret := map[string]bool{"INFISICAL_CLIENT_SECRET": true, "TENANT_INFISICAL_CLIENT_SECRET": true, "INFISICAL_OIDC_TOKEN": true, "INFISICAL_JWT": true,
		"INFISICAL_ACCESS_TOKEN": true, "SERVER_XKEY_SEED": true}
	for _, sp := range specs {
		if sp.Secret != secret[sp.Name] {
			t.Errorf("%s: Secret = %v, want %v", sp.Name, sp.Secret, secret[sp.Name])
		}
	}
}

func TestValidValues(t *testing.T) {
	acct1, acct2 := testkeys.AccountKey(t), testkeys.AccountKey(t)
	seed := testkeys.CurveSeed(t)
	ca := caPEM(t)
	tests := []struct {
		name  string
		kv    []string
		check func(s *Settings) bool
	}{
		{"base URL trailing slash trimmed", []string{"INFISICAL_BASE_URL", "https://infisical.example.com/"},
			func(s *Settings) bool { return s.Infisical.BaseURL == "https://infisical.example.com" }},
		{"http base URL", []string{"INFISICAL_BASE_URL", "http://127.0.0.1:8080"},
			func(s *Settings) bool { return s.Infisical.BaseURL == "http://127.0.0.1:8080" }},
		{"secret path cleaned", []string{"INFISICAL_SECRET_PATH", "/apps//shop/"},
			func(s *Settings) bool { return s.Infisical.SecretPath == "/apps/shop" }},
		{"environment slug", []string{"INFISICAL_ENVIRONMENT", "staging-2"},
			func(s *Settings) bool { return s.Infisical.Environment == "staging-2" }},
		{"value trimmed", []string{"INFISICAL_ENVIRONMENT", "  dev\n"},
			func(s *Settings) bool { return s.Infisical.Environment == "dev" }},
		{"empty value means default", []string{"INFISICAL_ENVIRONMENT", ""},
			func(s *Settings) bool { return s.Infisical.Environment == "prod" }},
		{"auth method case", []string{"INFISICAL_AUTH_METHOD", "Universal-Auth"},
			func(s *Settings) bool { return s.Infisical.Method == infisical.MethodUniversalAuth }},
		{"cache disabled", []string{"CACHE_TTL", "0"}, func(s *Settings) bool { return s.CacheTTL == 0 }},
		{"stale disabled", []string{"STALE_IF_ERROR", "0s"}, func(s *Settings) bool { return s.StaleIfError == 0 }},
		{"not found never cached", []string{"CACHE_NOT_FOUND_TTL", "0"}, func(s *Settings) bool { return s.NotFoundTTL == 0 }},
		{"prefetch off", []string{"CACHE_PREFETCH", "False"}, func(s *Settings) bool { return !s.CachePrefetch }},
		{"sharing off", []string{"SHARED_CACHE", "FALSE"}, func(s *Settings) bool { return !s.SharedCache }},
		{"bucket name", []string{"SHARED_CACHE_BUCKET", "Team_A-cache"},
			func(s *Settings) bool { return s.SharedCacheBucket == "Team_A-cache" }},
		{"upstream timeout at the limit", []string{"UPSTREAM_TIMEOUT", "8s"},
			func(s *Settings) bool { return s.UpstreamTimeout == 8*time.Second }},
		{"trusted issuers", []string{"TRUSTED_ISSUERS", " " + acct1 + ", ," + acct2 + ",*,"},
			func(s *Settings) bool { return slices.Equal(s.TrustedIssuers, []string{acct1, acct2, "*"}) }},
		{"trusted issuers blank", []string{"TRUSTED_ISSUERS", " , "},
			func(s *Settings) bool { return s.TrustedIssuers == nil }},
		{"xkey seed", []string{"SERVER_XKEY_SEED", seed}, func(s *Settings) bool { return s.ServerXKeySeed == seed }},
		{"access rules kept raw", []string{"ACCESS_RULES", `[{"key":"/a/*"}]`},
			func(s *Settings) bool { return s.AccessRules == `[{"key":"/a/*"}]` }},
		{"NATS URL list", []string{"NATS_URL", "nats://a:4222, tls://b:4222,c:4222"},
			func(s *Settings) bool { return s.NATSURL == "nats://a:4222, tls://b:4222,c:4222" }},
		{"subject prefix", []string{"NATS_SUBJECT_PREFIX", "acme.wasmcloud_secrets-2"},
			func(s *Settings) bool { return s.SubjectPrefix == "acme.wasmcloud_secrets-2" }},
		{"health on every interface", []string{"HEALTH_ADDR", ":8080"}, func(s *Settings) bool { return s.HealthAddr == ":8080" }},
		{"health on loopback, any port", []string{"HEALTH_ADDR", "127.0.0.1:0"},
			func(s *Settings) bool { return s.HealthAddr == "127.0.0.1:0" }},
		{"health on IPv6", []string{"HEALTH_ADDR", "[::1]:9000"}, func(s *Settings) bool { return s.HealthAddr == "[::1]:9000" }},
		{"json logs", []string{"LOG_FORMAT", "JSON"}, func(s *Settings) bool { return s.LogFormat == "json" }},
		{"log level", []string{"LOG_LEVEL", "warn"}, func(s *Settings) bool { return s.LogLevel == slog.LevelWarn }},
		{"CA PEM", []string{"INFISICAL_CA_CERT", ca}, func(s *Settings) bool { return s.Infisical.CACert == strings.TrimSpace(ca) }},
		{"CA PEM with literal newlines", []string{"INFISICAL_CA_CERT", strings.ReplaceAll(strings.TrimSpace(ca), "\n", `\n`)},
			func(s *Settings) bool { return s.Infisical.CACert == strings.TrimSpace(ca) }},
		{"policy overrides listed", []string{"POLICY_OVERRIDES", " Environment, secret_path,environment "},
			func(s *Settings) bool {
				return s.PolicyOverrides == "environment,secret_path" && slices.Equal(s.AllowedOverrides(), []string{"environment", "secret_path"})
			}},
		{"policy overrides none", []string{"POLICY_OVERRIDES", "NONE"}, func(s *Settings) bool { return s.AllowedOverrides() == nil }},
		{"policy overrides default without rules", nil,
			func(s *Settings) bool { return slices.Equal(s.AllowedOverrides(), OverrideProperties) }},
		{"policy overrides default with rules", []string{"ACCESS_RULES", `[{"key":"/a/*"}]`},
			func(s *Settings) bool { return slices.Equal(s.AllowedOverrides(), []string{"secret_path"}) }},
		{"tenant ambient auth", []string{"TENANT_AMBIENT_AUTH", "TRUE"}, func(s *Settings) bool { return s.TenantAmbientAuth }},
		{"tenant claims", []string{"TENANT_CLAIMS", " storefront-api=shop, ,ops=Billing-2 "},
			func(s *Settings) bool {
				return slices.Equal(s.TenantClaims, []TenantClaim{{"storefront-api", "shop"}, {"ops", "Billing-2"}})
			}},
		{"kubernetes", []string{"INFISICAL_AUTH_METHOD", "kubernetes", "INFISICAL_IDENTITY_ID", "id-1", "INFISICAL_CLIENT_ID", ""},
			func(s *Settings) bool {
				return s.Infisical.Method == infisical.MethodKubernetes && s.Infisical.IdentityID == "id-1"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, with(minimal(), tt.kv...))
			if !tt.check(s) {
				t.Fatalf("unexpected settings: %v", s)
			}
		})
	}
}

func TestMalformedValues(t *testing.T) {
	tests := []struct {
		setting, value string
		want           string // substring of the message
	}{
		{"INFISICAL_BASE_URL", "app.infisical.com", "not an http(s) URL"},
		{"INFISICAL_BASE_URL", "ftp://x", "not an http(s) URL"},
		{"INFISICAL_BASE_URL", "https://x/?a=b", "query"},
		{"INFISICAL_ENVIRONMENT", "Prod", "not an environment slug"},
		{"INFISICAL_ENVIRONMENT", "my env", "not an environment slug"},
		{"INFISICAL_SECRET_PATH", "apps/shop", "does not start with /"},
		{"INFISICAL_AUTH_METHOD", "password", "not a supported auth method"},
		{"INFISICAL_CA_CERT", "not a cert", "no PEM certificate"},
		{"NATS_URL", "http://x:4222", "not a NATS URL"},
		{"NATS_URL", "nats://a:4222,,nats://b:4222", "empty entry"},
		{"NATS_SUBJECT_PREFIX", "wasmcloud.*", "not a NATS subject prefix"},
		{"NATS_SUBJECT_PREFIX", "wasmcloud..secrets", "not a NATS subject prefix"},
		{"NATS_SUBJECT_PREFIX", "wasmcloud.>", "not a NATS subject prefix"},
		{"BACKEND_NAME", "infisical.eu", "not a single NATS subject token"},
		{"API_VERSION", "v1 alpha", "not a single NATS subject token"},
		{"SERVER_XKEY_SEED", "SAnotacurveseed", "not a curve seed (SX...)"},
		{"CACHE_TTL", "30", "not a duration"},
		{"CACHE_TTL", "-1s", "negative"},
		{"STALE_IF_ERROR", "-5m", "negative"},
		{"CACHE_NOT_FOUND_TTL", "-1s", "negative"},
		{"CACHE_PREFETCH", "maybe", "is not a boolean"},
		{"SHARED_CACHE", "yes please", "is not a boolean"},
		{"SHARED_CACHE_BUCKET", "a.b", "not a JetStream bucket name"},
		{"UPSTREAM_TIMEOUT", "0s", "out of range"},
		{"UPSTREAM_TIMEOUT", "9s", "at most 8s"},
		{"UPSTREAM_TIMEOUT", "soon", "not a duration"},
		{"TRUSTED_ISSUERS", "Axx", `"Axx" is not an account public key (A...)`},
		{"ACCESS_RULES", `[{"key":`, "not valid JSON"},
		{"LOG_LEVEL", "verbose", "not a log level"},
		{"LOG_FORMAT", "xml", "not a log format"},
		{"TENANT_AMBIENT_AUTH", "yes", "not a boolean"},
		{"POLICY_OVERRIDES", "environment,version", "not an override property"},
		{"TENANT_CLAIMS", "storefront-api", "not SOURCE=APPLICATION"},
		{"TENANT_CLAIMS", "=shop", "not SOURCE=APPLICATION"},
		{"TENANT_CLAIMS", "a=b=c", "not SOURCE=APPLICATION"},
		{"HEALTH_ADDR", "8080", "not a host:port"},
		{"HEALTH_ADDR", "localhost:http", "not a host:port"},
		{"HEALTH_ADDR", ":70000", "not a host:port"},
		{"HEALTH_ADDR", "http://0.0.0.0:8080", "not a host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.setting+"="+tt.value, func(t *testing.T) {
			_, err := Load(Maps(with(minimal(), tt.setting, tt.value), nil))
			if err == nil {
				t.Fatal("no error")
			}
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Setting != tt.setting || !strings.Contains(ps[0].Message, tt.want) || !strings.Contains(ps[0].Message, "; ") {
				t.Fatalf("problems = %+v, want one for %s containing %q and a fix", ps, tt.setting, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.setting+": ") {
				t.Errorf("error %q does not start with the setting's name", err)
			}
		})
	}
}

func TestSecretsNeverQuoted(t *testing.T) {
	acct, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	acctSeed, err := acct.Seed()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, setting, value string }{
		{"bad xkey seed", "SERVER_XKEY_SEED", string(acctSeed)},
		{"seed pasted as issuer", "TRUSTED_ISSUERS", string(acctSeed)},
		{"credentials in the base URL", "INFISICAL_BASE_URL", "https://user:hunter2@app.infisical.com"},
		{"credentials in a NATS URL", "NATS_URL", "http://user:hunter2@x:4222"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(Maps(with(minimal(), tt.setting, tt.value), nil))
			if err == nil {
				t.Fatal("no error")
			}
			if p := problemsOf(t, err); p[0].Setting != tt.setting {
				t.Fatalf("problem names %s", p[0].Setting)
			}
			for _, leak := range []string{tt.value, "hunter2"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("error %q quotes the secret", err)
				}
			}
		})
	}
}

func TestMissingRequired(t *testing.T) {
	_, err := Load(Maps(nil, nil))
	ps := problemsOf(t, err)
	got := map[string]string{}
	for _, p := range ps {
		got[p.Setting] = p.Message
	}
	want := map[string]string{
		"INFISICAL_PROJECT_ID":    "required; set it to the ID of the Infisical project to read (Project Settings)",
		"INFISICAL_CLIENT_ID":     "required with INFISICAL_AUTH_METHOD=universal-auth; set it to the Universal Auth client ID",
		"INFISICAL_CLIENT_SECRET": "required with INFISICAL_AUTH_METHOD=universal-auth; set it to the Universal Auth client secret",
	}
	if len(got) != len(want) {
		t.Fatalf("problems = %+v, want exactly %v", ps, slices.Sorted(maps.Keys(want)))
	}
	for name, prefix := range want {
		if !strings.HasPrefix(got[name], prefix) {
			t.Errorf("%s: %q, want prefix %q", name, got[name], prefix)
		}
	}
}

func TestMultipleProblemsListed(t *testing.T) {
	m := with(without(minimal(), "INFISICAL_PROJECT_ID"), "CACHE_TTL", "forever", "LOG_FORMAT", "xml", "BACKEND_NAME", "a.b")
	_, err := Load(Maps(m, nil))
	ps := problemsOf(t, err)
	var names []string
	for _, p := range ps {
		names = append(names, p.Setting)
	}
	want := []string{"INFISICAL_PROJECT_ID", "BACKEND_NAME", "CACHE_TTL", "LOG_FORMAT"} // table order
	if !slices.Equal(names, want) {
		t.Fatalf("problems for %v, want %v", names, want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "4 settings need fixing:") {
		t.Errorf("error %q has no summary", msg)
	}
	for _, p := range ps {
		if !strings.Contains(msg, "\n  "+p.Setting+": "+p.Message) {
			t.Errorf("error %q does not list %s", msg, p.Setting)
		}
	}
}

func TestAuthMethodRequirements(t *testing.T) {
	base := map[string]string{"INFISICAL_PROJECT_ID": "p"}
	tests := []struct {
		method  infisical.Method
		kv      []string
		missing []string
	}{
		{infisical.MethodUniversalAuth, nil, []string{"INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET"}},
		{infisical.MethodUniversalAuth, []string{"INFISICAL_CLIENT_ID", "c"}, []string{"INFISICAL_CLIENT_SECRET"}},
		{infisical.MethodUniversalAuth, []string{"INFISICAL_CLIENT_ID", "c", "INFISICAL_CLIENT_SECRET", "s"}, nil},
		{infisical.MethodKubernetes, nil, []string{"INFISICAL_IDENTITY_ID"}},
		{infisical.MethodKubernetes, []string{"INFISICAL_IDENTITY_ID", "i"}, nil},
		{infisical.MethodAWSIAM, nil, []string{"INFISICAL_IDENTITY_ID"}},
		{infisical.MethodAWSIAM, []string{"INFISICAL_IDENTITY_ID", "i"}, nil},
		{infisical.MethodGCPIDToken, nil, []string{"INFISICAL_IDENTITY_ID"}},
		{infisical.MethodGCPIDToken, []string{"INFISICAL_IDENTITY_ID", "i"}, nil},
		{infisical.MethodGCPIAM, []string{"INFISICAL_IDENTITY_ID", "i"}, []string{"INFISICAL_GCP_KEY_FILE"}},
		{infisical.MethodGCPIAM, []string{"INFISICAL_IDENTITY_ID", "i", "INFISICAL_GCP_KEY_FILE", "/k.json"}, nil},
		{infisical.MethodAzure, nil, []string{"INFISICAL_IDENTITY_ID"}},
		{infisical.MethodAzure, []string{"INFISICAL_IDENTITY_ID", "i"}, nil},
		{infisical.MethodOIDC, nil, []string{"INFISICAL_IDENTITY_ID", "INFISICAL_OIDC_TOKEN"}},
		{infisical.MethodOIDC, []string{"INFISICAL_IDENTITY_ID", "i", "INFISICAL_OIDC_TOKEN", "t"}, nil},
		{infisical.MethodOIDC, []string{"INFISICAL_IDENTITY_ID", "i", "INFISICAL_OIDC_TOKEN_PATH", "/t"}, nil},
		{infisical.MethodOIDC, []string{"INFISICAL_IDENTITY_ID", "i", "INFISICAL_OIDC_TOKEN", "t", "INFISICAL_OIDC_TOKEN_PATH", "/t"}, []string{"INFISICAL_OIDC_TOKEN_PATH"}},
		{infisical.MethodJWT, []string{"INFISICAL_IDENTITY_ID", "i"}, []string{"INFISICAL_JWT"}},
		{infisical.MethodJWT, []string{"INFISICAL_IDENTITY_ID", "i", "INFISICAL_JWT", "j"}, nil},
		{infisical.MethodToken, []string{"INFISICAL_CLIENT_ID", "c", "INFISICAL_CLIENT_SECRET", "s"}, []string{"INFISICAL_ACCESS_TOKEN"}},
		{infisical.MethodToken, []string{"INFISICAL_ACCESS_TOKEN", "tok"}, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.method, tt.kv), func(t *testing.T) {
			m := with(with(base, tt.kv...), "INFISICAL_AUTH_METHOD", string(tt.method))
			s, err := Load(Maps(m, nil))
			if tt.missing == nil {
				if err != nil {
					t.Fatal(err)
				}
				if s.Infisical.Method != tt.method {
					t.Fatalf("Method = %q", s.Infisical.Method)
				}
				return
			}
			var names []string
			for _, p := range problemsOf(t, err) {
				names = append(names, p.Setting)
			}
			if !slices.Equal(names, tt.missing) {
				t.Fatalf("problems for %v, want %v (%v)", names, tt.missing, err)
			}
		})
	}
}

func TestCACertGivenTwice(t *testing.T) {
	_, err := Load(Maps(with(minimal(), "INFISICAL_CA_CERT", caPEM(t), "INFISICAL_CA_CERT_PATH", "/ca.pem"), nil))
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Setting != "INFISICAL_CA_CERT_PATH" || !strings.Contains(ps[0].Message, "only one") {
		t.Fatalf("problems = %+v", ps)
	}
}

func TestRustLog(t *testing.T) {
	tests := []struct {
		name     string
		logLevel string // "" = unset
		rustLog  string
		want     slog.Level
	}{
		{"unset", "", "", slog.LevelInfo},
		{"bare level", "", "debug", slog.LevelDebug},
		{"bare level upper case", "", "WARN", slog.LevelWarn},
		{"default with other crate", "", "info,async_nats=warn", slog.LevelInfo},
		{"our crate", "", "infisical_secrets_provider=debug", slog.LevelDebug},
		{"our crate beats the default", "", "infisical_secrets_provider=error,debug", slog.LevelError},
		{"our crate after the default", "", "warn,infisical_secrets_provider=debug", slog.LevelDebug},
		{"our module", "", "infisical_secrets_provider::backend=warn", slog.LevelWarn},
		{"other crate only", "", "async_nats=debug", slog.LevelInfo},
		{"similar crate name", "", "infisical_secrets_provider_x=debug", slog.LevelInfo},
		{"bare target means everything", "", "infisical_secrets_provider", slog.LevelDebug},
		{"trace", "", "trace", slog.LevelDebug},
		{"regex filter dropped", "", "error/foo", slog.LevelError},
		{"spaces", "", " warn , infisical_secrets_provider = debug ", slog.LevelDebug},
		{"unknown", "", "loud", slog.LevelInfo},
		{"unknown level for our crate", "", "warn,infisical_secrets_provider=loud", slog.LevelWarn},
		{"LOG_LEVEL wins", "error", "debug", slog.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := with(minimal(), "RUST_LOG", tt.rustLog, "LOG_LEVEL", tt.logLevel)
			if s := load(t, m); s.LogLevel != tt.want {
				t.Fatalf("LogLevel = %v, want %v", s.LogLevel, tt.want)
			}
		})
	}
}

func TestMaps(t *testing.T) {
	tests := []struct {
		name            string
		config, secrets map[string]string
		want            string // INFISICAL_ENVIRONMENT
	}{
		{"lower-case config", map[string]string{"infisical_environment": "dev"}, nil, "dev"},
		{"mixed case secret", nil, map[string]string{"Infisical_Environment": "qa"}, "qa"},
		{"secret wins", map[string]string{"INFISICAL_ENVIRONMENT": "dev"}, map[string]string{"infisical_environment": "qa"}, "qa"},
		{"empty secret is unset", map[string]string{"INFISICAL_ENVIRONMENT": "dev"}, map[string]string{"INFISICAL_ENVIRONMENT": " "}, "dev"},
		{"empty config is unset", map[string]string{"INFISICAL_ENVIRONMENT": ""}, nil, "prod"},
		{"upper-case spelling wins within one map", map[string]string{"infisical_environment": "dev", "INFISICAL_ENVIRONMENT": "qa", "Infisical_environment": "x"}, nil, "qa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := maps.Clone(tt.config)
			if cfg == nil {
				cfg = map[string]string{}
			}
			maps.Copy(cfg, minimal())
			s, err := Load(Maps(cfg, tt.secrets))
			if err != nil {
				t.Fatal(err)
			}
			if s.Infisical.Environment != tt.want {
				t.Fatalf("environment = %q, want %q", s.Infisical.Environment, tt.want)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	for k, v := range minimal() {
		t.Setenv(k, v)
	}
	t.Setenv("INFISICAL_ENVIRONMENT", "staging")
	t.Setenv("LOG_LEVEL", "")
	t.Setenv("RUST_LOG", "infisical_secrets_provider=debug")
	s, err := Load(Env())
	if err != nil {
		t.Fatal(err)
	}
	if s.Infisical.Environment != "staging" || s.Infisical.ProjectID != "proj-1" || s.LogLevel != slog.LevelDebug {
		t.Fatalf("settings = %v", s)
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"INFISICAL_CLIENT_SECRET", "s3cret", "***"},
		{"infisical_access_token", "tok", "***"},
		{"SERVER_XKEY_SEED", "SX...", "***"},
		{"INFISICAL_OIDC_TOKEN", "t", "***"},
		{"INFISICAL_JWT", "j", "***"},
		{"INFISICAL_CLIENT_SECRET", "", ""},
		{"INFISICAL_CLIENT_ID", "client", "client"},
		{"NOT_A_SETTING", "x", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redacted(tt.name, tt.value); got != tt.want {
				t.Fatalf("Redacted = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoggingNeverShowsSecrets(t *testing.T) {
	seed := testkeys.CurveSeed(t)
	s := load(t, with(minimal(), "SERVER_XKEY_SEED", seed, "INFISICAL_JWT", "jwt-value", "INFISICAL_ACCESS_TOKEN", "token-value",
		"INFISICAL_OIDC_TOKEN", "oidc-value"))
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("settings", "settings", s, "infisical", s.Infisical)
	outputs := []string{b.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %s", s.Infisical, s.Infisical, s.Infisical)}
	for _, out := range outputs {
		for _, secret := range []string{"s3cret-client", seed, "jwt-value", "token-value", "oidc-value"} {
			if strings.Contains(out, secret) {
				t.Fatalf("output shows a secret: %s", out)
			}
		}
		if !strings.Contains(out, "client-1") || !strings.Contains(out, "proj-1") {
			t.Fatalf("output lacks the non-secret settings: %s", out)
		}
	}
}

func TestLoadTenant(t *testing.T) {
	provider := load(t, with(minimal(), "INFISICAL_CA_CERT_PATH", "/provider-ca.pem"))
	defaults := provider.Infisical
	tests := []struct {
		name     string
		config   map[string]string
		secrets  map[string]string
		check    func(t Tenant) bool
		problems []string // settings named in the error; nil = success
	}{
		{name: "nothing set: the provider's settings", config: map[string]string{},
			check: func(tn Tenant) bool { return tn.Infisical == defaults && tn.Application == "" }},
		{name: "project, environment, path and application",
			config: map[string]string{"infisical_project_id": "proj-2", "INFISICAL_ENVIRONMENT": "dev", "INFISICAL_SECRET_PATH": "/shop/", "application": " shop "},
			check: func(tn Tenant) bool {
				return tn.ProjectID == "proj-2" && tn.Environment == "dev" && tn.SecretPath == "/shop" && tn.Application == "shop" &&
					tn.ClientID == defaults.ClientID && tn.ClientSecret == defaults.ClientSecret && tn.BaseURL == defaults.BaseURL
			}},
		{name: "own universal-auth identity, project from defaults",
			config:  map[string]string{"INFISICAL_CLIENT_ID": "tenant-client"},
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "tenant-secret"},
			check: func(tn Tenant) bool {
				return tn.ClientID == "tenant-client" && tn.ClientSecret == "tenant-secret" && tn.ProjectID == "proj-1" && tn.Method == infisical.MethodUniversalAuth
			}},
		{name: "client id without its own secret",
			config: map[string]string{"INFISICAL_CLIENT_ID": "tenant-client"}, problems: []string{"INFISICAL_CLIENT_SECRET"}},
		{name: "client secret without its own id",
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "tenant-secret"}, problems: []string{"INFISICAL_CLIENT_ID"}},
		{name: "other auth method does not inherit the client credentials",
			config:  map[string]string{"INFISICAL_AUTH_METHOD": "jwt", "INFISICAL_IDENTITY_ID": "id-9"},
			secrets: map[string]string{"INFISICAL_JWT": "signed"},
			check: func(tn Tenant) bool {
				return tn.Method == infisical.MethodJWT && tn.IdentityID == "id-9" && tn.ClientID == "" && tn.ClientSecret == "" &&
					tn.KubernetesTokenPath == ""
			}},
		{name: "auth method alone is incomplete",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "jwt"}, problems: []string{"INFISICAL_IDENTITY_ID", "INFISICAL_JWT"}},
		{name: "another Infisical needs its own identity",
			config: map[string]string{"INFISICAL_BASE_URL": "https://evil.example.com"}, problems: []string{"INFISICAL_BASE_URL"}},
		{name: "another Infisical with its own identity",
			config:  map[string]string{"INFISICAL_BASE_URL": "https://eu.infisical.com", "INFISICAL_CLIENT_ID": "c"},
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "s"},
			check:   func(tn Tenant) bool { return tn.BaseURL == "https://eu.infisical.com" && tn.ClientID == "c" }},
		{name: "same base URL spelled with a slash is not a change",
			config: map[string]string{"INFISICAL_BASE_URL": "https://app.infisical.com/"},
			check:  func(tn Tenant) bool { return tn.Infisical == defaults }},
		{name: "another CA needs its own identity",
			config: map[string]string{"INFISICAL_CA_CERT_PATH": "/tenant-ca.pem"}, problems: []string{"INFISICAL_CA_CERT_PATH"}},
		{name: "a CA in the other form replaces the provider's",
			config: map[string]string{"INFISICAL_CA_CERT": caPEM(t), "INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s"},
			check:  func(tn Tenant) bool { return tn.CACert != "" && tn.CACertPath == "" }},
		{name: "malformed link setting",
			config:   map[string]string{"INFISICAL_ENVIRONMENT": "Not A Slug", "INFISICAL_SECRET_PATH": "rel"},
			problems: []string{"INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH"}},
		{name: "provider-only settings are refused on a link",
			config:   map[string]string{"CACHE_TTL": "bogus", "NATS_URL": "bogus://", "LOG_LEVEL": "loud"},
			problems: []string{"CACHE_TTL", "LOG_LEVEL", "NATS_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn, err := LoadTenant(Maps(tt.config, tt.secrets), provider)
			if tt.problems == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(tn) {
					t.Fatalf("unexpected tenant: %v application %q", tn.Infisical, tn.Application)
				}
				return
			}
			var names []string
			for _, p := range problemsOf(t, err) {
				names = append(names, p.Setting)
			}
			if !slices.Equal(names, tt.problems) {
				t.Fatalf("problems for %v, want %v (%v)", names, tt.problems, err)
			}
		})
	}
}

func TestLoadTenantProjectRequired(t *testing.T) {
	_, err := LoadTenant(Maps(map[string]string{"INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s"}, nil), &Settings{Infisical: Infisical{
		BaseURL: "https://app.infisical.com", Environment: "prod", SecretPath: "/", Credentials: infisical.Credentials{Method: infisical.MethodUniversalAuth}}})
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Setting != "INFISICAL_PROJECT_ID" {
		t.Fatalf("problems = %+v", ps)
	}
}

func TestRedactURLsHidesTokensAndPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"nats://s3cr3tToken@n1:4222":             "nats://redacted@n1:4222",
		"nats://user:s3cr3t@n1:4222,nats://n2:1": "nats://redacted@n1:4222,nats://n2:1",
		"nats://n1:4222":                         "nats://n1:4222",
		"tls://%zz:s3cr3t@n1":                    "<URL with credentials>",
		"user:s3cr3t@n1:4222":                    "<URL with credentials>", // no scheme: nats.go adds nats://
		"nats//user:s3cr3t@n1":                   "<URL with credentials>",
	} {
		if got := RedactURLs(in); got != want || strings.Contains(got, "s3cr3t") {
			t.Errorf("RedactURLs(%q) = %q; want %q", in, got, want)
		}
	}
	_, err := Load(Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "NATS_URL": "tcp://s3cr3tToken@h:4222"}, nil))
	if err == nil || strings.Contains(err.Error(), "s3cr3tToken") {
		t.Fatalf("a bad NATS_URL's token reached the error: %v", err)
	}
}

// Every part of the Infisical client's configuration its errors may name has a setting to name instead.
func TestSettingForEveryClientField(t *testing.T) {
	want := map[infisical.Field]string{
		infisical.FieldBaseURL:      "INFISICAL_BASE_URL",
		infisical.FieldCACert:       "INFISICAL_CA_CERT or INFISICAL_CA_CERT_PATH",
		infisical.FieldMethod:       "INFISICAL_AUTH_METHOD",
		infisical.FieldClientID:     "INFISICAL_CLIENT_ID",
		infisical.FieldClientSecret: "INFISICAL_CLIENT_SECRET",
		infisical.FieldIdentityID:   "INFISICAL_IDENTITY_ID",
		infisical.FieldGCPKeyFile:   "INFISICAL_GCP_KEY_FILE",
		infisical.FieldOIDCToken:    "INFISICAL_OIDC_TOKEN or INFISICAL_OIDC_TOKEN_PATH",
		infisical.FieldJWT:          "INFISICAL_JWT",
		infisical.FieldAccessToken:  "INFISICAL_ACCESS_TOKEN",
	}
	for f := infisical.FieldBaseURL; f <= infisical.FieldAccessToken; f++ {
		if got := SettingFor(f); got != want[f] {
			t.Errorf("SettingFor(%s) = %q, want %q", f, got, want[f])
		}
	}
	if got := SettingFor(0); got != "" {
		t.Errorf("SettingFor(0) = %q, want none", got)
	}
}
