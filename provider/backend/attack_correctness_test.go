package backend

import (
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
)

// Correctness: an imported value's relative ${NAME} resolves in the folder the value comes from (Infisical's rule,
// and what TestImportedValueReferencesResolveWhereItLives holds with ACCESS_RULES). Without ACCESS_RULES checkOrigin
// returns the folder asked for, not the import's, so the same request expands ${HOST} against /shop: the value served
// differs from Infisical's and depends on whether rules are set.
func TestAttack_ImportedValueReferencesWithoutRulesResolveInTheWrongFolder(t *testing.T) {
	fake := fakeinfisical.New(t)
	fake.SetSecret(testProject, "prod", "/common", "URL", "db://${HOST}")
	fake.SetSecret(testProject, "prod", "/common", "HOST", "common-host")
	fake.SetSecret(testProject, "prod", "/shop", "HOST", "shop-host")
	fake.AddImport(testProject, "prod", "/shop", "prod", "/common")
	b := fakeBackend(t, fake) // no ACCESS_RULES
	got, err := b.get(t, request{key: "/shop/URL", props: map[string]string{"include_imports": "true", "expand_references": "true"}})
	if err != nil || got != "db://common-host" {
		t.Fatalf("got %q, %v; want db://common-host (as with ACCESS_RULES, and as Infisical expands it)", got, err)
	}
}
