package backend

import (
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
