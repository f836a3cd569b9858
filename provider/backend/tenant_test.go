package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// Links are put again and again (one per component of an app, wadm re-puts): the same settings must keep the same
// client, with its token and its login back-off; new settings or a new UPSTREAM_TIMEOUT make a new one.
func TestSetTenantKeepsTheClientForTheSameSettings(t *testing.T) {
	dials := 0
	s, err := settings.Load(settings.Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "c",
		"INFISICAL_CLIENT_SECRET": "s", "TRUSTED_ISSUERS": "*"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Settings: s, Dial: func(settings.Infisical) (Upstream, error) {
		dials++
		return &fakeUpstream{}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tenant := s.Infisical
	tenant.ProjectID, tenant.ClientID = "shop-project", "shop-client"
	steps := []struct {
		name      string
		apply     func() error
		wantDials int
	}{
		{name: "first put", apply: func() error { return b.SetTenant("shop", tenant) }, wantDials: 2},
		{name: "same settings again", apply: func() error { return b.SetTenant("shop", tenant) }, wantDials: 2},
		{name: "new settings", apply: func() error {
			tenant.Environment = "dev"
			return b.SetTenant("shop", tenant)
		}, wantDials: 3},
		{name: "new upstream timeout", apply: func() error {
			next := *s
			next.UpstreamTimeout = 2 * time.Second
			if err := b.Reconfigure(&next); err != nil { // redials the default identity
				return err
			}
			return b.SetTenant("shop", tenant)
		}, wantDials: 5},
	}
	for _, st := range steps {
		if err := st.apply(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if dials != st.wantDials {
			t.Fatalf("%s: %d clients made; want %d", st.name, dials, st.wantDials)
		}
	}
}

// Cache entries are keyed by identity, not by application: when one application's tenant goes, what another tenant
// with the same identity, or the provider (whose identity a link may keep), cached must stay.
func TestRemovingATenantKeepsTheCacheOfIdentitiesStillInUse(t *testing.T) {
	fake := tierFake(t)
	fake.AddIdentity("team-client", "team-secret", testProject)
	r := newReplica(t, fake, newTestClock(), nil)
	team := r.Settings().Infisical
	team.ClientID, team.ClientSecret = "team-client", "team-secret"
	keeps := r.Settings().Infisical // a link that keeps the provider's identity
	keeps.SecretPath = "/billing"
	for app, s := range map[string]settings.Infisical{"shop": team, "billing": team, "dev": keeps} {
		if err := r.SetTenant(app, s); err != nil {
			t.Fatal(err)
		}
	}
	r.mustGet(t, "/shop/B", "shop-b")
	if got, kind, _ := r.getAs(t, "other", "/shop/C"); got != "shop-c" { // the provider's identity
		t.Fatalf("other: %q, %s", got, kind)
	}
	r.RemoveTenant("billing")
	r.RefuseTenant("dev", "its tenant link's settings were refused")
	r.RemoveTenant("dev")
	fake.Down(true)
	r.mustGet(t, "/shop/B", "shop-b")
	if got, kind, msg := r.getAs(t, "other", "/shop/C"); got != "shop-c" {
		t.Fatalf("the provider's cached value is gone after a tenant that kept its identity went: %q, %s %q", got, kind, msg)
	}
}

// Hosts send the manifest's name exactly, and tenants are kept by it: shop-x and shop_x are two applications, though
// their names normalize alike. One with no tenant is served by the provider's identity, with a warning naming the
// other in case the link was meant for it.
func TestTenantsAreKeptByExactApplicationName(t *testing.T) {
	fake := tierFake(t)
	fake.SetSecret(testProject, "dev", "/shop", "B", "dev-b")
	r := newReplica(t, fake, newTestClock(), nil)
	dev := r.Settings().Infisical
	dev.Environment = "dev"
	if err := r.SetTenant("shop-x", dev); err != nil {
		t.Fatal(err)
	}
	if got, kind, msg := r.getAs(t, "shop-x", "/shop/B"); got != "dev-b" {
		t.Fatalf("shop-x: %q, %s %q", got, kind, msg)
	}
	if got, kind, msg := r.getAs(t, "shop_x", "/shop/B"); got != "shop-b" {
		t.Fatalf("shop_x was not served by the provider's identity: %q, %s %q", got, kind, msg)
	}
	if !strings.Contains(r.logs.String(), "normalizes alike") || !strings.Contains(r.logs.String(), "tenant=shop-x") {
		t.Errorf("no warning names the tenant whose name normalizes alike:\n%s", r.logs)
	}
}

// A replaced client is closed only after the fetches that may still use it are over (retireAfter); closing the
// backend before then must close it too, rather than leave it and its timer running past Close.
func TestCloseClosesRetiredClients(t *testing.T) {
	var made []*funcUpstream
	b := newTestBackend(t, nil, func(settings.Infisical) (Upstream, error) {
		u := &funcUpstream{fn: store{}.read}
		made = append(made, u)
		return u, nil
	})
	tenant := b.Settings().Infisical
	tenant.ProjectID = "shop-project"
	if err := b.SetTenant("shop", tenant); err != nil {
		t.Fatal(err)
	}
	tenant.ProjectID = "other-project"
	if err := b.SetTenant("shop", tenant); err != nil { // retires the first tenant client
		t.Fatal(err)
	}
	next := *b.Settings()
	next.Infisical.ProjectID = "p2"
	if err := b.Reconfigure(&next); err != nil { // retires the provider's client
		t.Fatal(err)
	}
	if len(made) != 4 {
		t.Fatalf("%d clients made; want 4", len(made))
	}
	for i, u := range made[:2] {
		if !u.retired.Load() || u.closed.Load() {
			t.Fatalf("client %d: retired %v, closed %v; want retired and still open", i, u.retired.Load(), u.closed.Load())
		}
	}
	b.Close()
	for i, u := range made {
		if !u.closed.Load() {
			t.Errorf("client %d is still open after Close", i)
		}
	}

	// After Close no client is made, so none outlives the backend: changes are refused.
	next.Infisical.ProjectID = "p3"
	if err := b.Reconfigure(&next); err == nil {
		t.Error("Reconfigure after Close succeeded")
	}
	if len(made) != 4 {
		t.Errorf("%d clients made; want no new one after Close", len(made))
	}
}
