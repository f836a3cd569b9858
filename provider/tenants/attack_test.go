package tenants

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// getFor asks b for key as a component of the wadm application app (its exact manifest name, as the host sends it).
func getFor(t *testing.T, b *backend.Backend, app, key string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	s, err := b.Get(ctx, &secrets.Verified{Request: &secrets.Request{Key: key}, Application: app,
		Entity: &wascap.Claims{Issuer: "AISSUER", Subject: "MSUBJECT", Name: "api"}})
	if err != nil {
		return "", err
	}
	if s.StringSecret == nil {
		t.Fatalf("no string value for %s", key)
	}
	return *s.StringSecret, nil
}

// wadm accepts any manifest name matching ^[-\w]+$, so "shop-x" and "shop_x" are two distinct applications, deployed
// by different people. Both normalize to the application key "shop_x", and the components of "shop_x" have ids
// "shop_x-<component>", exactly like those of "shop-x". A tenant link from the attacker's own application therefore
// counts as a link "of" the victim's application:
//
//   - a victim without a tenant link (served by the provider's identity) is silently switched to the attacker's
//     identity and Infisical, which then answers every secret the victim's components ask for (and learns their names);
//   - a victim with its own tenant link loses it: links of one source application replace each other, latest wins;
//   - without any link, the attacker's components (application "shop_x") are served by the victim's tenant identity,
//     and read the victim's secrets with the victim's Infisical rights (ACCESS_RULES unset, or not naming apps).
//
// The attacker needs nothing but the right to deploy its own manifest.
func TestAttack_NormalizedNameCollisionTakesOverAnotherApplication(t *testing.T) {
	legit := fakeinfisical.New(t)
	legit.AddIdentity("provider-client", "provider-secret", "prov-project")
	legit.AddIdentity("victim-client", "victim-secret", "victim-project")
	legit.SetSecret("prov-project", "prod", "/", "DB_URL", "postgres://real-db")
	legit.SetSecret("victim-project", "prod", "/", "DB_URL", "postgres://victims-own-db")

	evil := fakeinfisical.New(t) // the attacker's own "Infisical"
	evil.AddIdentity("evil-client", "evil-secret", "evil-project")
	evil.SetSecret("evil-project", "prod", "/", "DB_URL", "postgres://attacker-db")

	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_BASE_URL": legit.URL, "INFISICAL_PROJECT_ID": "prov-project", "INFISICAL_CLIENT_ID": "provider-client",
		"TRUSTED_ISSUERS": "*", "UPSTREAM_TIMEOUT": "2s",
	}, map[string]string{"INFISICAL_CLIENT_SECRET": "provider-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.New(backend.Config{Settings: s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	reg := New(s, b, slog.New(slog.DiscardHandler))

	attackerLink := Link{ID: "shop_x-evil/default", Source: "shop_x-evil", // component "evil" of wadm app "shop_x"
		Config: map[string]string{"INFISICAL_BASE_URL": evil.URL, "INFISICAL_PROJECT_ID": "evil-project",
			"INFISICAL_CLIENT_ID": "evil-client"},
		Secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "evil-secret"}}

	t.Run("victim without a tenant link", func(t *testing.T) {
		if got, err := getFor(t, b, "shop-x", "DB_URL"); err != nil || got != "postgres://real-db" {
			t.Fatalf("before: %q, %v", got, err)
		}
		if err := reg.Put(attackerLink); err != nil {
			t.Logf("the attacker's link was refused: %v", err)
		}
		t.Cleanup(func() { reg.Delete(attackerLink.ID) })
		got, err := getFor(t, b, "shop-x", "DB_URL")
		if got != "postgres://real-db" {
			t.Fatalf("application shop-x is now served by application shop_x's tenant link: got %q (err %v); "+
				"the attacker's Infisical answers the victim's secrets", got, err)
		}
	})

	t.Run("victim with its own tenant link", func(t *testing.T) {
		// A link's source names only the application key "shop_x": a link without APPLICATION serves exactly the
		// application named "shop_x", so the victim's link names its application exactly.
		victimLink := Link{ID: "shop_x-api/default", Source: "shop_x-api", // component "api" of wadm app "shop-x"
			Config: map[string]string{"INFISICAL_BASE_URL": legit.URL, "INFISICAL_PROJECT_ID": "victim-project",
				"INFISICAL_CLIENT_ID": "victim-client", "APPLICATION": "shop-x"},
			Secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "victim-secret"}}
		if err := reg.Put(victimLink); err != nil {
			t.Fatal(err)
		}
		if got, err := getFor(t, b, "shop-x", "DB_URL"); err != nil || got != "postgres://victims-own-db" {
			t.Fatalf("before: %q, %v", got, err)
		}
		if err := reg.Put(attackerLink); err != nil {
			t.Logf("the attacker's link was refused: %v", err)
		}
		got, err := getFor(t, b, "shop-x", "DB_URL")
		var werr *secrets.Error
		if errors.As(err, &werr) {
			t.Logf("victim's get: %s %s", werr.Kind, werr.Message)
		}
		if got != "postgres://victims-own-db" {
			t.Fatalf("application shop_x's link replaced application shop-x's tenant: got %q (err %v)", got, err)
		}
	})
	t.Run("attacker's application reads with the victim's tenant identity", func(t *testing.T) {
		reg.Delete(attackerLink.ID) // the victim's link serves "shop_x" again
		if got, err := getFor(t, b, "shop-x", "DB_URL"); err != nil || got != "postgres://victims-own-db" {
			t.Fatalf("victim: %q, %v", got, err)
		}
		got, err := getFor(t, b, "shop_x", "DB_URL") // a component of the attacker's wadm app "shop_x", no link at all
		if got == "postgres://victims-own-db" {
			t.Fatalf("application shop_x was served application shop-x's secret through shop-x's tenant identity: %q", got)
		}
		t.Logf("attacker app: %q, %v", got, err)
	})
}

