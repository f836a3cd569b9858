package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
)

const providerKey = "infisical-secrets"

// managed is the built binary started as a wasmCloud host starts a provider.
type managed struct {
	*harness
	proc     *hostsim.Process
	hd       hostsim.HostData
	hostXKey nkeys.KeyPair
}

// startManaged starts the binary with HostData whose config and secrets carry the harness's settings (the client
// secret as a Bytes secret, the xkey seed as a String one, as a host would resolve them from another backend).
func startManaged(t *testing.T, mutate func(hd hostsim.HostData)) *managed {
	t.Helper()
	h := newHarness(t)
	cfg := map[string]string{}
	for k, v := range h.env {
		switch k {
		case "INFISICAL_CLIENT_SECRET", "SERVER_XKEY_SEED", "NATS_URL":
		default:
			cfg[strings.ToLower(k)] = v // names are case-insensitive
		}
	}
	hd, hostXKey, err := hostsim.NewHostData(h.host.ID, h.url, providerKey, cfg, map[string]any{
		"INFISICAL_CLIENT_SECRET": hostsim.BytesSecret([]byte(secret)),
		"SERVER_XKEY_SEED":        hostsim.StringSecret(h.env["SERVER_XKEY_SEED"]),
	})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(hd)
	}
	proc := hostsim.Start(t, hostsim.Binary(t), hd.Line())
	m := &managed{harness: h, proc: proc, hd: hd, hostXKey: hostXKey}
	eventually.True(t, "the provider to answer health", func() bool {
		_, _, err := hostsim.Health(context.Background(), h.nc, "default", providerKey)
		return err == nil
	})
	return m
}

func (m *managed) subject(op string) string { return "wasmbus.rpc.default." + providerKey + "." + op }

