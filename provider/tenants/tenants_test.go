package tenants

import (
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// fakeTarget records what each application is served with: "project:<id>", "refused", or nothing (the provider).
type fakeTarget struct{ state map[string]string }

func (f *fakeTarget) SetTenant(app string, s settings.Infisical) error {
	if s.ProjectID == "undialable" {
		return errors.New("cannot dial")
	}
	f.state[app] = "project:" + s.ProjectID
	return nil
}
func (f *fakeTarget) RefuseTenant(app, _ string) { f.state[app] = "refused" }
func (f *fakeTarget) RemoveTenant(app string)    { delete(f.state, app) }

func providerSettings(t *testing.T, kv ...string) *settings.Settings {
	t.Helper()
	m := map[string]string{"INFISICAL_PROJECT_ID": "provider-project", "INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	s, err := settings.Load(settings.Maps(m, nil))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// link is a tenant link from source to project with its own identity; app sets APPLICATION when not "".
func link(source, app, project string) Link {
	cfg := map[string]string{"INFISICAL_PROJECT_ID": project, "INFISICAL_CLIENT_ID": source + "-client"}
	if app != "" {
		cfg["APPLICATION"] = app
	}
	return Link{ID: source + "/default", Source: source, Config: cfg, Secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "x"}}
}

type step struct {
	name    string
	do      func(r *Registry) error
	wantErr string // substring; "" = no error
	want    map[string]string
}

func run(t *testing.T, r *Registry, target *fakeTarget, steps []step) {
	t.Helper()
	for _, st := range steps {
		err := st.do(r)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: error %v; want one containing %q", st.name, err, st.wantErr)
		}
		if !maps.Equal(target.state, st.want) {
			t.Fatalf("%s: applications served %v; want %v", st.name, target.state, st.want)
		}
	}
}

func put(l Link) func(*Registry) error { return func(r *Registry) error { return r.Put(l) } }
func del(id string) func(*Registry) error {
	return func(r *Registry) error { r.Delete(id); return nil }
}

func TestClaims(t *testing.T) {
	target := &fakeTarget{state: map[string]string{}}
	logs := &capture.Buffer{}
	r := New(providerSettings(t, "TENANT_CLAIMS", "storefront-api=shop"), target, slog.New(slog.NewTextHandler(logs, nil)))
	sibling := link("shop-web", "", "shop-1") // another component of shop, with the same settings as shop-api's
	sibling.Config["INFISICAL_CLIENT_ID"] = "shop-api-client"
	run(t, r, target, []step{
		{name: "a link serves its source's application", do: put(link("shop-api", "", "shop-1")),
			want: map[string]string{"shop": "project:shop-1"}},
		{name: "APPLICATION may name the source's own application exactly, as requests name it",
			do: put(link("my.app-api", "My-App", "app-1")), want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "another application without TENANT_CLAIMS", do: put(link("evil-x", "billing", "evil-1")), wantErr: "TENANT_CLAIMS",
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "TENANT_CLAIMS names the application exactly", do: put(link("storefront-api", "Shop", "store-1")), wantErr: "TENANT_CLAIMS",
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "no takeover of an application another source application serves, even where allowed",
			do: put(link("storefront-api", "shop", "store-1")), wantErr: "already served",
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "a refused re-put leaves the link as it was", do: put(link("shop-api", "billing", "shop-2")), wantErr: "TENANT_CLAIMS",
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "another component's link with other settings does not replace it", do: put(link("shop-web", "", "shop-2")),
			wantErr: "other settings", want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "with the same settings it joins", do: put(sibling),
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "deleting one keeps the other", do: del("shop-api/default"),
			want: map[string]string{"shop": "project:shop-1", "My-App": "project:app-1"}},
		{name: "deleting the last falls back to the provider", do: del("shop-web/default"),
			want: map[string]string{"My-App": "project:app-1"}},
		{name: "once free, an allowed source may serve it", do: put(link("storefront-api", "shop", "store-1")),
			want: map[string]string{"shop": "project:store-1", "My-App": "project:app-1"}},
		{name: "and its owner may not take it back while it does", do: put(link("shop-api", "", "shop-1")), wantErr: "already served",
			want: map[string]string{"shop": "project:store-1", "My-App": "project:app-1"}},
		{name: "a link with no source", do: put(Link{ID: "x", Config: map[string]string{}}), wantErr: "belongs to no application",
			want: map[string]string{"shop": "project:store-1", "My-App": "project:app-1"}},
	})
	for _, want := range []string{"evil-x", "storefront-api", "tenant link refused", "tenant link held"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the refusals are not logged with %q:\n%s", want, logs)
		}
	}
}

