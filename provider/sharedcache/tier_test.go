package sharedcache

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

const bucket = "test-cache"

// replica is one process's view of the bucket.
type replica struct {
	*Tier
	logs *capture.Buffer
}

func openReplica(t *testing.T, url, seed string, clk *testclock.Clock) replica {
	t.Helper()
	logs := &capture.Buffer{}
	nc := natstest.Connect(t, url)
	tier := Open(ctxFor(t, 5*time.Second), nc, Config{Bucket: bucket, Seed: seed, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if tier == nil {
		t.Fatalf("Open returned no tier:\n%s", logs)
	}
	return replica{Tier: tier, logs: logs}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rawBucket is the bucket as anyone on the NATS account sees it.
func rawBucket(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctxFor(t, 5*time.Second), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func rawValue(t *testing.T, kv jetstream.KeyValue, name string) []byte {
	t.Helper()
	e, err := kv.Get(ctxFor(t, 5*time.Second), name)
	if err != nil {
		t.Fatalf("raw get %s: %v", name, err)
	}
	return e.Value()
}

func rawPut(t *testing.T, kv jetstream.KeyValue, name string, value []byte) {
	t.Helper()
	if _, err := kv.Put(ctxFor(t, 5*time.Second), name, value); err != nil {
		t.Fatalf("raw put %s: %v", name, err)
	}
}

func TestOneReplicasReadServesTheOthers(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	seed := testkeys.CurveSeed(t)
	clk := testclock.New(time.Now())
	a, b := openReplica(t, url, seed, clk), openReplica(t, url, seed, clk)
	key := []byte("id\x00proj\x00prod\x00/shop")
	at := clk.Now()
	a.Put(ctxFor(t, 5*time.Second), key, []byte(`{"DB_PASSWORD":"pw"}`), at, time.Minute)
	e, ok := b.Get(ctxFor(t, 5*time.Second), key, 30*time.Second)
	if !ok || string(e.Data) != `{"DB_PASSWORD":"pw"}` || !e.FetchedAt.Equal(at.UTC()) {
		t.Fatalf("the other replica got (%q, %v, %v); want the entry and its fetch time", e.Data, e.FetchedAt, ok)
	}
	// As old as it was read: past maxAge it is no hit, however recently it was written.
	clk.Advance(30 * time.Second)
	if _, ok := b.Get(ctxFor(t, 5*time.Second), key, 30*time.Second); ok {
		t.Fatal("an entry read 30s ago served as younger than 30s")
	}
	if e, ok := b.Get(ctxFor(t, 5*time.Second), key, 10*time.Minute); !ok || string(e.Data) == "" {
		t.Fatal("an entry within a longer maxAge (stale-if-error) was not served")
	}
	// Deleted by one replica: gone for all.
	b.Delete(ctxFor(t, 5*time.Second), key)
	if _, ok := a.Get(ctxFor(t, 5*time.Second), key, time.Hour); ok {
		t.Fatal("a deleted entry was served")
	}
}

// Everything the bucket holds, names, values and headers, shows nothing of what was cached.
func TestNothingPlaintextInJetStream(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	clk := testclock.New(time.Now())
	r := openReplica(t, url, testkeys.CurveSeed(t), clk)
	secrets := []string{"proj-payments", "prod", "/payments/eu", "STRIPE_API_KEY", "sk_live_abcdef123456", "identity-42"}
	key := []byte(strings.Join(secrets[:4], "\x00") + "\x00" + secrets[5])
	r.Put(ctxFor(t, 5*time.Second), key, []byte(`{"STRIPE_API_KEY":"`+secrets[4]+`"}`), clk.Now(), time.Minute)
	r.Claim(ctxFor(t, 5*time.Second), key, time.Minute, time.Second) // leaves a claim behind

	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctxFor(t, 5*time.Second), "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var everything bytes.Buffer
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctxFor(t, 5*time.Second), seq)
		if err != nil {
			continue // purged
		}
		everything.WriteString(m.Subject)
		for k, vs := range m.Header {
			everything.WriteString(k + strings.Join(vs, ","))
		}
		everything.Write(m.Data)
	}
	if info.State.Msgs < 2 || everything.Len() == 0 {
		t.Fatalf("%d messages in the bucket; want the entry and the claim", info.State.Msgs)
	}
	for _, s := range secrets {
		for _, form := range []string{s, strings.ToLower(s), strings.Trim(s, "/")} {
			if bytes.Contains(everything.Bytes(), []byte(form)) {
				t.Errorf("the bucket shows %q", form)
			}
		}
	}
}

// Anyone on the NATS account can write the bucket: entries moved between keys, replayed, made up, or sealed with
// another seed are rejected, never served, and the rejection is logged without content.
func TestSwappedReplayedAndForgedEntriesAreRejected(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	seed := testkeys.CurveSeed(t)
	clk := testclock.New(time.Now())
	r := openReplica(t, url, seed, clk)
	raw := rawBucket(t, url)
	shop, billing := []byte("id\x00p\x00prod\x00/shop"), []byte("id\x00p\x00prod\x00/billing")
	ctx := ctxFor(t, 30*time.Second)

	r.Put(ctx, shop, []byte("shop-v1"), clk.Now(), time.Hour)
	r.Put(ctx, billing, []byte("billing"), clk.Now(), time.Hour)
	shopV1 := rawValue(t, raw, r.sealer.Name(shop))

	t.Run("swapped", func(t *testing.T) {
		rawPut(t, raw, r.sealer.Name(billing), shopV1)
		if e, ok := r.Get(ctx, billing, time.Hour); ok {
			t.Fatalf("shop's entry under billing's key was served: %q", e.Data)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		clk.Advance(time.Second)
		r.Put(ctx, shop, []byte("shop-v2"), clk.Now(), time.Hour) // rotated
		rawPut(t, raw, r.sealer.Name(shop), shopV1)
		if e, ok := r.Get(ctx, shop, time.Hour); ok {
			t.Fatalf("a replayed older entry was served: %q", e.Data)
		}
		// A replica that never saw v2 judges the replay by its sealed age: past maxAge it is no hit either.
		fresh := openReplica(t, url, seed, clk)
		clk.Advance(time.Minute)
		if _, ok := fresh.Get(ctx, shop, time.Minute); ok {
			t.Fatal("a replayed entry served as younger than its sealed fetch time")
		}
	})
	t.Run("forged", func(t *testing.T) {
		forged := append([]byte{formatV1}, bytes.Repeat([]byte{0x42}, 80)...)
		rawPut(t, raw, r.sealer.Name(shop), forged)
		if e, ok := r.Get(ctx, shop, time.Hour); ok {
			t.Fatalf("a forged entry was served: %q", e.Data)
		}
	})
	t.Run("another seed", func(t *testing.T) {
		other := openReplica(t, url, testkeys.CurveSeed(t), clk)
		other.Put(ctx, shop, []byte("theirs"), clk.Now(), time.Hour)
		// Under their names, which ours do not even find; moved under ours, it does not open.
		rawPut(t, raw, r.sealer.Name(shop), rawValue(t, raw, other.sealer.Name(shop)))
		if e, ok := r.Get(ctx, shop, time.Hour); ok {
			t.Fatalf("an entry sealed with another seed was served: %q", e.Data)
		}
	})
	if n := capture.CountLines(r.logs.String(), "shared cache entry rejected"); n < 1 {
		t.Fatalf("no rejection logged:\n%s", r.logs)
	}
	for _, leak := range []string{"shop-v1", "shop-v2", "billing"} {
		if strings.Contains(r.logs.String(), leak) {
			t.Fatalf("the log shows %q", leak)
		}
	}
}

func TestSharingOffSaysWhyOnce(t *testing.T) {
	plain, _ := natstest.Start(t) // no JetStream
	withJS, _ := natstest.StartJetStream(t)
	tests := []struct {
		name string
		url  string
		cfg  Config
		want string
	}{
		{name: "setting", url: withJS, cfg: Config{Disabled: true, Seed: testkeys.CurveSeed(t)}, want: "SHARED_CACHE=false"},
		{name: "no seed", url: withJS, cfg: Config{}, want: "SERVER_XKEY_SEED"},
		{name: "no JetStream", url: plain, cfg: Config{Seed: testkeys.CurveSeed(t)}, want: "no JetStream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &capture.Buffer{}
			tt.cfg.Bucket, tt.cfg.Logger = bucket, slog.New(slog.NewTextHandler(logs, nil))
			tier := Open(ctxFor(t, 10*time.Second), natstest.Connect(t, tt.url), tt.cfg)
			if tier != nil {
				t.Fatal("Open returned a tier")
			}
			if n := capture.CountLines(logs.String(), "shared cache off", tt.want); n != 1 {
				t.Fatalf("%d lines say why; want 1:\n%s", n, logs)
			}
			// A nil tier is a tier that always misses.
			tier.Put(ctxFor(t, time.Second), []byte("k"), []byte("v"), time.Now(), time.Minute)
			if _, ok := tier.Get(ctxFor(t, time.Second), []byte("k"), time.Hour); ok {
				t.Fatal("a nil tier hit")
			}
			tier.Delete(ctxFor(t, time.Second), []byte("k"))
			if _, filled, release := tier.Claim(ctxFor(t, time.Second), []byte("k"), time.Hour, time.Second); filled || release == nil {
				t.Fatal("a nil tier's claim")
			}
		})
	}
}

// JetStream trouble is a miss within the operation's timeout, logged once, and the tier is skipped for a while
// rather than costing every request its timeout.
func TestJetStreamTroubleIsAMiss(t *testing.T) {
	url, srv := natstest.StartJetStream(t)
	clk := testclock.New(time.Now())
	r := openReplica(t, url, testkeys.CurveSeed(t), clk)
	key := []byte("k")
	r.Put(ctxFor(t, 5*time.Second), key, []byte("v"), clk.Now(), time.Hour)
	srv.Shutdown()

	// The caller's deadline is far beyond the operation timeout: Get must come back with a miss well before it.
	ctx := ctxFor(t, time.Minute)
	if _, ok := r.Get(ctx, key, time.Hour); ok {
		t.Fatal("a hit with JetStream gone")
	}
	if ctx.Err() != nil {
		t.Fatal("Get waited out the caller's deadline: it is not bounded by its operation timeout")
	}
	r.Put(ctx, key, []byte("v2"), clk.Now(), time.Hour) // skipped: the tier is down
	if n := capture.CountLines(r.logs.String(), "shared cache unavailable"); n != 1 {
		t.Fatalf("%d unavailability lines; want 1:\n%s", n, r.logs)
	}
}

// One replica fetches while the others wait for its entry: a fleet asks Infisical once.
func TestClaimLetsOneReplicaFetch(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	seed := testkeys.CurveSeed(t)
	clk := testclock.New(time.Now())
	a, b := openReplica(t, url, seed, clk), openReplica(t, url, seed, clk)
	key := []byte("id\x00p\x00prod\x00/folder")
	ctx := ctxFor(t, 30*time.Second)

	_, filled, release := a.Claim(ctx, key, time.Minute, 5*time.Second)
	if filled {
		t.Fatal("the first claim was filled")
	}
	type result struct {
		e      Entry
		filled bool
	}
	got := make(chan result, 1)
	go func() {
		e, filled, rel := b.Claim(ctx, key, time.Minute, 20*time.Second)
		rel()
		got <- result{e, filled}
	}()
	a.Put(ctx, key, []byte("listed"), clk.Now(), time.Hour)
	release()
	r := <-got
	if !r.filled || string(r.e.Data) != "listed" {
		t.Fatalf("the waiting replica got (%q, filled %v); want the first one's entry", r.e.Data, r.filled)
	}

	// A claim given up without an entry (the fetch failed) sends the waiter to fetch itself.
	other := []byte("id\x00p\x00prod\x00/other")
	_, _, release = a.Claim(ctx, other, time.Minute, 5*time.Second)
	go func() {
		e, filled, rel := b.Claim(ctx, other, time.Minute, 20*time.Second)
		rel()
		got <- result{e, filled}
	}()
	release()
	if r := <-got; r.filled {
		t.Fatal("a released claim without an entry was reported filled")
	}
	if ctx.Err() != nil {
		t.Fatal("waited out the whole claim instead of noticing the release")
	}
}

// A lease no replica can be holding is not waited for: the miss claims the entry itself at once, so that the next
// miss waits for it rather than for the planted lease.
func TestLeasesNoReplicaHoldsAreNotWaitedFor(t *testing.T) {
	const wait = 20 * time.Second // far longer than any of these claims may take
	tests := []struct {
		name  string
		plant func(t *testing.T, clk *testclock.Clock, put func(value []byte, ttl string), live []byte)
	}{
		{name: "replayed without a TTL", plant: func(_ *testing.T, _ *testclock.Clock, put func([]byte, string), live []byte) {
			put(live, "")
		}},
		{name: "replayed with a TTL of never", plant: func(_ *testing.T, _ *testclock.Clock, put func([]byte, string), live []byte) {
			put(live, "never")
		}},
		{name: "replayed with a TTL after its time", plant: func(_ *testing.T, clk *testclock.Clock, put func([]byte, string), live []byte) {
			clk.Advance(wait + leaseSkew)
			put(live, "30s")
		}},
		{name: "made up", plant: func(_ *testing.T, _ *testclock.Clock, put func([]byte, string), live []byte) {
			put(append([]byte{formatV1}, bytes.Repeat([]byte{7}, len(live)-1)...), "30s")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := natstest.StartJetStream(t)
			seed := testkeys.CurveSeed(t)
			clk := testclock.New(time.Now())
			a, b, c := openReplica(t, url, seed, clk), openReplica(t, url, seed, clk), openReplica(t, url, seed, clk)
			key := []byte("id\x00p\x00prod\x00/folder")
			ctx := ctxFor(t, 30*time.Second)
			lease := a.sealer.LeaseName(key)

			_, _, release := a.Claim(ctx, key, time.Minute, wait)
			live := rawValue(t, rawBucket(t, url), lease)
			release()
			js, err := jetstream.New(natstest.Connect(t, url))
			if err != nil {
				t.Fatal(err)
			}
			tt.plant(t, clk, func(value []byte, ttl string) {
				m := nats.NewMsg("$KV." + bucket + "." + lease)
				m.Data = value
				if ttl != "" {
					m.Header.Set(jetstream.MsgTTLHeader, ttl)
				}
				if _, err := js.PublishMsg(ctx, m); err != nil {
					t.Fatalf("plant: %v", err)
				}
			}, live)

			start := time.Now()
			_, filled, release := b.Claim(ctx, key, time.Minute, wait)
			if filled || time.Since(start) >= wait/2 {
				t.Fatalf("the miss waited %s on a lease no replica holds (filled %v)", time.Since(start), filled)
			}
			if !strings.Contains(b.logs.String(), "lease not waited for") {
				t.Errorf("the ignored lease is not logged:\n%s", b.logs)
			}
			// b took the claim: the next miss waits for b's entry.
			if honour, _, err := c.judgeLease(ctx, key, lease, wait); err != nil || honour <= 0 {
				t.Fatalf("the lease b took is not honoured (%v, %v)", honour, err)
			}
			type result struct {
				e      Entry
				filled bool
			}
			got := make(chan result, 1)
			go func() {
				e, filled, rel := c.Claim(ctx, key, time.Minute, wait)
				rel()
				got <- result{e, filled}
			}()
			b.Put(ctx, key, []byte("listed"), clk.Now(), time.Hour)
			release()
			if r := <-got; !r.filled || string(r.e.Data) != "listed" {
				t.Fatalf("the next miss got (%q, filled %v); want the entry of the replica that took the claim", r.e.Data, r.filled)
			}
		})
	}
}

func TestOpenCreatesTheBucketOnce(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	seed := testkeys.CurveSeed(t)
	clk := testclock.New(time.Now())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { openReplica(t, url, seed, clk) })
	}
	wg.Wait()
	js, err := jetstream.New(natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctxFor(t, 5*time.Second), bucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Storage != jetstream.MemoryStorage || !info.Config.AllowMsgTTL || info.Config.MaxBytes != MaxBucketBytes {
		t.Fatalf("bucket config %+v: want memory storage, per-entry TTLs and a size bound", info.Config)
	}
}
