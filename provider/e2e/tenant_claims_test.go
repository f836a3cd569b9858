package e2e

import (
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
)

// tenantLink is a link put from source to the provider on the tenant interface; secrets are sealed to the provider.
func (m *managed) tenantLink(t *testing.T, source string, config map[string]string, secrets map[string]string) map[string]any {
	t.Helper()
	sealed := any(nil)
	if len(secrets) > 0 {
		values := map[string]any{}
		for k, v := range secrets {
			values[k] = hostsim.StringSecret(v)
		}
		var err error
		if sealed, err = hostsim.SealLinkSecrets(m.hostXKey, m.hd.ProviderXKeyPublic(), values); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]any{
		"source_id": source, "target": providerKey, "name": "default",
		"wit_namespace": "infisical", "wit_package": "secrets-provider", "interfaces": []string{"tenant"},
		"source_config": map[string]string{}, "target_config": config, "source_secrets": nil, "target_secrets": sealed,
	}
}

func (m *managed) putLink(t *testing.T, link map[string]any) {
	t.Helper()
	m.publish(t, "wasmbus.rpc.default."+m.hd.ProviderXKeyPublic()+".linkdefs.put", link)
}

// waitLinkHandled waits until the provider has logged the outcome of the latest put of a link from source.
func (m *managed) waitLinkHandled(t *testing.T, source string, puts int) {
	t.Helper()
	eventually.True(t, "the link from "+source+" to be handled", func() bool {
		n := 0
		for _, line := range strings.Split(m.proc.Output(), "\n") {
			if strings.Contains(line, source) && (strings.Contains(line, "link applied") || strings.Contains(line, "link rejected")) {
				n++
			}
		}
		return n >= puts
	})
}

// A link from application evil claims shop with APPLICATION: it must neither take over shop's tenant nor, where no
// link serves shop, give shop evil's identity; shop keeps what it had.
func TestManagedTenantLinkCannotClaimAnotherApplication(t *testing.T) {
	m := startManaged(t, nil)
	m.fake.AddIdentity("shop-client", "shop-secret", "shop-project")
	m.fake.SetSecret("shop-project", "prod", "/", "DB_PASSWORD", "shop-password")
	m.fake.AddIdentity("evil-client", "evil-secret", "evil-project")
	m.fake.SetSecret("evil-project", "prod", "/", "DB_PASSWORD", "evil-password")
	evil := func(app string) map[string]any {
		return m.tenantLink(t, "evil-x", map[string]string{"APPLICATION": app, "INFISICAL_PROJECT_ID": "evil-project"},
			map[string]string{"INFISICAL_CLIENT_ID": "evil-client", "INFISICAL_CLIENT_SECRET": "evil-secret"})
	}

	// billing has no tenant: evil may not give it one.
	m.putLink(t, evil("billing"))
	m.waitLinkHandled(t, "evil-x", 1)
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD", Application: "billing"}); got != "v2-password" {
		t.Fatalf("billing reads %q after evil's claim; want the provider's value", got)
	}

	// shop has its own tenant: evil may not take it over.
	m.putLink(t, m.tenantLink(t, "shop-api", map[string]string{"INFISICAL_PROJECT_ID": "shop-project"},
		map[string]string{"INFISICAL_CLIENT_ID": "shop-client", "INFISICAL_CLIENT_SECRET": "shop-secret"}))
	shop := hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"}
	eventually.True(t, "the tenant to serve shop", func() bool {
		s, err := m.fetch(shop)
		return err == nil && *s.StringSecret == "shop-password"
	})
	m.putLink(t, evil("shop"))
	m.waitLinkHandled(t, "evil-x", 2)
	if got := m.mustString(shop); got != "shop-password" {
		t.Fatalf("shop reads %q after evil's claim; want its own tenant's value", got)
	}
	if !strings.Contains(m.proc.Output(), "evil-x") || !strings.Contains(m.proc.Output(), "TENANT_CLAIMS") {
		t.Fatalf("the refused claim is not logged with its source and the setting that would allow it:\n%s", m.proc.Output())
	}
}

// A tenant link whose settings are refused fails closed: its application's requests get an error, never the
// provider's values (nor another identity's).
func TestManagedRefusedTenantLinkFailsClosed(t *testing.T) {
	m := startManaged(t, nil)
	m.putLink(t, m.tenantLink(t, "shop-api", map[string]string{"INFISICAL_PROJECT_ID": "shop-project",
		"INFISICAL_ENVIRONMENT": "Not A Slug"}, map[string]string{"INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s"}))
	m.waitLinkHandled(t, "shop-api", 1)
	s, err := m.fetch(hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"})
	if err == nil {
		t.Fatalf("shop read %q although its tenant link was refused", *s.StringSecret)
	}
	if !strings.Contains(err.Error(), "tenant link") {
		t.Fatalf("error %q does not say the tenant link was refused", err)
	}
	// Other applications are not affected.
	if got := m.mustString(hostsim.Ref{Key: "DB_PASSWORD", Application: "billing"}); got != "v2-password" {
		t.Fatalf("billing = %q", got)
	}
	// Deleting the refused link gives shop back to the provider's settings.
	del := m.tenantLink(t, "shop-api", map[string]string{}, nil)
	m.publish(t, m.subject("linkdefs.del"), del)
	eventually.True(t, "shop to fall back once the refused link is gone", func() bool {
		s, err := m.fetch(hostsim.Ref{Key: "DB_PASSWORD", Application: "shop"})
		return err == nil && *s.StringSecret == "v2-password"
	})
}