func (m *managed) publish(t *testing.T, subject string, v any) {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.nc.Publish(subject, raw); err != nil {
		t.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestManagedServesAndShutsDown(t *testing.T) {
	m := startManaged(t, nil)
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("value = %q", got)
	}
	healthy, msg, err := hostsim.Health(context.Background(), m.nc, "default", providerKey)
	if err != nil || !healthy {
		t.Fatalf("health = %v %q %v; want healthy within 2 s", healthy, msg, err)
	}

	// Another host's shutdown is not for us.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = m.nc.RequestWithContext(ctx, m.subject("default.shutdown"), []byte(`{"host_id":"NOTOURHOST"}`))
	if err == nil {
		t.Fatal("a foreign host's shutdown got a reply")
	}
	if m.proc.Exited() {
		t.Fatalf("a foreign host's shutdown stopped the provider:\n%s", m.proc.Output())
	}
	m.mustString(hostsim.Ref{Key: "DB_PASSWORD"})

	// Ours: reply, then exit 0, within the host's grace.
	start := time.Now()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	raw, _ := json.Marshal(map[string]string{"host_id": m.host.ID})
	if _, err := m.nc.RequestWithContext(ctx2, m.subject("default.shutdown"), raw); err != nil {
		t.Fatalf("shutdown reply: %v", err)
	}
	code, err := m.proc.Wait(time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit = %d, %v; want 0 within 1 s\n%s", code, err, m.proc.Output())
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("shutdown took %s", took)
	}
	out := m.proc.Output()
	for _, leak := range []string{secret, m.env["SERVER_XKEY_SEED"], "v2-password"} {
		if strings.Contains(out, leak) {
			t.Fatalf("provider output contains a secret (%q...)", leak[:4])
		}
	}
}

func TestManagedHealthIsUnhealthyWithoutTrustedIssuers(t *testing.T) {
	m := startManaged(t, func(hd hostsim.HostData) {
		delete(hd["config"].(map[string]string), "trusted_issuers")
	})
	healthy, msg, err := hostsim.Health(context.Background(), m.nc, "default", providerKey)
	if err != nil || healthy || !strings.Contains(msg, "TRUSTED_ISSUERS") {
		t.Fatalf("health = %v %q %v; want unhealthy naming TRUSTED_ISSUERS", healthy, msg, err)
	}
}

func TestManagedConfigUpdate(t *testing.T) {
	m := startManaged(t, nil)
	m.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	cfg := map[string]string{}
	for k, v := range m.hd["config"].(map[string]string) {
		cfg[k] = v
	}
	cfg["INFISICAL_ENVIRONMENT"] = "dev"
	m.publish(t, m.subject("config.update"), cfg)
	eventually.True(t, "the new environment to apply", func() bool {
		s, err := m.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
		return err == nil && *s.StringSecret == "dev-password"
	})
	reqs := m.fake.Requests()
	if env := reqs[len(reqs)-1].Query.Get("environment"); env != "dev" {
		t.Fatalf("Infisical was last asked for environment %q; want dev", env)
	}

	// An invalid update is rejected and the old settings stay.
	cfg["CACHE_TTL"] = "soon"
	m.publish(t, m.subject("config.update"), cfg)
	eventually.True(t, "the rejection to be logged", func() bool { return strings.Contains(m.proc.Output(), "config update rejected") })
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "dev-password" {
		t.Fatalf("after a rejected update: %q", got)
	}
}

func TestManagedTenantLinks(t *testing.T) {
	m := startManaged(t, nil)
	m.fake.AddIdentity("shop-client", "shop-secret", "shop-project")
	m.fake.SetSecret("shop-project", "prod", "/", "DB_PASSWORD", "shop-password")

	sealed, err := hostsim.SealLinkSecrets(m.hostXKey, m.hd.ProviderXKeyPublic(), map[string]any{
		"INFISICAL_CLIENT_ID":     hostsim.StringSecret("shop-client"),
		"INFISICAL_CLIENT_SECRET": hostsim.BytesSecret([]byte("shop-secret")),
	})
	if err != nil {
		t.Fatal(err)
	}
	link := map[string]any{
		"source_id": "shop-api", "target": providerKey, "name": "default",
		"wit_namespace": "infisical", "wit_package": "secrets-provider", "interfaces": []string{"tenant"},
		"source_config": map[string]string{}, "target_config": map[string]string{"INFISICAL_PROJECT_ID": "shop-project"},
		"source_secrets": nil, "target_secrets": sealed,
	}
	m.publish(t, "wasmbus.rpc.default."+m.hd.ProviderXKeyPublic()+".linkdefs.put", link)

	shop := hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"}
	eventually.True(t, "the tenant to serve shop", func() bool {
		s, err := m.fetch(shop)
		return err == nil && *s.StringSecret == "shop-password"
	})
	// Other applications keep the provider's own identity.
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD", Application: "billing"}); got != "v2-password" {
		t.Fatalf("billing = %q", got)
	}
	var shopReads int
	for _, r := range m.fake.Requests() {
		if r.Identity == "shop-client" && r.Query.Get("workspaceId") == "shop-project" {
			shopReads++
		}
	}
	if shopReads == 0 {
		t.Fatal("the fake saw no read by the tenant's own identity in its own project")
	}

	del := map[string]any{
		"source_id": "shop-api", "target": providerKey, "name": "default",
		"wit_namespace": "infisical", "wit_package": "secrets-provider", "interfaces": []string{"tenant"},
		"source_config": map[string]string{}, "target_config": map[string]string{}, "source_secrets": nil, "target_secrets": nil,
	}
	m.publish(t, m.subject("linkdefs.del"), del)
	eventually.True(t, "shop to fall back to the provider's settings", func() bool {
		s, err := m.fetch(shop)
		return err == nil && *s.StringSecret == "v2-password"
	})
}

