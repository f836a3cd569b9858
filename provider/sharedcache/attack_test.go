package sharedcache

import (
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

// docs/security.md: a writer of the bucket without the seed "can delete entries or fill the bucket, which costs Infisical
// calls, not secrets". It can also hold the fleet's claims. A claim is a lease key any replica waits on; the waiter
// never opens it, so it cannot tell a live lease from one an attacker planted or replayed. The attacker watches the
// bucket, sees the lease name a replica creates while it lists a folder, and after the release puts a copy back
// without a TTL: from then on every replica that misses that folder waits the whole claim wait (up to 3 s, of
// the host's 10 s per secret) before it reads Infisical itself, for every request, for ever.
func TestAttack_PlantedLeaseStallsEveryMiss(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	seed := testkeys.CurveSeed(t)
	clk := testclock.New(time.Now())
	a, b := openReplica(t, url, seed, clk), openReplica(t, url, seed, clk)
	kv := rawBucket(t, url)
	key := []byte("id\x00proj\x00prod\x00/shop")

	_, filled, release := a.Claim(ctxFor(t, 5*time.Second), key, time.Minute, 3*time.Second)
	if filled {
		t.Fatal("first claim filled")
	}
	// What the attacker observes: the one new key in the bucket, and its value.
	keys, err := kv.ListKeys(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var lease string
	for k := range keys.Keys() {
		lease = k
	}
	if lease == "" {
		t.Fatal("no lease seen")
	}
	copied := rawValue(t, kv, lease)
	release()

	if _, err := kv.Create(ctxFor(t, 5*time.Second), lease, copied); err != nil { // no TTL: it never expires
		t.Fatalf("plant: %v", err)
	}
	for i := range 2 {
		start := time.Now()
		_, filled, rel := b.Claim(ctxFor(t, 10*time.Second), key, time.Minute, 3*time.Second)
		rel()
		if d := time.Since(start); d >= 2*time.Second {
			t.Fatalf("miss %d waited %s on a lease no replica holds (filled %v): a planted lease stalls every miss",
				i+1, d.Round(100*time.Millisecond), filled)
		}
	}
}
