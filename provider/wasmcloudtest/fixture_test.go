//go:build wasmcloud

package wasmcloudtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

// Test values the fake Infisical holds. They are fake credentials for a fake server on loopback.
const (
	projectID    = "11111111-2222-3333-4444-555555555555"
	clientID     = "provider-client-id"
	clientSecret = "provider-client-secret"
	providerApp  = "infisical-secrets"                   // local.wadm.yaml's metadata.name
	providerID   = "infisical_secrets-infisical_secrets" // the id wadm computes for it
)

// parFile is a signed provider archive built for a test.
type parFile struct {
	path    string
	subject string // the provider's V... service key
	issuer  string // the A... account that signed it
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// goBinary builds a package of this module (static, like the Makefile) once per test process.
func goBinary(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "isp-wasmcloudtest-bin-")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildCache[pkg] = out
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the source")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildPAR packages bin for this machine, signed by issuer, with a fresh subject.
func buildPAR(t *testing.T, dir, name, bin string, issuer nkeys.KeyPair) parFile {
	t.Helper()
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := par.NewServiceKey()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = par.Build(&buf, par.BuildOptions{
		Name: name, Vendor: "isp-tests", Version: "0.1.0",
		Binaries: map[string][]byte{par.NativeTarget(): exe},
		Issuer:   issuer, Subject: subject.PublicKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.ReplaceAll(strings.ToLower(name), " ", "-")+".par.gz")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	iss, _ := issuer.PublicKey()
	return parFile{path: path, subject: subject.PublicKey(), issuer: iss}
}

// newFake starts a fake Infisical with the provider's identity and a project of test secrets.
func newFake(t *testing.T) *fakeinfisical.Server {
	t.Helper()
	fake := fakeinfisical.New(t)
	fake.AddIdentity(clientID, clientSecret, projectID)
	fake.SetSecret(projectID, "prod", "/", "DB_PASSWORD", "v1-password")
	fake.SetSecret(projectID, "prod", "/", "DB_PASSWORD", "v2-password")
	fake.SetSecret(projectID, "prod", "/", "JSON", `{"user":"bob","password":"pw"}`)
	fake.SetSecret(projectID, "prod", "/", "BLOB", "AAEC/w==")
	fake.SetSecret(projectID, "prod", "/payments", "API_KEY", "pay-key")
	return fake
}

// backendOptions change what deployBackend puts into the shipped manifest.
type backendOptions struct {
	trustedIssuers string
	clientSecret   string // what the bootstrap backend holds; clientSecret unless set
	// image, when set, publishes the built archive and returns the reference the manifest should name instead of
	// its file:// path (e.g. one pushed to a registry).
	image func(p parFile) string
}

// backend is the provider deployed by wadm from the shipped local.wadm.yaml.
type backend struct {
	par      parFile
	manifest string
	xkeySeed string
}

// deployBackend deploys the repository's local.wadm.yaml with its placeholders replaced by test values, the PAR
// where the manifest's relative file:// reference points, and its bootstrap secrets in nats-kv.
func deployBackend(t *testing.T, l *lattice, fake *fakeinfisical.Server, o backendOptions) backend {
	t.Helper()
	dir := t.TempDir()
	bin := hostsim.Binary(t)
	p := buildPAR(t, filepath.Join(dir, "build"), "infisical-secrets-provider", bin, hostsim.NewIssuer())

	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "local.wadm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(raw)
	for key, value := range map[string]string{
		"INFISICAL_BASE_URL":   fake.URL,
		"INFISICAL_PROJECT_ID": projectID,
		"INFISICAL_CLIENT_ID":  clientID,
		"TRUSTED_ISSUERS":      o.trustedIssuers,
	} {
		manifest = setProperty(t, manifest, key, value)
	}
	if o.image != nil {
		const local = "image: file://./build/infisical-secrets-provider.par.gz"
		if strings.Count(manifest, local) != 1 {
			t.Fatalf("local.wadm.yaml does not name %q once", local)
		}
		manifest = strings.Replace(manifest, local, "image: "+o.image(p), 1)
	}
	path := filepath.Join(dir, "local.wadm.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}

	secret := o.clientSecret
	if secret == "" {
		secret = clientSecret
	}
	b := backend{par: p, manifest: path, xkeySeed: testkeys.CurveSeed(t)}
	l.putSecret(p.subject, "infisical-client-secret", secret)
	l.putSecret(p.subject, "infisical-server-xkey-seed", b.xkeySeed)

	m := l.mustWash("app", "deploy", path)
	if m["model_name"] != providerApp {
		t.Fatalf("wash app deploy: model_name %v, want %s", m["model_name"], providerApp)
	}
	return b
}

// setProperty replaces the quoted value of `KEY: "…"` in a manifest; the key must be there exactly once.
func setProperty(t *testing.T, manifest, key, value string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(\s+` + regexp.QuoteMeta(key) + `:\s*)"[^"]*"`)
	if n := len(re.FindAllStringIndex(manifest, -1)); n != 1 {
		t.Fatalf("manifest has %d lines `%s: \"…\"`, want 1", n, key)
	}
	return re.ReplaceAllString(manifest, `${1}"`+value+`"`)
}

// probeApp is a wadm application with the probe provider as its only component.
type probeApp struct {
	name    string
	id      string // component id
	subject string // NATS subject the probe answers on
	par     parFile
	// secrets is YAML for the component's secrets list (indented to fit), policies extra policies.
	secrets, policies string
	// traits are extra YAML traits (e.g. a tenant link), indented to fit.
	traits string
}

func (a probeApp) yaml() string {
	return fmt.Sprintf(`apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: %[1]s
  annotations:
    version: v0.0.1
spec:
  policies:
    - name: infisical
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: infisical
        environment: prod
%[5]s
  components:
    - name: probe
      type: capability
      properties:
        image: file://%[2]s
        id: %[3]s
        config:
          - name: probe-config
            properties:
              PROBE_SUBJECT: "%[4]s"
        secrets:
%[6]s
      traits:
        - type: spreadscaler
          properties:
            instances: 1
%[7]s
`, a.name, a.par.path, a.id, a.subject, a.policies, a.secrets, a.traits)
}

func (l *lattice) deployApp(a probeApp) {
	l.t.Helper()
	path := filepath.Join(l.t.TempDir(), a.name+".wadm.yaml")
	if err := os.WriteFile(path, []byte(a.yaml()), 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.mustWash("app", "deploy", path)
}

// loginsBy counts the fake's successful logins by an identity.
func loginsBy(fake *fakeinfisical.Server, identity string) (ok, failed int) {
	for _, r := range fake.Requests() {
		if r.Route != fakeinfisical.RouteUniversalAuthLogin || r.Identity != identity {
			continue
		}
		if r.Status == 200 {
			ok++
		} else if r.Status != 0 {
			failed++
		}
	}
	return ok, failed
}

// readsBy lists the fake's secret reads (get or list) by an identity as "project env path name".
func readsBy(fake *fakeinfisical.Server, identity string) []string {
	var out []string
	for _, r := range fake.Requests() {
		if (r.Route == fakeinfisical.RouteGetSecret || r.Route == fakeinfisical.RouteListSecrets) && r.Identity == identity {
			out = append(out, r.Path+"?"+r.Query.Encode())
		}
	}
	return out
}

// waitFor polls cond, which reports whether it holds and what it saw, every 200 ms (a poll runs a command or a NATS
// request) until it holds or within passes; the failure shows what it saw last.
func waitFor(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	eventually.Within(within).Every(200*time.Millisecond).NoError(t, what, func() error {
		ok, seen := cond()
		if ok {
			return nil
		}
		return fmt.Errorf("last seen: %s", tail(seen, 4000))
	})
}
