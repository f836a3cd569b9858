//go:build wasmcloud

package wasmcloudtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
)

// Scenario 1: the PAR `make par` builds is one wash accepts, and `wash build` from wasmcloud.toml makes one the
// host starts.
func TestPARWithWash(t *testing.T) {
	tl := needTools(t)
	path := os.Getenv("ISP_PAR")
	if path == "" {
		t.Fatal("ISP_PAR is not set: `make test-wasmcloud` builds the archive with `make par` and names it")
	}
	home := t.TempDir()
	out, err := runWash(tl.wash, []string{"HOME=" + home, "WASH_DISABLE_PLUGINS=true"}, "", "inspect", path, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	m := decodeJSON(t, out)
	for field, want := range map[string]string{"name": "Infisical Secrets Provider", "vendor": "infisical-secrets-provider", "version": "0.1.0"} {
		if m[field] != want {
			t.Errorf("wash inspect %s = %v, want %q", field, m[field], want)
		}
	}
	if s, _ := m["service"].(string); !strings.HasPrefix(s, "V") || len(s) != 56 {
		t.Errorf("wash inspect service = %v, want a V… service key", m["service"])
	}
	if s, _ := m["issuer"].(string); !strings.HasPrefix(s, "A") || len(s) != 56 {
		t.Errorf("wash inspect issuer = %v, want an A… account key", m["issuer"])
	}
	var targets []string
	for _, v := range m["targets"].([]any) {
		targets = append(targets, v.(string))
	}
	for _, want := range []string{"x86_64-linux", "aarch64-linux", "x86_64-macos", "aarch64-macos"} {
		if !slices.Contains(targets, want) {
			t.Errorf("wash inspect targets %v lack %s", targets, want)
		}
	}

	t.Run("wash build", func(t *testing.T) {
		src := copyProject(t)
		out, err := runWash(tl.wash, []string{"HOME=" + home, "WASH_DISABLE_PLUGINS=true", "GOFLAGS=-mod=readonly"}, src,
			"build", "--skip-fetch", "--keys-directory", filepath.Join(src, "keys"), "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		built, _ := decodeJSON(t, out)["path"].(string)
		if built == "" {
			t.Fatalf("wash build named no archive: %s", out)
		}

		l := startLattice(t, latticeOptions{noWadm: true})
		ev := l.recordEvents()
		l.mustWash("start", "provider", "file://"+built, "washbuilt", "--skip-wait")
		started := l.waitEvent(ev, "provider_started", "provider_id", "washbuilt", 60*time.Second)
		t.Logf("host event provider_started: %v", started.Data)
		if !l.hasProvider("washbuilt") {
			t.Errorf("wash get inventory does not list the provider built by wash build")
		}
	})
}

// copyProject copies what `wash build` reads (module, sources, wit, wasmcloud.toml) to a temporary directory, so
// its build/ does not touch the checkout's.
func copyProject(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	dst := t.TempDir()
	for _, name := range []string{"go.mod", "go.sum", "main.go", "wasmcloud.toml", "provider", "wit"} {
		cmd := exec.Command("cp", "-r", filepath.Join(root, name), dst)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v\n%s", name, err, out)
		}
	}
	return dst
}

// Scenario 2: `wash start provider` on the real host, with named config from `wash config put` and the client
// secret from nats-kv; healthy as the host reports it; `wash stop provider` ends the process.
func TestWashStartAndStopProvider(t *testing.T) {
	l := startLattice(t, latticeOptions{noWadm: true})
	fake := newFake(t)
	p := buildPAR(t, t.TempDir(), "infisical-secrets-provider", hostsim.Binary(t), hostsim.NewIssuer())
	ev := l.recordEvents()

	l.mustWash("config", "put", "isp-settings",
		"INFISICAL_BASE_URL="+fake.URL, "INFISICAL_PROJECT_ID="+projectID, "INFISICAL_CLIENT_ID="+clientID,
		"TRUSTED_ISSUERS="+p.issuer)
	l.putSecret(p.subject, "isp-client-secret", clientSecret)
	l.mustWash("secrets", "put", "INFISICAL_CLIENT_SECRET", "nats-kv", "isp-client-secret")

	l.mustWash("start", "provider", "file://"+p.path, "isp", "--config", "isp-settings",
		"--config", "SECRET_INFISICAL_CLIENT_SECRET", "--skip-wait")
	l.waitEvent(ev, "provider_started", "provider_id", "isp", 60*time.Second)
	l.waitEvent(ev, "health_check_passed", "provider_id", "isp", 90*time.Second)
	if ok, failed := loginsBy(fake, clientID); ok == 0 || failed != 0 {
		t.Errorf("logins with the host-delivered client secret: %d ok, %d failed; want ok > 0 and no failure", ok, failed)
	}
	pid := providerPID(t, l)

	l.mustWash("stop", "provider", "isp")
	l.waitEvent(ev, "provider_stopped", "provider_id", "isp", 30*time.Second)
	waitFor(t, "the provider process to exit after wash stop provider", 2*time.Second, func() (bool, string) {
		return !processAlive(pid), "pid still running"
	})
	if l.hasProvider("isp") {
		t.Errorf("wash get inventory still lists the stopped provider")
	}
}

// providerPID finds the provider process the host started: the host's only child (the host spawns providers
// from its cache directory with a cleared environment, so the child is the way to find it).
func providerPID(t *testing.T, l *lattice) int {
	t.Helper()
	var pid int
	waitFor(t, "the provider process", 30*time.Second, func() (bool, string) {
		kids := children(l.host.cmd.Process.Pid)
		if len(kids) == 1 {
			pid = kids[0]
			return true, ""
		}
		return false, fmt.Sprintf("host children: %v", kids)
	})
	return pid
}

// children lists the live child processes of ppid.
func children(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && parent == ppid && state != "Z" {
			kids = append(kids, pid)
		}
	}
	return kids
}

