package deploy

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/tenants"
)

type acceptAll struct{}

func (acceptAll) SetTenant(string, settings.Infisical) error { return nil }
func (acceptAll) RefuseTenant(string, string)                {}
func (acceptAll) RemoveTenant(string)                        {}

// The shipped manifests' tenant links must be accepted as wadm will deliver them: from the component id wadm
// computes ({manifest}-{component}, each part lowercased with non-alphanumerics as '_', unless the component sets
// an id), claiming only the application that id belongs to, with the provider's own settings.
func TestManifestTenantLinksClaimTheirOwnApplication(t *testing.T) {
	specs := map[string]settings.Spec{}
	for _, s := range settings.Specs() {
		specs[s.Name] = s
	}
	xkey, _ := nkeys.CreateCurveKeys()
	seed, _ := xkey.Seed()
	placeholder := func(name string) string {
		if name == "SERVER_XKEY_SEED" {
			return string(seed)
		}
		return "placeholder-" + strings.ToLower(name)
	}
	for _, file := range []string{"wadm.yaml", "local.wadm.yaml"} {
		t.Run(file, func(t *testing.T) {
			m, _ := loadManifest(t, file)
			var provider *settings.Settings
			for _, c := range m.Spec.Components {
				if c.Name == providerName {
					config, secrets := flatten(t, specs, "provider", c.Properties.Config, c.Properties.Secrets, placeholder)
					var err error
					if provider, err = settings.Load(settings.Maps(config, secrets)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if provider == nil {
				t.Fatalf("no component %s", providerName)
			}
			r := tenants.New(provider, acceptAll{}, slog.New(slog.DiscardHandler))
			found := 0
			for _, c := range m.Spec.Components {
				id := c.Properties.ID
				if id == "" {
					id = backend.ApplicationKey(m.Metadata.Name) + "-" + backend.ApplicationKey(c.Name)
				}
				for _, tr := range c.Traits {
					var l link
					if tr.Type != "link" || tr.Properties.Decode(&l) != nil || l.Target.Name != providerName {
						continue
					}
					found++
					config, secrets := flatten(t, specs, "tenant link of "+c.Name, l.Target.Config, l.Target.Secrets, placeholder)
					if err := r.Put(tenants.Link{ID: id, Source: id, Config: config, Secrets: secrets}); err != nil {
						t.Errorf("tenant link of %s (source %s): %v", c.Name, id, err)
					}
				}
			}
			if found == 0 {
				t.Skip("no tenant link in this manifest")
			}
		})
	}
}
