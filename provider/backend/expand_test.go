package backend

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// fakeBackend reads from a fake Infisical through the real client; kv are extra provider settings.
func fakeBackend(t *testing.T, fake *fakeinfisical.Server, kv ...string) *Backend {
	t.Helper()
	fake.AddIdentity(testClient, testSecret, testProject)
	kv = append(kv, "INFISICAL_BASE_URL", fake.URL, "INFISICAL_PROJECT_ID", testProject,
		"INFISICAL_CLIENT_ID", testClient, "INFISICAL_CLIENT_SECRET", testSecret)
	return newTestBackend(t, nil, Dial(5*time.Second, slog.New(slog.DiscardHandler)), kv...)
}

// Infisical expands ${env.folder.NAME} with the identity's rights, across folders and environments: an expanded
// value must never carry a secret the access rules would refuse the requester.
func TestExpandedReferencesAreCheckedAgainstTheRules(t *testing.T) {
	fake := fakeinfisical.New(t)
	set := func(env, folder, name, value string) { fake.SetSecret(testProject, env, folder, name, value) }
	set("prod", "/billing", "DB_PASSWORD", "billing-secret")
	set("dev", "/shop", "DEV_ONLY", "dev-secret")
	set("prod", "/shop", "PASSWORD", "shop-pw")
	set("prod", "/shop", "NAME", "shop")
	set("prod", "/shop", "OK_URL", "postgres://app:${PASSWORD}@db/${prod.shop.NAME}")
	set("prod", "/shop", "STOLEN_URL", "postgres://app:${prod.billing.DB_PASSWORD}@db")
	set("prod", "/shop", "HOP", "${prod.billing.DB_PASSWORD}")
	set("prod", "/shop", "NESTED", "x-${HOP}")
	set("prod", "/shop", "CROSS_ENV", "${dev.shop.DEV_ONLY}")
	set("prod", "/shop", "DANGLING", "a-${prod.shop.MISSING}-b")
	set("prod", "/shop", "LOOP_A", "a${LOOP_B}")
	set("prod", "/shop", "LOOP_B", "b${LOOP_A}")
	b := fakeBackend(t, fake, "ACCESS_RULES", `[{"key":"/shop/**","environment":"prod"}]`)
	expand := map[string]string{"expand_references": "true"}

	tests := []struct {
		key   string
		props map[string]string
		want  string // "" = Unauthorized
	}{
		{key: "/shop/OK_URL", props: expand, want: "postgres://app:shop-pw@db/shop"},
		{key: "/shop/STOLEN_URL", props: expand},
		{key: "/shop/NESTED", props: expand},
		{key: "/shop/CROSS_ENV", props: expand},
		{key: "/shop/DANGLING", props: expand, want: "a-${prod.shop.MISSING}-b"},
		{key: "/shop/STOLEN_URL", want: "postgres://app:${prod.billing.DB_PASSWORD}@db"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := b.get(t, request{key: tt.key, props: tt.props})
			if strings.Contains(got, "billing-secret") || strings.Contains(got, "dev-secret") {
				t.Fatalf("the value carries a secret the rules refuse: %q", got)
			}
			if tt.want == "" {
				wantWireError(t, err, secrets.KindUnauthorized, "")
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// A reference loop ends; it never hangs or grows without bound.
	if got, err := b.get(t, request{key: "/shop/LOOP_A", props: expand}); err == nil && len(got) > 1<<20 {
		t.Fatalf("a reference loop produced %d bytes", len(got))
	}
}

// With include_imports the rules must allow where an imported value really lives. Infisical names only the
// first-level import of a nested one, and older versions name no folder at all: a value whose origin cannot be
// established is not served.
func TestImportedValuesNeedAnEstablishedOrigin(t *testing.T) {
	rules := `[{"key":"/shop/**"},{"key":"/mid/**"}]`
	imports := map[string]string{"include_imports": "true"}
	tests := []struct {
		name  string
		opts  []fakeinfisical.Option
		setup func(f *fakeinfisical.Server)
		key   string
		want  string // "" = Unauthorized
	}{
		{name: "first-level import the rules allow", key: "/shop/MID_TOKEN", want: "mid-token",
			setup: func(f *fakeinfisical.Server) { f.AddImport(testProject, "prod", "/shop", "prod", "/mid") }},
		{name: "nested import reported as the first level", key: "/shop/DB_PASSWORD",
			setup: func(f *fakeinfisical.Server) {
				f.AddImport(testProject, "prod", "/shop", "prod", "/mid")
				f.AddImport(testProject, "prod", "/mid", "prod", "/billing")
			}},
		{name: "older Infisical names no folder", key: "/shop/DB_PASSWORD", opts: []fakeinfisical.Option{fakeinfisical.WithoutSecretPath()},
			setup: func(f *fakeinfisical.Server) { f.AddImport(testProject, "prod", "/shop", "prod", "/billing") }},
		{name: "older Infisical, the folder's own secret", key: "/shop/OWN", want: "own",
			opts:  []fakeinfisical.Option{fakeinfisical.WithoutSecretPath()},
			setup: func(*fakeinfisical.Server) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakeinfisical.New(t, tt.opts...)
			fake.SetSecret(testProject, "prod", "/billing", "DB_PASSWORD", "billing-secret")
			fake.SetSecret(testProject, "prod", "/billing", "SHADOWED", "billing-shadowed")
			fake.SetSecret(testProject, "prod", "/mid", "MID_TOKEN", "mid-token")
			fake.SetSecret(testProject, "prod", "/shop", "OWN", "own")
			tt.setup(fake)
			b := fakeBackend(t, fake, "ACCESS_RULES", rules)
			got, err := b.get(t, request{key: tt.key, props: imports})
			if strings.Contains(got, "billing") {
				t.Fatalf("served a value from a folder the rules refuse: %q", got)
			}
			if tt.want == "" {
				wantWireError(t, err, secrets.KindUnauthorized, "")
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// Expansion is bounded: a value cannot make one request read without end, nor grow past what a reply can carry.
func TestExpansionIsBounded(t *testing.T) {
	fake := fakeinfisical.New(t)
	set := func(name, value string) { fake.SetSecret(testProject, "prod", "/", name, value) }
	var many strings.Builder
	for i := range maxReferences + 1 {
		name := "R" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		set(name, "v")
		many.WriteString("${" + name + "}")
	}
	set("MANY", many.String())
	set("L0", strings.Repeat("x", 4096))
	for i := 1; i <= 9; i++ {
		set("L"+string(rune('0'+i)), "${L"+string(rune('0'+i-1))+"}${L"+string(rune('0'+i-1))+"}")
	}
	b := fakeBackend(t, fake)
	expand := map[string]string{"expand_references": "true"}
	for key, want := range map[string]string{"MANY": "refers to more than", "L9": "expand to more than"} {
		_, err := b.get(t, request{key: key, props: expand})
		wantWireError(t, err, secrets.KindOther, want)
	}
	if got, err := b.get(t, request{key: "L3", props: expand}); err != nil || len(got) != 8*4096 {
		t.Fatalf("L3: %d bytes, %v", len(got), err)
	}
}

// An imported value's relative references resolve in the folder it comes from, and are checked there.
func TestImportedValueReferencesResolveWhereItLives(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.SetSecret(testProject, "prod", "/common", "URL", "db://${HOST}")
	fake.SetSecret(testProject, "prod", "/common", "HOST", "common-host")
	fake.SetSecret(testProject, "prod", "/shop", "HOST", "shop-host")
	fake.AddImport(testProject, "prod", "/shop", "prod", "/common")
	b := fakeBackend(t, fake, "ACCESS_RULES", `[{"key":"/shop/**"},{"key":"/common/**"}]`)
	got, err := b.get(t, request{key: "/shop/URL", props: map[string]string{"include_imports": "true", "expand_references": "true"}})
	if err != nil || got != "db://common-host" {
		t.Fatalf("got %q, %v; want db://common-host", got, err)
	}
}

// Without ACCESS_RULES an imported value lives where Infisical says, as with rules, but nothing is authorized and no
// confirmation read is made: the import's listing and the folder its reference resolves in, nothing more.
func TestImportedValueOriginWithoutRulesCostsNoRead(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.SetSecret(testProject, "prod", "/common", "URL", "db://${HOST}")
	fake.SetSecret(testProject, "prod", "/common", "HOST", "common-host")
	fake.SetSecret(testProject, "prod", "/shop", "HOST", "shop-host")
	fake.AddImport(testProject, "prod", "/shop", "prod", "/common")
	b := fakeBackend(t, fake)
	got, err := b.get(t, request{key: "/shop/URL", props: map[string]string{"include_imports": "true", "expand_references": "true"}})
	if err != nil || got != "db://common-host" {
		t.Fatalf("got %q, %v; want db://common-host", got, err)
	}
	wantCalls(t, fake, calls{lists: 2}) // /shop with imports, then /common for ${HOST}
}

// POLICY_OVERRIDES holds for references and imports as it does for the policy: unless it allows environment, a
// reference or an imported value from another environment is refused before anything is read there, whatever the
// rules say (and with no rules at all); where it allows environment, the rules decide. A folder of the same
// environment stays the rules' business. An import whose environment Infisical does not name is confirmed by a read.
func TestReferencesAndImportsStayInTheRequestsEnvironment(t *testing.T) {
	values := store{"prod:/shop/REF": "${staging.shop.KEY}", "prod:/shop/LOCAL": "${prod.other.KEY}",
		"staging:/shop/KEY": "staging-key", "prod:/other/KEY": "other-key"}
	expand := map[string]string{"expand_references": "true"}
	imports := map[string]string{"include_imports": "true"}
	tests := []struct {
		name     string
		settings []string
		key      string
		props    map[string]string
		from     string // the environment Infisical names for /shop/IMPORTED, imported from staging:/shop
		want     string // "" = Unauthorized
		reads    int
	}{
		{name: "no rules, no overrides: reference to staging", settings: []string{"POLICY_OVERRIDES", "none"},
			key: "/shop/REF", props: expand, reads: 1},
		{name: "no rules, no overrides: reference to another folder", settings: []string{"POLICY_OVERRIDES", "none"},
			key: "/shop/LOCAL", props: expand, want: "other-key", reads: 2},
		{name: "no rules, default overrides: reference to staging", key: "/shop/REF", props: expand, want: "staging-key", reads: 2},
		{name: "rules set, environment allowed: the rules decide, and allow",
			settings: []string{"ACCESS_RULES", `[{"key":"/shop/*"}]`, "POLICY_OVERRIDES", "environment"},
			key:      "/shop/REF", props: expand, want: "staging-key", reads: 2},
		{name: "rules set, environment allowed: the rules decide, and refuse",
			settings: []string{"ACCESS_RULES", `[{"key":"/shop/*","environment":"prod"}]`, "POLICY_OVERRIDES", "environment"},
			key:      "/shop/REF", props: expand, reads: 1},
		{name: "no rules, no overrides: import from staging", settings: []string{"POLICY_OVERRIDES", "none"},
			key: "/shop/IMPORTED", props: imports, from: "staging", reads: 1},
		{name: "no rules, no overrides: import from an environment Infisical does not name",
			settings: []string{"POLICY_OVERRIDES", "none"}, key: "/shop/IMPORTED", props: imports, reads: 2},
		{name: "no rules, default overrides: import from staging", key: "/shop/IMPORTED", props: imports, from: "staging",
			want: "staging-key", reads: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &funcUpstream{fn: func(ref infisical.SecretRef) (infisical.Secret, error) {
				if ref.Name == "IMPORTED" && ref.IncludeImports {
					return infisical.Secret{Name: ref.Name, Value: "staging-key", Path: "/shop", Environment: tt.from, Version: 1}, nil
				}
				return values.read(ref)
			}}
			b := newTestBackend(t, up, nil, tt.settings...)
			got, err := b.get(t, request{key: tt.key, props: tt.props})
			if tt.want == "" {
				wantWireError(t, err, secrets.KindUnauthorized, "")
			} else if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if len(up.reads) != tt.reads {
				t.Fatalf("Infisical saw %d reads (%+v); want %d", len(up.reads), up.reads, tt.reads)
			}
			for _, r := range up.reads[1:] {
				if tt.want == "" && r.Environment != "prod" {
					t.Fatalf("a refused request read %s:%s/%s", r.Environment, r.Path, r.Name)
				}
			}
		})
	}
}
