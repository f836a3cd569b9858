package cli

import (
	"slices"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// JWT_CACHE is read once, when the secrets server starts: a managed config update that changes it (an operator
// turning the memory of verified tokens off) must be named in the WARN about settings that need a restart, not be
// ignored in silence.
func TestAttackJWTCacheChangeIsNamedAsNeedingARestart(t *testing.T) {
	prev, next := &settings.Settings{JWTCache: true}, &settings.Settings{JWTCache: false}
	if got := needsRestart(prev, next); !slices.Contains(got, "JWT_CACHE") {
		t.Fatalf("needsRestart = %v; want JWT_CACHE named", got)
	}
	if got := needsRestart(prev, prev); len(got) != 0 {
		t.Fatalf("needsRestart of unchanged settings = %v", got)
	}
}