func TestManagedInitialLinksFromHostData(t *testing.T) {
	m := startManaged(t, func(hd hostsim.HostData) {
		// The link must be sealed by the host xkey in this HostData, which NewHostData made; re-make both here.
		hk, _ := nkeys.CreateCurveKeys()
		pub, _ := hk.PublicKey()
		hd["host_xkey_public_key"] = pub
		// The link's source belongs to application storefront: serving shop takes the operator's leave.
		hd["config"].(map[string]string)["TENANT_CLAIMS"] = "storefront-api=shop"
		sealed, err := hostsim.SealLinkSecrets(hk, hd.ProviderXKeyPublic(), map[string]any{
			"INFISICAL_CLIENT_ID":     hostsim.BytesSecret([]byte("shop-client")),
			"INFISICAL_CLIENT_SECRET": hostsim.StringSecret("shop-secret"),
		})
		if err != nil {
			t.Fatal(err)
		}
		hd["link_definitions"] = []any{map[string]any{
			"source_id": "storefront-api", "target": providerKey, "name": "default",
			"wit_namespace": "infisical", "wit_package": "secrets-provider", "interfaces": []string{"tenant"},
			"source_config":  map[string]string{},
			"target_config":  map[string]string{"INFISICAL_PROJECT_ID": "shop-project", "APPLICATION": "shop"},
			"source_secrets": nil, "target_secrets": sealed,
		}}
	})
	m.fake.AddIdentity("shop-client", "shop-secret", "shop-project")
	m.fake.SetSecret("shop-project", "prod", "/", "DB_PASSWORD", "shop-password")
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"}); got != "shop-password" {
		t.Fatalf("shop = %q; want the tenant's value (APPLICATION in the link config, allowed by TENANT_CLAIMS)", got)
	}
}

func TestManagedBadStdin(t *testing.T) {
	h := newHarness(t)
	bin := hostsim.Binary(t)
	noURL, _, err := hostsim.NewHostData(h.host.ID, "", providerKey, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin []byte
		want  string
	}{
		{name: "empty", stdin: nil, want: "host data"},
		{name: "garbage", stdin: []byte("this is not base64!\r\n"), want: "base64"},
		{name: "base64 but not JSON", stdin: []byte("aGVsbG8=\r\n"), want: "JSON"},
		{name: "missing lattice URL", stdin: noURL.Line(), want: "lattice_rpc_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := hostsim.Start(t, bin, tt.stdin)
			code, err := p.Wait(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code == 0 {
				t.Fatalf("exit 0 on %s stdin", tt.name)
			}
			if !strings.Contains(p.Output(), tt.want) {
				t.Fatalf("output does not say what is wrong (%q):\n%s", tt.want, p.Output())
			}
		})
	}
}

func TestManagedBadConfigExitsWithMessage(t *testing.T) {
	h := newHarness(t)
	hd, _, err := hostsim.NewHostData(h.host.ID, h.url, providerKey, map[string]string{"CACHE_TTL": "soon"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := hostsim.Start(t, hostsim.Binary(t), hd.Line())
	code, err := p.Wait(10 * time.Second)
	if err != nil || code == 0 {
		t.Fatalf("exit = %d, %v; want non-zero", code, err)
	}
	for _, want := range []string{"INFISICAL_PROJECT_ID", "CACHE_TTL"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("output does not name %s:\n%s", want, p.Output())
		}
	}
}

// The host sends secrets requests on its control connection; NATS_URL in the provider config points the secrets
// server there while the host protocol stays on the lattice connection.
func TestManagedSecretsOnAnotherNATS(t *testing.T) {
	ctlURL, _ := natstest.Start(t)
	m := startManaged(t, func(hd hostsim.HostData) {
		hd["config"].(map[string]string)["NATS_URL"] = ctlURL
	})
	ctl, err := nats.Connect(ctlURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	host, err := hostsim.NewHost(ctl, prefix, backend)
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the secrets server on the control NATS", func() bool {
		s, err := host.Fetch(context.Background(), m.comp, hostsim.Ref{Key: "DB_PASSWORD"})
		return err == nil && s.StringSecret != nil && *s.StringSecret == "v2-password"
	})
	if healthy, _, err := hostsim.Health(context.Background(), m.nc, "default", providerKey); err != nil || !healthy {
		t.Fatalf("health on the lattice connection: %v %v", healthy, err)
	}
}

