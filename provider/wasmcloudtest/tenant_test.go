//go:build wasmcloud

package wasmcloudtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
)

// Tenant test values: a second identity and project the provider's own identity cannot read.
const (
	tenantProject      = "99999999-8888-7777-6666-555555555555"
	tenantClientID     = "shop-client-id"
	tenantClientSecret = "shop-client-secret"
)

// Scenario 5: the shipped tenant example (docs/examples/tenant.wadm.yaml), with its wasm component swapped for the
// probe provider, links a second application to the shared provider; wadm delivers the link with its secrets from
// nats-kv; that application's secrets are read with the tenant identity; deleting the application removes it.
func TestTenantLinkFromWadm(t *testing.T) {
	l := startLattice(t, latticeOptions{})
	fake := newFake(t)
	fake.AddIdentity(tenantClientID, tenantClientSecret, tenantProject)
	fake.SetSecret(tenantProject, "prod", "/", "DB_PASSWORD", "shop-password")
	issuer := hostsim.NewIssuer()
	probePAR := buildPAR(t, t.TempDir(), "probe", goBinary(t, "./provider/internal/cmd/probe"), issuer)

	b := deployBackend(t, l, fake, backendOptions{trustedIssuers: probePAR.issuer})
	l.waitAppStatus(providerApp, "deployed", 120*time.Second)
	l.putSecret(b.par.subject, "shop-infisical-client-id", tenantClientID)
	l.putSecret(b.par.subject, "shop-infisical-client-secret", tenantClientSecret)

	manifest := tenantManifest(t, probePAR, "isptest.probe.shop")
	path := filepath.Join(t.TempDir(), "tenant.wadm.yaml")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	l.mustWash("app", "deploy", path)
	l.waitAppStatus("shop", "deployed", 180*time.Second)

	got := l.probe("isptest.probe.shop", 30*time.Second)
	if got.Secrets["DB_PASSWORD"] != "string:shop-password" {
		t.Errorf("the shop application's secret = %q, want the tenant project's shop-password", got.Secrets["DB_PASSWORD"])
	}
	if ok, _ := loginsBy(fake, tenantClientID); ok == 0 {
		t.Errorf("the tenant identity never logged in; reads by it: %v", readsBy(fake, tenantClientID))
	}
	for _, r := range readsBy(fake, clientID) {
		if strings.Contains(r, tenantProject) {
			t.Errorf("the provider's own identity read the tenant's project: %s", r)
		}
	}

	// Deleting the application deletes its link, and with it the tenant.
	l.mustWash("app", "delete", "shop")
	waitFor(t, "the provider to drop the tenant link", 60*time.Second, func() (bool, string) {
		return strings.Contains(l.host.out.String(), "link deleted"), "no \"link deleted\" line yet"
	})
	l.eventually("the shop probe to stop", 60*time.Second, func() (bool, string) {
		return !l.hasProvider("shop-probe"), "still in the inventory"
	})
	// A new "shop" application without the link is served with the provider's own identity again.
	plain := probeApp{name: "shop", id: "shop-plain", subject: "isptest.probe.plain", par: probePAR,
		secrets: "          - name: DB_PASSWORD\n            properties: {policy: infisical, key: DB_PASSWORD}"}
	l.deployApp(plain)
	l.waitAppStatus("shop", "deployed", 120*time.Second)
	if got := l.probe(plain.subject, 30*time.Second); got.Secrets["DB_PASSWORD"] != "string:v2-password" {
		t.Errorf("after the tenant link was deleted, shop received %q, want the provider project's v2-password", got.Secrets["DB_PASSWORD"])
	}
}

// emptyComponent is the smallest valid WebAssembly component (magic, component-model version and layer): enough
// for the real host to start it as a link source, which is all a tenant link needs of its source.
var emptyComponent = []byte{0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00}

// tenantManifest is docs/examples/tenant.wadm.yaml with its component's image (a published wasm component the tests
// cannot download) replaced by an empty component that keeps the tenant link, and the component's secrets moved to
// the probe provider in the same application (wadm rejects provider-to-provider links, and only a provider can
// report what it received), with the tenant's project.
func tenantManifest(t *testing.T, probe parFile, subject string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "docs", "examples", "tenant.wadm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wasm := filepath.Join(t.TempDir(), "api.wasm")
	if err := os.WriteFile(wasm, emptyComponent, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := m["spec"].(map[string]any)
	components := spec["components"].([]any)
	var moved []any
	for _, c := range components {
		comp := c.(map[string]any)
		if comp["type"] != "component" {
			continue
		}
		props := comp["properties"].(map[string]any)
		props["image"] = "file://" + wasm
		if s, ok := props["secrets"].([]any); ok {
			moved = append(moved, s...)
			delete(props, "secrets")
		}
		for _, tr := range comp["traits"].([]any) {
			trait := tr.(map[string]any)
			if trait["type"] != "link" {
				continue
			}
			target := trait["properties"].(map[string]any)["target"].(map[string]any)
			for _, c := range target["config"].([]any) {
				p := c.(map[string]any)["properties"].(map[string]any)
				p["INFISICAL_PROJECT_ID"] = tenantProject
			}
		}
	}
	if len(moved) == 0 {
		t.Fatal("docs/examples/tenant.wadm.yaml has no component with secrets")
	}
	spec["components"] = append(components, map[string]any{
		"name": "probe", "type": "capability",
		"properties": map[string]any{
			"image": "file://" + probe.path, "id": "shop-probe",
			"config":  []any{map[string]any{"name": "probe-config", "properties": map[string]any{"PROBE_SUBJECT": subject}}},
			"secrets": moved,
		},
		"traits": []any{map[string]any{"type": "spreadscaler", "properties": map[string]any{"instances": 1}}},
	})
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
