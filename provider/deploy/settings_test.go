package deploy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// The manifests' config and secret names must be settings the provider reads, with values it accepts, and secret
// settings must never sit in plain config (wadm stores config unencrypted).
func TestManifestSettingsLoad(t *testing.T) {
	specs := map[string]settings.Spec{}
	for _, s := range settings.Specs() {
		specs[s.Name] = s
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	xkeySeed, err := xkey.Seed()
	if err != nil {
		t.Fatal(err)
	}
	// Stand-ins for what the bootstrap backend would deliver.
	placeholder := func(name string) string {
		if name == "SERVER_XKEY_SEED" {
			return string(xkeySeed)
		}
		return "placeholder-" + strings.ToLower(name)
	}

	shipped := shippedManifests(t)
	for _, file := range providerManifests {
		t.Run(file, func(t *testing.T) {
			m, _ := loadManifest(t, file)
			provider := findComponent(m, providerName)
			if provider == nil {
				t.Fatalf("no component %s", providerName)
			}
			config, secrets := flatten(t, specs, "provider", provider.Properties.Config, provider.Properties.Secrets, placeholder)
			s, err := settings.Load(settings.Maps(config, secrets))
			if err != nil {
				t.Fatalf("provider settings from %s: %v", file, err)
			}

			// Tenant links to this provider, from any shipped manifest: the provider's own, or one naming it as
			// a shared component.
			tenants := 0
			for _, other := range shipped {
				app, _ := loadManifest(t, other)
				for _, cl := range links(app) {
					target := findComponent(app, cl.link.Target.Name)
					if target == nil || !isProvider(app, target, m) {
						continue
					}
					tenants++
					where := fmt.Sprintf("%s: tenant link of %s", other, cl.source.Name)
					config, secrets := flatten(t, specs, where, cl.link.Target.Config, cl.link.Target.Secrets, placeholder)
					if _, err := settings.LoadTenant(settings.Maps(config, secrets), s); err != nil {
						t.Errorf("%s: %v", where, err)
					}
				}
			}
			if tenants == 0 {
				t.Errorf("no shipped manifest has a tenant link to the provider of %s", file)
			}
		})
	}
}

// isProvider reports whether c, a component of app, is the provider that prov deploys.
func isProvider(app *manifest, c *component, prov *manifest) bool {
	if a := c.Properties.Application; a != nil {
		return a.Name == prov.Metadata.Name && a.Component == providerName
	}
	return app.Metadata.Name == prov.Metadata.Name && c.Name == providerName
}

// flatten merges config entries into one map and gives each secret a placeholder value, checking every name.
func flatten(t *testing.T, specs map[string]settings.Spec, where string, config, secrets []namedProps, placeholder func(string) string) (map[string]string, map[string]string) {
	t.Helper()
	cfg := map[string]string{}
	for _, c := range config {
		for k, v := range c.Properties {
			spec, ok := specs[strings.ToUpper(k)]
			switch {
			case !ok:
				t.Errorf("%s config %s: %s is not a provider setting", where, c.Name, k)
			case spec.Secret:
				t.Errorf("%s config %s: %s is a secret setting; deliver it through secrets, not plain config", where, c.Name, k)
			}
			s, _ := v.(string)
			cfg[k] = s
		}
	}
	sec := map[string]string{}
	for _, s := range secrets {
		if _, ok := specs[strings.ToUpper(s.Name)]; !ok {
			t.Errorf("%s secret %s is not a provider setting", where, s.Name)
		}
		sec[s.Name] = placeholder(s.Name)
	}
	return cfg, sec
}