// docs/security.md: "With the default POLICY_OVERRIDES no policy can move either to another project or environment than
// the identity's own, so the billing rule holds without naming one" (rule {"application":"billing","key":"/billing/*"}).
// A manifest's policy asking for environment=staging or another project_id is answered PolicyError.
//
// The same manifest may also carry a tenant link that keeps the provider's identity and sets only
// INFISICAL_PROJECT_ID and INFISICAL_ENVIRONMENT (the allow-list permits both, with no POLICY_OVERRIDES check). The
// link's values become "the identity's own" defaults for the application, so checkOverrides passes and the rule, which
// names neither, allows: the manifest author reads any project and environment the provider's identity can, with the
// provider's identity.
func TestAttack_TenantLinkWithProviderIdentityEscapesPolicyOverrides(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.AddIdentity("provider-client", "provider-secret", "prov-project", "other-team-project")
	fake.SetSecret("prov-project", "prod", "/billing", "DB_PASSWORD", "billing-prod")
	fake.SetSecret("prov-project", "staging", "/billing", "DB_PASSWORD", "billing-staging")
	fake.SetSecret("other-team-project", "prod", "/billing", "DB_PASSWORD", "other-team-secret")

	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_BASE_URL": fake.URL, "INFISICAL_PROJECT_ID": "prov-project", "INFISICAL_CLIENT_ID": "provider-client",
		"TRUSTED_ISSUERS": "*", "UPSTREAM_TIMEOUT": "2s",
		"ACCESS_RULES": `[{"application":"billing","key":"/billing/*"}]`,
	}, map[string]string{"INFISICAL_CLIENT_SECRET": "provider-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.New(backend.Config{Settings: s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	reg := New(s, b, slog.New(slog.DiscardHandler))

	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	_, err = b.Get(ctx, &secrets.Verified{Request: &secrets.Request{Key: "/billing/DB_PASSWORD"}, Application: "billing",
		Entity: &wascap.Claims{Issuer: "AISSUER", Subject: "MSUBJECT", Name: "api"},
		Policy: secrets.Policy{Properties: map[string]string{"project_id": "other-team-project"}}})
	var werr *secrets.Error
	if !errors.As(err, &werr) || werr.Kind != secrets.KindPolicyError {
		t.Fatalf("the policy override: %v; want PolicyError", err)
	}

	for _, tc := range []struct{ name, project, env, stolen string }{
		{"another environment", "", "staging", "billing-staging"},
		{"another team's project", "other-team-project", "", "other-team-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]string{}
			if tc.project != "" {
				cfg["INFISICAL_PROJECT_ID"] = tc.project
			}
			if tc.env != "" {
				cfg["INFISICAL_ENVIRONMENT"] = tc.env
			}
			l := Link{ID: "billing-api/default", Source: "billing-api", Config: cfg}
			if err := reg.Put(l); err != nil {
				t.Logf("link refused: %v", err)
			}
			t.Cleanup(func() { reg.Delete(l.ID) })
			got, err := getFor(t, b, "billing", "/billing/DB_PASSWORD")
			if got == tc.stolen {
				t.Fatalf("a tenant link without an identity moved application billing to %s, which POLICY_OVERRIDES "+
					"refuses its policy: served %q with the provider's identity", tc.name, got)
			}
			t.Logf("%q, %v", got, err)
		})
	}
}

