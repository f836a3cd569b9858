package backend

import (
	"net/http"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// docs/performance.md: "credentials or permissions that Infisical now refuses, are never served stale: such an answer drops the
// entry from memory and from the shared tier ... revoked access stays revoked".
//
// A final answer drops only the one cache entry of the call that got it. The same secret is also held by the other
// tier of the same replica: a folder listing (latest values) and exact reads (explicit versions, unsure keys). After
// Infisical refuses the identity access, one request seeing the 403 is not enough: as soon as Infisical stops
// answering (an outage, or a 429 pause, which any identity on the same Infisical URL can provoke), the same replica
// serves the revoked secret again from the other entry, for up to STALE_IF_ERROR.
func TestAttack_FinalAnswerLeavesTheSameSecretServableStale(t *testing.T) {
	t.Run("403 on the folder listing, then an explicit version", func(t *testing.T) {
		fake, clk := tierFake(t), newTestClock()
		r := newReplica(t, fake, clk, nil)
		r.mustGet(t, "/shop/A", "shop-a2") // the listing
		if got, kind, _ := r.get(t, "/shop/A", 2); kind != "" || got != "shop-a2" {
			t.Fatalf("version 2: %q %s", got, kind)
		}
		clk.Advance(31 * time.Second)
		fake.FailNext(fakeinfisical.RouteAll, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
		r.wantKind(t, "/shop/A", secrets.KindUpstreamError) // access revoked: seen, and final
		fake.Down(true)
		t.Cleanup(func() { fake.Down(false) })
		if got, kind, _ := r.get(t, "/shop/A", 2); kind == "" {
			t.Fatalf("after Infisical refused access to /shop, the same replica served /shop/A (version 2) stale: %q", got)
		}
	})
	t.Run("403 on an exact read, then the listing", func(t *testing.T) {
		fake, clk := tierFake(t), newTestClock()
		r := newReplica(t, fake, clk, nil)
		r.mustGet(t, "/shop/A", "shop-a2") // the listing
		clk.Advance(31 * time.Second)
		fake.FailNext(fakeinfisical.RouteAll, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
		if _, kind, _ := r.get(t, "/shop/A", 2); kind != secrets.KindUpstreamError { // access revoked: seen, and final
			t.Fatalf("the 403: %s", kind)
		}
		fake.Down(true)
		t.Cleanup(func() { fake.Down(false) })
		if got, kind, _ := r.get(t, "/shop/A"); kind == "" {
			t.Fatalf("after Infisical refused access to /shop/A, the same replica served it stale from the listing: %q", got)
		}
	})
}