// A link whose settings are refused holds its application, which fails closed until the link is fixed or deleted.
// A link of another component with refused settings joins nothing: it has other settings than the link serving.
func TestRefusedSettingsFailClosed(t *testing.T) {
	target := &fakeTarget{state: map[string]string{}}
	r := New(providerSettings(t), target, slog.New(slog.DiscardHandler))
	bad := func(source string) Link {
		l := link(source, "", "shop-2")
		l.Config["INFISICAL_OIDC_TOKEN_PATH"] = "/etc/shadow"
		return l
	}
	unreadable := link("shop-api", "", "shop-1")
	unreadable.Unreadable = "its secrets could not be decrypted"
	run(t, r, target, []step{
		{name: "a first link with refused settings", do: put(bad("cart-api")), wantErr: "INFISICAL_OIDC_TOKEN_PATH",
			want: map[string]string{"cart": "refused"}},
		{name: "good link", do: put(link("shop-api", "", "shop-1")),
			want: map[string]string{"cart": "refused", "shop": "project:shop-1"}},
		{name: "another component's link with refused settings", do: put(bad("shop-web")), wantErr: "other settings",
			want: map[string]string{"cart": "refused", "shop": "project:shop-1"}},
		{name: "deleting it", do: del("shop-web/default"), want: map[string]string{"cart": "refused", "shop": "project:shop-1"}},
		{name: "the serving link put again with refused settings", do: put(bad("shop-api")), wantErr: "INFISICAL_OIDC_TOKEN_PATH",
			want: map[string]string{"cart": "refused", "shop": "refused"}},
		{name: "fixed", do: put(link("shop-api", "", "shop-1")), want: map[string]string{"cart": "refused", "shop": "project:shop-1"}},
		{name: "a link that cannot be read", do: put(unreadable), wantErr: "decrypted",
			want: map[string]string{"cart": "refused", "shop": "refused"}},
		{name: "a client that cannot be made", do: put(link("shop-api", "", "undialable")),
			want: map[string]string{"cart": "refused", "shop": "refused"}},
		{name: "deleting the last", do: del("shop-api/default"), want: map[string]string{"cart": "refused"}},
		{name: "deleting the refused one", do: del("cart-api/default"), want: map[string]string{}},
	})
}

func TestReconfigure(t *testing.T) {
	target := &fakeTarget{state: map[string]string{}}
	r := New(providerSettings(t, "TENANT_CLAIMS", "storefront-api=shop"), target, slog.New(slog.DiscardHandler))
	inherits := Link{ID: "billing-api/default", Source: "billing-api", Config: map[string]string{"INFISICAL_ENVIRONMENT": "dev"}}
	run(t, r, target, []step{
		{name: "allowed claim", do: put(link("storefront-api", "shop", "store-1")), want: map[string]string{"shop": "project:store-1"}},
		{name: "a link that inherits the provider's project", do: put(inherits),
			want: map[string]string{"shop": "project:store-1", "billing": "project:provider-project"}},
		{name: "follows the provider's settings", do: func(r *Registry) error {
			r.Reconfigure(providerSettings(t, "TENANT_CLAIMS", "storefront-api=shop", "INFISICAL_PROJECT_ID", "next-project"))
			return nil
		}, want: map[string]string{"shop": "project:store-1", "billing": "project:next-project"}},
		{name: "a claim no longer allowed is dropped", do: func(r *Registry) error {
			r.Reconfigure(providerSettings(t, "INFISICAL_PROJECT_ID", "next-project"))
			return nil
		}, want: map[string]string{"billing": "project:next-project"}},
	})
}

