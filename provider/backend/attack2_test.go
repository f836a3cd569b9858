package backend

import (
	"net/http"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// fix-b: "a final answer drops every entry that could serve what it is about". A refused credential (token revoked,
// then the re-login refused: KindAuth, final) is about the identity, not about the folder whose fetch happened to
// see it. forgetFolder drops only that folder's entries: every other folder the identity listed stays in memory and
// is served stale for STALE_IF_ERROR as soon as Infisical stops answering, though Infisical has said this identity
// may read nothing at all. (Same for a permission 403 on one folder that is really the project's.)
func TestAttack2_RevokedCredentialsStillServeOtherFoldersStale(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")          // listing of /shop
	r.mustGet(t, "/billing/KEY", "billing-key") // listing of /billing
	clk.Advance(31 * time.Second)

	// The identity's credentials are revoked: its token is refused and so is every login.
	fake.RevokeTokens()
	fake.FailNext(fakeinfisical.RouteUniversalAuthLogin, 100, http.StatusUnauthorized, "Invalid credentials", nil)
	if _, kind, msg := r.get(t, "/billing/KEY"); kind != secrets.KindUpstreamError {
		t.Fatalf("the revoked credentials were not seen: %q %s", kind, msg)
	}
	if _, kind, _ := r.get(t, "/billing/KEY"); kind == "" {
		t.Fatalf("precondition: /billing served after the final answer")
	}
	fake.Down(true)
	t.Cleanup(func() { fake.Down(false) })
	if got, kind, _ := r.get(t, "/shop/A"); kind == "" {
		t.Fatalf("after Infisical refused this identity's credentials, the replica served /shop/A stale: %q", got)
	}
}