// procStat reads a process's state and parent from /proc/PID/stat (the command name, in parentheses, may hold
// spaces, so fields are counted after its closing parenthesis).
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

func processAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" // a zombie has exited; its parent has not reaped it yet
}

// Scenarios 3 and 4: the shipped local.wadm.yaml deploys on the real wadm and host, with its bootstrap secrets in
// the real secrets-nats-kv; the provider logs in with the client secret the host delivered; and the host then
// fetches a wadm-deployed provider's secrets from it: the values arrive, decrypted, inside that provider.
func TestDeployedBackendServesTheHost(t *testing.T) {
	l := startLattice(t, latticeOptions{})
	fake := newFake(t)
	issuer := hostsim.NewIssuer()
	probePAR := buildPAR(t, t.TempDir(), "probe", goBinary(t, "./provider/internal/cmd/probe"), issuer)
	ev := l.recordEvents()

	deployBackend(t, l, fake, backendOptions{trustedIssuers: probePAR.issuer})
	l.waitAppStatus(providerApp, "deployed", 120*time.Second)
	l.waitEvent(ev, "health_check_passed", "provider_id", providerID, 90*time.Second)
	if ok, failed := loginsBy(fake, clientID); ok == 0 || failed != 0 {
		t.Fatalf("logins with the client secret from nats-kv: %d ok, %d failed; want ok > 0 and none failed", ok, failed)
	}

	app := probeApp{
		name: "probe-app", id: "probe", subject: "isptest.probe.app", par: probePAR,
		policies: `    - name: infisical-binary
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: infisical
        environment: prod
        encoding: base64`,
		secrets: `          - name: DB_PASSWORD
            properties: {policy: infisical, key: DB_PASSWORD}
          - name: DB_PASSWORD_V1
            properties: {policy: infisical, key: DB_PASSWORD, version: "1"}
          - name: DB_USER
            properties: {policy: infisical, key: JSON, field: user}
          - name: API_KEY
            properties: {policy: infisical, key: /payments/API_KEY}
          - name: BLOB
            properties: {policy: infisical-binary, key: BLOB}`,
	}
	l.deployApp(app)
	l.waitAppStatus(app.name, "deployed", 120*time.Second)
	got := l.probe(app.subject, 30*time.Second)
	want := map[string]string{
		"DB_PASSWORD":    "string:v2-password",
		"DB_PASSWORD_V1": "string:v1-password",
		"DB_USER":        "string:bob",
		"API_KEY":        "string:pay-key",
		"BLOB":           "bytes:AAEC/w==",
	}
	for name, v := range want {
		if got.Secrets[name] != v {
			t.Errorf("probe received %s = %q, want %q", name, got.Secrets[name], v)
		}
	}
	if got.ProviderKey != "probe" {
		t.Errorf("probe provider key %q, want probe", got.ProviderKey)
	}
}