func TestManagedHealthIsUnhealthyWhenInfisicalLoginFails(t *testing.T) {
	m := startManaged(t, func(hd hostsim.HostData) {
		hd["secrets"].(map[string]any)["INFISICAL_CLIENT_SECRET"] = hostsim.StringSecret("wrong")
	})
	eventually.True(t, "health to report the failing login", func() bool {
		healthy, msg, err := hostsim.Health(context.Background(), m.nc, "default", providerKey)
		return err == nil && !healthy && strings.Contains(msg, "Infisical")
	})
	if !strings.Contains(m.proc.Output(), "Infisical login failed at start") {
		t.Fatalf("no start-up error about the login:\n%s", m.proc.Output())
	}
}

// Two components of one application each link to the provider: deleting one link must not drop the tenant that the
// other still brings.
func TestManagedTenantOutlivesOneOfItsLinks(t *testing.T) {
	m := startManaged(t, nil)
	m.fake.AddIdentity("shop-client", "shop-secret", "shop-project")
	m.fake.SetSecret("shop-project", "prod", "/", "DB_PASSWORD", "shop-password")
	link := func(source string, withSecrets bool) map[string]any {
		l := map[string]any{
			"source_id": source, "target": providerKey, "name": "default",
			"wit_namespace": "infisical", "wit_package": "secrets-provider", "interfaces": []string{"tenant"},
			"source_config": map[string]string{}, "target_config": map[string]string{}, "source_secrets": nil, "target_secrets": nil,
		}
		if withSecrets {
			sealed, err := hostsim.SealLinkSecrets(m.hostXKey, m.hd.ProviderXKeyPublic(), map[string]any{
				"INFISICAL_CLIENT_ID":     hostsim.StringSecret("shop-client"),
				"INFISICAL_CLIENT_SECRET": hostsim.StringSecret("shop-secret"),
			})
			if err != nil {
				t.Fatal(err)
			}
			l["target_config"] = map[string]string{"INFISICAL_PROJECT_ID": "shop-project"}
			l["target_secrets"] = sealed
		}
		return l
	}
	put := "wasmbus.rpc.default." + m.hd.ProviderXKeyPublic() + ".linkdefs.put"
	m.publish(t, put, link("shop-api", true))
	m.publish(t, put, link("shop-web", true))
	shop := hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"}
	eventually.True(t, "the tenant to serve shop", func() bool {
		s, err := m.fetch(shop)
		return err == nil && *s.StringSecret == "shop-password"
	})
	m.publish(t, m.subject("linkdefs.del"), link("shop-api", false))
	// Link messages are fire-and-forget: wait until the provider has handled the delete before checking that nothing
	// changed (a wrong removal would show as the provider's value below).
	eventually.True(t, "the delete to be handled", func() bool {
		for _, line := range strings.Split(m.proc.Output(), "\n") {
			if strings.Contains(line, "link deleted") && strings.Contains(line, "shop-api") {
				return true
			}
		}
		return false
	})
	if got := m.mustString(shop); got != "shop-password" {
		t.Fatalf("after deleting one of two links, shop reads %q; want its tenant's value", got)
	}
	m.publish(t, m.subject("linkdefs.del"), link("shop-web", false))
	eventually.True(t, "shop to fall back once its last link is gone", func() bool {
		s, err := m.fetch(shop)
		return err == nil && *s.StringSecret == "v2-password"
	})
}