func TestSourceApplication(t *testing.T) {
	for source, want := range map[string]string{
		"shop-api": "shop", "my_app-api_server": "my_app", "Shop.EU-api": "shop_eu", "standalone": "standalone", "-x": "",
	} {
		if got := SourceApplication(source); got != want {
			t.Errorf("SourceApplication(%q) = %q; want %q", source, got, want)
		}
	}
}

// wadm ids normalize application names, so the components of shop-x and shop_x both have ids shop_x-...: a source
// cannot tell their links apart. A link serves one exact name; while links serve it, neither a link naming another
// name that normalizes alike nor one naming it with other settings takes anything over: they are held.
func TestNamesThatNormalizeAlike(t *testing.T) {
	target := &fakeTarget{state: map[string]string{}}
	logs := &capture.Buffer{}
	r := New(providerSettings(t), target, slog.New(slog.NewTextHandler(logs, nil)))
	victim := link("shop_x-api", "shop-x", "victim-1")
	lookalike := link("shop_x-copy", "shop-x", "victim-1") // the victim's settings, which are not secret here
	lookalike.Config["INFISICAL_CLIENT_ID"] = victim.Config["INFISICAL_CLIENT_ID"]
	changed := link("shop_x-copy", "shop-x", "evil-1")
	run(t, r, target, []step{
		{name: "a link without APPLICATION serves its source's prefix exactly", do: put(link("shop_x-evil", "", "evil-1")),
			want: map[string]string{"shop_x": "project:evil-1"}},
		{name: "a name that normalizes alike while that serves", do: put(victim), wantErr: "normalize alike",
			want: map[string]string{"shop_x": "project:evil-1", "shop-x": "refused"}},
		{name: "once the other is gone, put again", do: func(r *Registry) error {
			r.Delete("shop_x-evil/default")
			return r.Put(victim)
		}, want: map[string]string{"shop-x": "project:victim-1"}},
		{name: "the other name is held now", do: put(link("shop_x-evil", "", "evil-1")), wantErr: "normalize alike",
			want: map[string]string{"shop-x": "project:victim-1", "shop_x": "refused"}},
		{name: "a link naming the application with other settings is held", do: put(link("shop_x-evil2", "shop-x", "evil-1")),
			wantErr: "other settings", want: map[string]string{"shop-x": "project:victim-1", "shop_x": "refused"}},
		{name: "one with the same settings joins", do: put(lookalike),
			want: map[string]string{"shop-x": "project:victim-1", "shop_x": "refused"}},
		{name: "and changing them makes the links disagree: fail closed, not served with them", do: put(changed),
			want: map[string]string{"shop-x": "refused", "shop_x": "refused"}},
		{name: "a config update keeps held links held", do: func(r *Registry) error {
			r.Reconfigure(providerSettings(t))
			return nil
		}, want: map[string]string{"shop-x": "refused", "shop_x": "refused"}},
		{name: "without the changed link they agree", do: del("shop_x-copy/default"),
			want: map[string]string{"shop-x": "project:victim-1", "shop_x": "refused"}},
		{name: "the serving link gone, the held ones fail closed", do: del("shop_x-api/default"),
			want: map[string]string{"shop-x": "refused", "shop_x": "refused"}},
		{name: "the application's own link put again serves it", do: put(victim),
			want: map[string]string{"shop-x": "project:victim-1", "shop_x": "refused"}},
		{name: "deleting held links", do: func(r *Registry) error {
			r.Delete("shop_x-evil/default")
			r.Delete("shop_x-evil2/default")
			return nil
		}, want: map[string]string{"shop-x": "project:victim-1"}},
	})
	for _, want := range []string{"tenant link held", "tenant links disagree", "shop_x-evil2"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs)
		}
	}
}