// Scenario 3 (refusal) and 6: a provider signed by an issuer the backend does not trust is refused and the host
// reports it; `wash config put` on the backend's named config reaches it as a config update, and the same
// provider then starts.
func TestUntrustedIssuerRefusedUntilConfigUpdateTrustsIt(t *testing.T) {
	l := startLattice(t, latticeOptions{noWadm: true})
	fake := newFake(t)
	p := buildPAR(t, t.TempDir(), "infisical-secrets-provider", hostsim.Binary(t), hostsim.NewIssuer())
	trusted, untrusted := hostsim.NewIssuer(), hostsim.NewIssuer()
	probePAR := buildPAR(t, t.TempDir(), "probe", goBinary(t, "./provider/internal/cmd/probe"), untrusted)
	trustedKey, _ := trusted.PublicKey()
	ev := l.recordEvents()

	settings := func(issuers string) []string {
		return []string{"config", "put", "isp-settings",
			"INFISICAL_BASE_URL=" + fake.URL, "INFISICAL_PROJECT_ID=" + projectID, "INFISICAL_CLIENT_ID=" + clientID,
			"TRUSTED_ISSUERS=" + issuers}
	}
	l.mustWash(settings(trustedKey)...)
	l.putSecret(p.subject, "isp-client-secret", clientSecret)
	l.mustWash("secrets", "put", "INFISICAL_CLIENT_SECRET", "nats-kv", "isp-client-secret")
	l.mustWash("start", "provider", "file://"+p.path, "isp", "--config", "isp-settings",
		"--config", "SECRET_INFISICAL_CLIENT_SECRET", "--skip-wait")
	l.waitEvent(ev, "health_check_passed", "provider_id", "isp", 90*time.Second)

	// The probe's secret is served by our backend (policy backend "infisical").
	l.mustWash("config", "put", "probe-config", "PROBE_SUBJECT=isptest.probe.untrusted")
	l.mustWash("secrets", "put", "DB_PASSWORD", "infisical", "DB_PASSWORD", "--property", "environment=prod")
	start := func() ([]byte, error) {
		return l.washJSON("start", "provider", "file://"+probePAR.path, "probe", "--config", "probe-config",
			"--config", "SECRET_DB_PASSWORD", "--skip-wait")
	}
	if _, err := start(); err != nil {
		t.Fatal(err)
	}
	failed := l.waitEvent(ev, "provider_start_failed", "provider_id", "probe", 60*time.Second)
	reason := fmt.Sprint(failed.Data["error"])
	t.Logf("host event provider_start_failed: %s", reason)
	if !strings.Contains(strings.ToLower(reason), "unauthorized") {
		t.Errorf("provider_start_failed error %q does not say unauthorized", reason)
	}
	if l.hasProvider("probe") {
		t.Errorf("wash get inventory lists the refused provider")
	}

	// Trust the probe's issuer through the named config; the running backend takes the update.
	l.mustWash(settings(trustedKey + "," + probePAR.issuer)...)
	waitFor(t, "the backend to log the config update", 30*time.Second, func() (bool, string) {
		return strings.Contains(l.host.out.String(), "config updated"), "no \"config updated\" line yet"
	})
	if _, err := start(); err != nil {
		t.Fatal(err)
	}
	got := l.probe("isptest.probe.untrusted", 60*time.Second)
	if got.Secrets["DB_PASSWORD"] != "string:v2-password" {
		t.Errorf("after the config update the probe received DB_PASSWORD = %q, want v2-password", got.Secrets["DB_PASSWORD"])
	}
}