// Health reports unhealthy while the connection secrets requests arrive on is down, and healthy again once NATS
// reconnects it.
func TestSlow_ManagedHealthFollowsTheSecretsConnection(t *testing.T) {
	ctlURL, ctl := natstest.Start(t)
	m := startManaged(t, func(hd hostsim.HostData) {
		hd["config"].(map[string]string)["NATS_URL"] = ctlURL
	})
	health := func() (bool, string) {
		healthy, msg, err := hostsim.Health(context.Background(), m.nc, "default", providerKey)
		if err != nil {
			return false, err.Error()
		}
		return healthy, msg
	}
	eventually.True(t, "healthy with both connections up", func() bool { ok, _ := health(); return ok })
	port := ctl.Addr().(*net.TCPAddr).Port
	ctl.Shutdown()
	eventually.True(t, "unhealthy while the secrets connection is down", func() bool {
		ok, msg := health()
		return !ok && strings.Contains(msg, "NATS")
	})
	restarted, err := natstest.Run(&server.Options{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Shutdown)
	eventually.True(t, "healthy again after the reconnect", func() bool { ok, _ := health(); return ok })
}

// A config update that changes what only a restart can apply says so, and the provider keeps serving.
func TestManagedConfigUpdateNamesSettingsThatNeedARestart(t *testing.T) {
	m := startManaged(t, nil)
	cfg := map[string]string{}
	for k, v := range m.hd["config"].(map[string]string) {
		cfg[k] = v
	}
	cfg["BACKEND_NAME"] = "renamed"
	m.publish(t, m.subject("config.update"), cfg)
	eventually.True(t, "the restart warning", func() bool {
		return capture.CountLines(m.proc.Output(), "only when the provider restarts", "BACKEND_NAME") == 1
	})
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after the update: %q (the old backend name still serves)", got)
	}
}

// Credentials that may not subscribe to the secrets subjects leave the backend deaf: health says so, naming the
// subject, instead of a line in a log nobody reads.
func TestManagedHealthIsUnhealthyWhenSecretsSubscribeIsDenied(t *testing.T) {
	deaf, err := natstest.Run(&server.Options{Users: []*server.User{{
		Username: "deaf", Password: "pw",
		Permissions: &server.Permissions{Subscribe: &server.SubjectPermission{Deny: []string{"wasmcloud.secrets.>"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deaf.Shutdown)
	port := deaf.Addr().(*net.TCPAddr).Port
	m := startManaged(t, func(hd hostsim.HostData) {
		hd["config"].(map[string]string)["NATS_URL"] = fmt.Sprintf("nats://deaf:pw@127.0.0.1:%d", port)
	})
	eventually.True(t, "unhealthy naming the refused subscription", func() bool {
		healthy, msg, err := hostsim.Health(context.Background(), m.nc, "default", providerKey)
		return err == nil && !healthy && strings.Contains(msg, "wasmcloud.secrets.v1alpha1.infisical.>") &&
			strings.Contains(strings.ToLower(msg), "permission")
	})
}

// NATS_CREDS in the provider's config gives the secrets connection its own NATS user even on the lattice server
// (so that NATS permissions can let only the backend subscribe to the secrets subjects): the provider uses it, and
// a bad one stops the start with a message naming it rather than being ignored.
func TestManagedSecretsConnectionUsesNATSCreds(t *testing.T) {
	h := newHarness(t)
	notCreds := filepath.Join(t.TempDir(), "not.creds")
	if err := os.WriteFile(notCreds, []byte("not a creds file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{"NATS_CREDS": notCreds}
	for k, v := range h.env {
		if k != "NATS_URL" {
			cfg[k] = v
		}
	}
	hd, _, err := hostsim.NewHostData(h.host.ID, h.url, providerKey, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := hostsim.Start(t, hostsim.Binary(t), hd.Line())
	code, err := p.Wait(10 * time.Second)
	if err != nil || code == 0 {
		t.Fatalf("exit = %d, %v; want non-zero", code, err)
	}
	if !strings.Contains(p.Output(), "NATS_CREDS") {
		t.Fatalf("output does not name NATS_CREDS:\n%s", p.Output())
	}
}