// A tenant link that keeps the provider's identity (it sets only INFISICAL_ENVIRONMENT, say) gets the provider's
// identity id: IdentityID hashes only the URL and the login. When that tenant goes (its link deleted, or refused),
// swapTenant forgets every cache entry of that id: the provider's whole cache, for every application it serves.
// Anyone who may put links for their own application can do that as often as they like (put, delete, put, ...):
// every other application's cached values are gone, each of their gets goes to Infisical again (towards the 429
// pause that stops everyone), and while Infisical is down nothing is left to serve, not even fresh values.
func TestAttack_TenantLinkChurnWipesTheProvidersCache(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.AddIdentity("provider-client", "provider-secret", "prov-project")
	fake.SetSecret("prov-project", "prod", "/shop", "A", "shop-a")
	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_BASE_URL": fake.URL, "INFISICAL_PROJECT_ID": "prov-project", "INFISICAL_CLIENT_ID": "provider-client",
		"TRUSTED_ISSUERS": "*", "UPSTREAM_TIMEOUT": "1s", "CACHE_TTL": "5m",
	}, map[string]string{"INFISICAL_CLIENT_SECRET": "provider-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backend.New(backend.Config{Settings: s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	reg := New(s, b, slog.New(slog.DiscardHandler))

	if got, err := getFor(t, b, "shop", "/shop/A"); err != nil || got != "shop-a" {
		t.Fatalf("shop: %q, %v", got, err)
	}
	calls := fake.Count(fakeinfisical.RouteAll)
	if got, err := getFor(t, b, "shop", "/shop/A"); err != nil || got != "shop-a" || fake.Count(fakeinfisical.RouteAll) != calls {
		t.Fatalf("shop's second get was not a cache hit: %q, %v", got, err)
	}

	// Another application's deployer puts a link and deletes it.
	l := Link{ID: "evil-x/default", Source: "evil-x", Config: map[string]string{"INFISICAL_ENVIRONMENT": "dev"}}
	if err := reg.Put(l); err != nil {
		t.Fatal(err)
	}
	reg.Delete(l.ID)

	fake.Down(true) // an Infisical blip
	t.Cleanup(func() { fake.Down(false) })
	got, err := getFor(t, b, "shop", "/shop/A")
	if got != "shop-a" {
		t.Fatalf("application shop's value, cached and fresh a moment ago, is gone after application evil's link came and "+
			"went: %q, %v", got, err)
	}
}
