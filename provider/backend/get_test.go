package backend

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// lifecycle is the rest of Upstream for fakes that only answer reads: logins succeed, and Retire and Close are
// recorded.
type lifecycle struct {
	retired, closed atomic.Bool
}

func (*lifecycle) Login(context.Context) error { return nil }
func (*lifecycle) Healthy() error              { return nil }
func (l *lifecycle) Retire()                   { l.retired.Store(true) }
func (l *lifecycle) Close()                    { l.closed.Store(true) }

// funcUpstream answers reads with fn and records them.
type funcUpstream struct {
	lifecycle
	fn    func(infisical.SecretRef) (infisical.Secret, error)
	mu    sync.Mutex
	reads []infisical.SecretRef
}

func (f *funcUpstream) GetSecret(_ context.Context, ref infisical.SecretRef) (infisical.Secret, error) {
	f.mu.Lock()
	f.reads = append(f.reads, ref)
	f.mu.Unlock()
	return f.fn(ref)
}

// store is a project's secrets by environment, folder and name, answered the way Infisical does without imports.
type store map[string]string // "env:/folder/NAME" -> raw value

func (s store) read(ref infisical.SecretRef) (infisical.Secret, error) {
	v, ok := s[ref.Environment+":"+joinKey(ref.Path, ref.Name)]
	if !ok {
		return infisical.Secret{}, infisical.ErrNotFound
	}
	return infisical.Secret{Name: ref.Name, Value: v, Path: ref.Path, Environment: ref.Environment, Version: 1}, nil
}

const testIssuer = "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW"

// newTestBackend serves project p, environment prod, from up (and tenants from dial, when given); kv are extra
// provider settings.
func newTestBackend(t *testing.T, up Upstream, dial Dialer, kv ...string) *Backend {
	t.Helper()
	m := map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s",
		"TRUSTED_ISSUERS": testIssuer}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	s, err := settings.Load(settings.Maps(m, nil))
	if err != nil {
		t.Fatal(err)
	}
	if dial == nil {
		dial = func(settings.Infisical) (Upstream, error) { return up, nil }
	}
	b, err := New(Config{Settings: s, Dial: dial, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// request is one get as a host sends it.
type request struct {
	key, app string
	props    map[string]string
}

func (b *Backend) get(t *testing.T, r request) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	props := r.props
	if props == nil {
		props = map[string]string{}
	}
	sec, err := b.Get(ctx, &secrets.Verified{
		Request:     &secrets.Request{Key: r.key},
		Entity:      &wascap.Claims{Issuer: testIssuer, Subject: "MSUBJECT", Name: "api"},
		Application: r.app,
		Policy:      secrets.Policy{Properties: props},
	})
	if err != nil {
		return "", err
	}
	return *sec.StringSecret, nil
}

func wantWireError(t *testing.T, err error, kind secrets.ErrorKind, contains string) {
	t.Helper()
	var werr *secrets.Error
	if !errors.As(err, &werr) || werr.Kind != kind || !strings.Contains(werr.Message, contains) {
		t.Fatalf("error = %v; want %s containing %q", err, kind, contains)
	}
}

// A refused tenant fails closed: neither the provider's identity nor the tenant it replaced answers its requests.
func TestRefusedTenantFailsClosed(t *testing.T) {
	provider := &funcUpstream{fn: store{"prod:/DB": "provider-value"}.read}
	tenant := &funcUpstream{fn: store{"prod:/DB": "tenant-value"}.read}
	b := newTestBackend(t, nil, func(s settings.Infisical) (Upstream, error) {
		if s.ProjectID == "shop-project" {
			return tenant, nil
		}
		return provider, nil
	})
	shop := request{key: "DB", app: "shop"}
	ts := b.Settings().Infisical
	ts.ProjectID = "shop-project"
	if err := b.SetTenant("shop", ts); err != nil {
		t.Fatal(err)
	}
	if got, err := b.get(t, shop); err != nil || got != "tenant-value" {
		t.Fatalf("tenant: %q, %v", got, err)
	}
	b.RefuseTenant("shop", "its tenant link's settings were refused")
	_, err := b.get(t, shop)
	wantWireError(t, err, secrets.KindUpstreamError, "tenant link")
	if got, err := b.get(t, request{key: "DB", app: "billing"}); err != nil || got != "provider-value" {
		t.Fatalf("another application: %q, %v", got, err)
	}
	b.RemoveTenant("shop")
	if got, err := b.get(t, shop); err != nil || got != "provider-value" {
		t.Fatalf("after the refused tenant is removed: %q, %v", got, err)
	}
}

// A requester writes the secret policy, so project_id, environment and secret_path overrides are its choice: with
// ACCESS_RULES set, none is allowed unless POLICY_OVERRIDES says so, even where no rule names the environment.
func TestPolicyOverridesNeedTheOperatorsLeave(t *testing.T) {
	values := store{"prod:/shop/DB": "prod-value", "dev:/shop/DB": "dev-value", "prod:/other/shop/DB": "other-value"}
	up := &funcUpstream{fn: values.read}
	rules := `[{"key":"/shop/**"},{"key":"/other/**"}]`
	tests := []struct {
		name     string
		settings []string
		key      string // "" = /shop/DB
		props    map[string]string
		want     string // value; "" = PolicyError naming the property
		prop     string
	}{
		{name: "rules set: environment override refused", settings: []string{"ACCESS_RULES", rules},
			props: map[string]string{"environment": "dev"}, prop: "environment"},
		{name: "rules set: project override refused", settings: []string{"ACCESS_RULES", rules},
			props: map[string]string{"project_id": "another"}, prop: "project_id"},
		{name: "rules set: secret_path moves only relative keys, which the rules see resolved",
			settings: []string{"ACCESS_RULES", rules}, key: "shop/DB", props: map[string]string{"secret_path": "/other"}, want: "other-value"},
		{name: "rules set, only project_id allowed", settings: []string{"ACCESS_RULES", rules, "POLICY_OVERRIDES", "project_id"},
			key: "shop/DB", props: map[string]string{"secret_path": "/other"}, prop: "secret_path"},
		{name: "rules set: the default value is no override", settings: []string{"ACCESS_RULES", rules},
			props: map[string]string{"environment": "prod", "secret_path": "/"}, want: "prod-value"},
		{name: "rules set, environment allowed", settings: []string{"ACCESS_RULES", rules, "POLICY_OVERRIDES", "environment"},
			props: map[string]string{"environment": "dev"}, want: "dev-value"},
		{name: "no rules: every override, as before", props: map[string]string{"environment": "dev"}, want: "dev-value"},
		{name: "no rules, none allowed", settings: []string{"POLICY_OVERRIDES", "none"},
			props: map[string]string{"secret_path": "/other"}, prop: "secret_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTestBackend(t, up, nil, tt.settings...)
			key := cmp.Or(tt.key, "/shop/DB")
			got, err := b.get(t, request{key: key, props: tt.props})
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			wantWireError(t, err, secrets.KindPolicyError, tt.prop)
			if !strings.Contains(err.Error(), "POLICY_OVERRIDES") {
				t.Fatalf("error %q does not name the setting that allows it", err)
			}
		})
	}
}
