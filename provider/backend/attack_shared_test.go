package backend

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

// bucketSnapshot is what anyone with read access to the shared bucket can copy: names and sealed values.
func bucketSnapshot(t *testing.T, kv jetstream.KeyValue) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		out[k] = append([]byte(nil), e.Value()...)
	}
	if len(out) == 0 {
		t.Fatal("nothing in the bucket to copy")
	}
	return out
}

func attackerBucket(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "test-shared")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// docs/security.md and docs/performance.md: "a replayed older entry ... [is served] never by a replica that has seen a newer entry for that key, or
// deleted it after Infisical said 'not found' or refused access"; "such an answer drops the entry from memory and from
// the shared tier, so no replica serves it afterwards; revoked access stays revoked"; and a bucket writer "can delete
// entries or fill the bucket, which costs Infisical calls, not secrets".
//
// Only the replica that saw the final answer remembers it. Someone who may read and write the bucket (no seed
// needed) copies the sealed entries while the value is served, and puts them back after a replica deleted them on
// Infisical's 403. Any other replica (a new one, a restarted one, one that never read that folder) then opens the
// replayed listing and, while Infisical fails (or while a 429 pause, which any tenant on the same Infisical can
// provoke, keeps calls from being sent), serves the revoked value for up to STALE_IF_ERROR.
func TestAttack_ReplayedSharedEntryServesRevokedValue(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	fake, clk, seed := tierFake(t), newTestClock(), testkeys.CurveSeed(t)
	one := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	one.mustGet(t, "/billing/KEY", "billing-key")

	kv := attackerBucket(t, url)
	copied := bucketSnapshot(t, kv) // the attacker copies the sealed entries

	// Access to the folder is revoked: Infisical answers 403, which deletes the shared entry.
	clk.Advance(31 * time.Second)
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
	one.wantKind(t, "/billing/KEY", "UpstreamError")
	if left := bucketSnapshotOrEmpty(t, kv); len(left) != 0 {
		t.Logf("entries left after the 403: %d", len(left))
	}

	// Control: without the replay, a fresh replica finds nothing to serve while Infisical is down.
	fake.Down(true)
	control := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	if got, kind, _ := control.get(t, "/billing/KEY"); kind == "" {
		t.Fatalf("control: served %q without any replay", got)
	}
	fake.Down(false)

	// The attacker puts the copies back.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k, v := range copied {
		if _, err := kv.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}

	fake.Down(true)
	t.Cleanup(func() { fake.Down(false) })
	other := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	if got, kind, _ := other.get(t, "/billing/KEY"); kind == "" {
		t.Fatalf("a replica served %q after Infisical refused access and the entry was deleted: a replayed entry "+
			"resurrected the revoked value", got)
	}
}

func bucketSnapshotOrEmpty(t *testing.T, kv jetstream.KeyValue) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string][]byte{}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return out
	}
	for k := range keys.Keys() {
		if e, err := kv.Get(ctx, k); err == nil {
			out[k] = e.Value()
		}
	}
	return out
}
