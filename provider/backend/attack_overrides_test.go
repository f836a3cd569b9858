package backend

import (
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// docs/security.md's own example: "With the default POLICY_OVERRIDES no policy can move either to another project or
// environment than the identity's own, so the billing rule holds without naming one". The rule
// {"application":"billing","key":"/billing/*"} names no environment, and a billing manifest that asks for
// environment=staging is indeed answered PolicyError.
//
// But expand_references and include_imports are policy properties POLICY_OVERRIDES does not govern, and the checks of
// a reference or an import origin only ask the rules, with the reference's environment: a rule that names no
// environment allows every environment. So the billing manifest's author, with a value it may write in prod:/billing
// (or an import Infisical lets it see), reads staging and dev secrets the operator confined it away from.
func TestAttack_ReferencesAndImportsEscapePolicyOverrides(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.SetSecret(testProject, "staging", "/billing", "DB_PASSWORD", "staging-secret")
	fake.SetSecret(testProject, "prod", "/billing", "REF", "${staging.billing.DB_PASSWORD}")
	fake.SetSecret(testProject, "prod", "/billing", "OWN", "prod-own")
	fake.AddImport(testProject, "prod", "/billing", "staging", "/billing")
	b := fakeBackend(t, fake, "ACCESS_RULES", `[{"application":"billing","key":"/billing/*"}]`)

	// The confinement the operator relies on.
	_, err := b.get(t, request{key: "/billing/DB_PASSWORD", app: "billing", props: map[string]string{"environment": "staging"}})
	wantWireError(t, err, secrets.KindPolicyError, "POLICY_OVERRIDES")
	if got, err := b.get(t, request{key: "/billing/OWN", app: "billing"}); err != nil || got != "prod-own" {
		t.Fatalf("own value: %q, %v", got, err)
	}

	t.Run("expand_references", func(t *testing.T) {
		got, err := b.get(t, request{key: "/billing/REF", app: "billing", props: map[string]string{"expand_references": "true"}})
		if got == "staging-secret" {
			t.Fatalf("a reference read staging, which POLICY_OVERRIDES keeps this manifest out of: %q", got)
		}
		t.Logf("%q, %v", got, err)
	})
	t.Run("include_imports", func(t *testing.T) {
		got, err := b.get(t, request{key: "/billing/DB_PASSWORD", app: "billing", props: map[string]string{"include_imports": "true"}})
		if got == "staging-secret" {
			t.Fatalf("an import served staging, which POLICY_OVERRIDES keeps this manifest out of: %q", got)
		}
		t.Logf("%q, %v", got, err)
	})
}
