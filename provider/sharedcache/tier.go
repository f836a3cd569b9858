// Package sharedcache is the cache tier that replicas share: a JetStream KV bucket of sealed entries, so that one
// replica's Infisical read serves the whole fleet, and a replica that restarts during an Infisical outage still
// finds what any replica read within CACHE_TTL (the caller's maxAge: the backend never serves a shared entry stale).
//
// Everything in the bucket is sealed with a key derived from SERVER_XKEY_SEED (which every replica already shares)
// and bound to its cache key, with the time it was read from Infisical sealed inside: anyone on the NATS account may
// read and write the bucket, but sees only keyed hashes and ciphertext, and an entry moved to another key, altered,
// made up, or sealed with another seed does not open. A replayed old entry opens, but carries its old fetch time: it
// is as old as it was, and a replica that has seen a newer one for the key rejects it. The leases that let one replica
// fetch while the others wait are sealed to their entry with their creation time the same way: a lease that does not
// open, never expires, or is older than a claim can be, is not waited for.
//
// The tier is an optimisation, never a dependency: every JetStream call is bounded by a short timeout, a failure is
// a miss (the caller goes to Infisical), and after a failure the tier is skipped for a while so that a broken
// JetStream costs requests nothing.
package sharedcache

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
)

// Defaults for Config.
const (
	DefaultOpTimeout   = time.Second
	DefaultOpenTimeout = 2 * time.Second
	// MaxBucketBytes bounds the bucket (in the NATS server's memory) when this provider creates it.
	MaxBucketBytes = 64 << 20
	// maxClockSkew is how far in the future a sealed fetch time may be (another replica's clock) and still count.
	maxClockSkew = time.Minute
	// leaseSkew is how much older than the claim wait (or how far in the future, by another replica's clock) a lease
	// may be and still be waited for.
	leaseSkew = 5 * time.Second
	// maxSeen bounds the per-key high-water marks kept to reject replays.
	maxSeen = 100_000
	// downBase and downCap bound how long the tier is skipped after JetStream failed.
	downBase = time.Second
	downCap  = 30 * time.Second
)

// Config configures Open.
type Config struct {
	Disabled    bool   // SHARED_CACHE=false
	Bucket      string // SHARED_CACHE_BUCKET
	Seed        string // SERVER_XKEY_SEED
	OpTimeout   time.Duration
	OpenTimeout time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Entry is what a replica stored: the data and when it was read from Infisical.
type Entry struct {
	Data      []byte
	FetchedAt time.Time
}

// Tier is the shared tier. A nil *Tier is valid and does nothing (sharing is off). It is safe for concurrent use.
type Tier struct {
	cfg    Config
	sealer *Sealer
	js     jetstream.JetStream
	log    *slog.Logger
	res    metric.Int64Counter

	kv     atomic.Pointer[jetstream.KeyValue]
	stream atomic.Pointer[jetstream.Stream] // the bucket's stream, to read a lease with its headers; set before kv
	ttlOK  atomic.Bool                      // the bucket allows per-entry TTLs
	rebind atomic.Bool                      // a background bind is running

	mu         sync.Mutex
	downUntil  time.Time
	failures   int
	lastBind   time.Time
	seen       map[string]time.Time // entry name -> newest fetch time seen, to reject replays
	rejected   int                  // since the last rejection log
	rejectedAt time.Time
}

// Open returns the shared tier over nc's JetStream, or nil when sharing is off, saying why in the log once: turned
// off by the setting, no SERVER_XKEY_SEED (replicas would share no key), or no JetStream on the account. A bucket
// that cannot be reached yet is retried later, in the background.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) *Tier {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	log := cfg.Logger
	if cfg.Disabled {
		log.Info("shared cache off (SHARED_CACHE=false): each replica caches in its own memory")
		return nil
	}
	sealer, err := NewSealer(cfg.Seed)
	if err != nil {
		log.Warn("shared cache off: "+err.Error()+"; each replica caches in its own memory. Set SERVER_XKEY_SEED "+
			"(the same on every replica) to share the cache through JetStream", "bucket", cfg.Bucket)
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Warn("shared cache off: no JetStream client; each replica caches in its own memory", "error", err)
		return nil
	}
	t := &Tier{cfg: cfg, sealer: sealer, js: js, log: log.With("bucket", cfg.Bucket), res: resultsCounter(),
		seen: map[string]time.Time{}}
	octx, cancel := context.WithTimeout(ctx, cfg.OpenTimeout)
	defer cancel()
	if err := t.bind(octx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			log.Info("shared cache off: the NATS account has no JetStream; each replica caches in its own memory")
			return nil
		}
		t.log.Warn("shared cache not ready; serving from this replica's memory and Infisical, and retrying in the background",
			"error", err.Error())
		t.mu.Lock()
		t.lastBind = cfg.Now()
		t.mu.Unlock()
		return t
	}
	t.log.Info("shared cache on: replicas share Infisical reads through JetStream, sealed with a key derived from SERVER_XKEY_SEED",
		"per_entry_ttl", t.ttlOK.Load())
	return t
}

// bind finds or creates the bucket.
func (t *Tier) bind(ctx context.Context) error {
	if _, err := t.js.AccountInfo(ctx); err != nil {
		return err
	}
	kv, err := t.js.KeyValue(ctx, t.cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		cfg := jetstream.KeyValueConfig{
			Bucket:      t.cfg.Bucket,
			Description: "infisical-secrets-provider shared cache: sealed entries under keyed-hash names",
			History:     1,
			Storage:     jetstream.MemoryStorage, // nothing of it on disk, even sealed
			MaxBytes:    MaxBucketBytes,
			// Lets each entry carry its own TTL (CACHE_TTL of the replica that wrote it).
			LimitMarkerTTL: time.Minute,
		}
		kv, err = t.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
			cfg.LimitMarkerTTL = 0 // an older server: entries expire by their sealed fetch time only
			kv, err = t.js.CreateKeyValue(ctx, cfg)
		}
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = t.js.KeyValue(ctx, t.cfg.Bucket) // another replica created it first
		}
	}
	if err != nil {
		return err
	}
	st, err := t.js.Stream(ctx, "KV_"+t.cfg.Bucket)
	if err != nil {
		return err
	}
	t.ttlOK.Store(st.CachedInfo().Config.AllowMsgTTL)
	t.stream.Store(&st)
	t.kv.Store(&kv)
	return nil
}

// bucket returns the bound bucket, or nil while it is not bound or JetStream is failing. An unbound tier is bound
// again in the background, at most every downCap.
func (t *Tier) bucket() jetstream.KeyValue {
	if t == nil {
		return nil
	}
	now := t.cfg.Now()
	t.mu.Lock()
	down := now.Before(t.downUntil)
	retry := now.Sub(t.lastBind) >= downCap
	t.mu.Unlock()
	if kv := t.kv.Load(); kv != nil {
		if down {
			t.count(context.Background(), "unavailable")
			return nil
		}
		return *kv
	}
	if retry && t.rebind.CompareAndSwap(false, true) {
		t.mu.Lock()
		t.lastBind = now
		t.mu.Unlock()
		go func() {
			defer t.rebind.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), t.cfg.OpenTimeout)
			defer cancel()
			if err := t.bind(ctx); err == nil {
				t.log.Info("shared cache ready", "per_entry_ttl", t.ttlOK.Load())
			}
		}()
	}
	t.count(context.Background(), "unavailable")
	return nil
}

// op bounds one JetStream call.
func (t *Tier) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.cfg.OpTimeout)
}

// trouble records a JetStream failure of an operation made for the caller whose context is ctx, and skips the tier
// for a while (doubling from downBase to downCap) so that a failing JetStream costs later requests nothing.
func (t *Tier) trouble(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return // the caller gave up or ran out of time: JetStream is not to blame
	}
	t.count(ctx, "error")
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures++
	wait := downCap
	if t.failures < 6 {
		wait = min(downBase<<(t.failures-1), downCap)
	}
	t.downUntil = t.cfg.Now().Add(wait)
	if t.failures == 1 {
		t.log.Warn("shared cache unavailable: serving from this replica's memory and Infisical until JetStream answers again",
			"operation", what, "error", err.Error(), "retry_in", wait.String())
	}
}

func (t *Tier) fine() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failures > 0 {
		t.log.Info("shared cache available again")
	}
	t.failures, t.downUntil = 0, time.Time{}
}

// Get returns the entry for key if one opens and was read from Infisical no more than maxAge ago. Anything else is
// a miss: absent, expired, rejected (not sealed by this seed for this key, or older than one this replica has seen:
// a replay), or JetStream failing.
func (t *Tier) Get(ctx context.Context, key []byte, maxAge time.Duration) (Entry, bool) {
	kv := t.bucket()
	if kv == nil {
		return Entry{}, false
	}
	name := t.sealer.Name(key)
	octx, cancel := t.op(ctx)
	defer cancel()
	e, err := kv.Get(octx, name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		t.fine()
		t.count(ctx, "miss")
		return Entry{}, false
	case err != nil:
		t.trouble(ctx, "get", err)
		return Entry{}, false
	}
	t.fine()
	return t.accept(ctx, key, name, e.Value(), maxAge)
}

// accept opens a stored value and checks its age and that it is no replay.
func (t *Tier) accept(ctx context.Context, key []byte, name string, sealed []byte, maxAge time.Duration) (Entry, bool) {
	data, at, err := t.sealer.Open(key, sealed)
	if err != nil {
		t.reject(ctx, "cannot be opened (sealed with another SERVER_XKEY_SEED, for another entry, or altered)")
		return Entry{}, false
	}
	now := t.cfg.Now()
	if at.After(now.Add(maxClockSkew)) {
		t.reject(ctx, "its fetch time is in the future")
		return Entry{}, false
	}
	t.mu.Lock()
	newest, seen := t.seen[name]
	t.mu.Unlock()
	if seen && at.Before(newest) {
		t.reject(ctx, "older than one this replica has seen for the same key (a replay)")
		return Entry{}, false
	}
	if now.Sub(at) >= maxAge {
		t.count(ctx, "expired")
		return Entry{}, false
	}
	t.note(name, at)
	t.count(ctx, "hit")
	return Entry{Data: data, FetchedAt: at}, true
}

// note raises key's high-water mark to at.
func (t *Tier) note(name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.seen[name]; ok && !at.After(prev) {
		return
	}
	if len(t.seen) >= maxSeen {
		// Forget half: a replay of one of them is then judged by its age alone, as on a fresh replica.
		n := 0
		for k := range t.seen {
			delete(t.seen, k)
			if n++; n >= maxSeen/2 {
				break
			}
		}
	}
	t.seen[name] = at
}

// reject counts and (at most once a minute) logs an entry that did not open or was a replay, or a lease not waited
// for; never its content.
func (t *Tier) reject(ctx context.Context, why string) {
	t.rejectAs(ctx, "entry rejected and not served", why)
}

func (t *Tier) rejectAs(ctx context.Context, what, why string) {
	t.count(ctx, "rejected")
	now := t.cfg.Now()
	t.mu.Lock()
	t.rejected++
	if now.Sub(t.rejectedAt) < time.Minute {
		t.mu.Unlock()
		return
	}
	n := t.rejected
	t.rejected, t.rejectedAt = 0, now
	t.mu.Unlock()
	t.log.Warn("shared cache "+what+": "+why+"; if it persists, check that every replica has the "+
		"same SERVER_XKEY_SEED and who may write the bucket", "rejected", n)
}

// Put stores data read from Infisical at fetchedAt under key for ttl (at least 1 s). Failures are logged once per
// outage and otherwise ignored.
func (t *Tier) Put(ctx context.Context, key, data []byte, fetchedAt time.Time, ttl time.Duration) {
	kv := t.bucket()
	if kv == nil {
		return
	}
	name := t.sealer.Name(key)
	sealed := t.sealer.Seal(key, fetchedAt, data)
	octx, cancel := t.op(ctx)
	defer cancel()
	var err error
	if t.ttlOK.Load() {
		_, err = t.js.Publish(octx, "$KV."+t.cfg.Bucket+"."+name, sealed, jetstream.WithMsgTTL(max(ttl, time.Second).Round(time.Second)))
	} else {
		_, err = kv.Put(octx, name, sealed)
	}
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			t.log.Debug("shared cache entry too large for NATS; kept in memory only", "bytes", len(sealed))
			return
		}
		t.trouble(ctx, "put", err)
		return
	}
	t.fine()
	t.note(name, fetchedAt)
	t.count(ctx, "stored")
}

// Delete removes key's entry, so that no replica serves a value Infisical no longer gives (not found, access
// revoked); an older entry replayed afterwards is rejected by this replica.
func (t *Tier) Delete(ctx context.Context, key []byte) {
	kv := t.bucket()
	if kv == nil {
		return
	}
	name := t.sealer.Name(key)
	t.note(name, t.cfg.Now())
	octx, cancel := t.op(ctx)
	defer cancel()
	if err := t.purge(octx, kv, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.trouble(ctx, "delete", err)
		return
	}
	t.fine()
	t.count(ctx, "deleted")
}

func (t *Tier) purge(ctx context.Context, kv jetstream.KeyValue, name string, opts ...jetstream.KVDeleteOpt) error {
	if t.ttlOK.Load() {
		opts = append(opts, jetstream.PurgeTTL(time.Minute)) // the marker goes too
	}
	return kv.Purge(ctx, name, opts...)
}

// Claim lets one replica at a time fetch key from Infisical. When another replica is already fetching it, Claim
// waits up to wait for that replica's entry and returns it (filled true). Otherwise the caller fetches and must call
// release when done (after Put or Delete). Without per-entry TTLs (an abandoned claim would never expire) or while
// JetStream fails, nobody waits: release is a no-op.
//
// The claim is a lease sealed for key with its creation time, stored with a TTL. A waiter honours only a lease that
// opens for key, carries a TTL, and is younger than wait plus leaseSkew, and only until that age: anyone may write
// the bucket, and a lease planted or replayed without the seed (or kept beyond its time) would otherwise stall every
// miss on key. Such a lease is removed, and the claim taken once more.
func (t *Tier) Claim(ctx context.Context, key []byte, maxAge, wait time.Duration) (e Entry, filled bool, release func()) {
	noop := func() {}
	kv := t.bucket()
	if kv == nil || !t.ttlOK.Load() || wait <= 0 {
		return Entry{}, false, noop
	}
	lease := t.sealer.LeaseName(key)
	for range 2 {
		octx, cancel := t.op(ctx)
		rev, err := kv.Create(octx, lease, t.sealer.SealLease(key, t.cfg.Now()),
			jetstream.KeyTTL(max(wait+time.Second, 2*time.Second).Round(time.Second)))
		cancel()
		switch {
		case err == nil:
			t.fine()
			release := func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.OpTimeout)
				defer cancel()
				// This lease only (a lease taken since is another replica's); if this fails, its TTL ends it.
				_ = t.purge(rctx, kv, lease, jetstream.LastRevision(rev))
			}
			// A replica that held the claim until a moment ago stored its entry before releasing it: look again,
			// or the fleet would fetch once per replica that missed in that moment.
			if e, ok := t.Get(ctx, key, maxAge); ok {
				release()
				t.count(ctx, "waited")
				return e, true, noop
			}
			return Entry{}, false, release
		case !errors.Is(err, jetstream.ErrKeyExists):
			t.trouble(ctx, "claim", err)
			return Entry{}, false, noop
		}
		t.fine()
		e, filled, bogus := t.await(ctx, kv, key, lease, maxAge, wait)
		if filled {
			t.count(ctx, "waited")
			return e, true, noop
		}
		if bogus == 0 {
			return Entry{}, false, noop
		}
		// No replica holds that lease: remove exactly that revision (a lease taken since stays), then claim.
		octx, cancel = t.op(ctx)
		err = t.purge(octx, kv, lease, jetstream.LastRevision(bogus))
		cancel()
		if err != nil {
			return Entry{}, false, noop // replaced since, or JetStream failing: fetch without a claim
		}
	}
	return Entry{}, false, noop
}

// await waits for the replica that holds key's lease to store key's entry, or to give the lease up. It returns the
// lease's revision as bogus, without waiting, when that lease is none a replica can hold (see Claim).
func (t *Tier) await(ctx context.Context, kv jetstream.KeyValue, key []byte, lease string, maxAge, wait time.Duration) (e Entry, filled bool, bogus uint64) {
	name := t.sealer.Name(key)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	w, err := kv.WatchFiltered(wctx, []string{name, lease}, jetstream.UpdatesOnly())
	if err != nil {
		return Entry{}, false, 0
	}
	defer func() { _ = w.Stop() }()
	// The entry may have landed before the watch started.
	if e, ok := t.Get(ctx, key, maxAge); ok {
		return e, true, 0
	}
	honour, rev, err := t.judgeLease(wctx, key, lease, wait)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Released since: its holder stored the entry first, unless its fetch failed.
		e, ok := t.Get(ctx, key, maxAge)
		return e, ok, 0
	case err != nil:
		return Entry{}, false, 0
	case honour <= 0:
		return Entry{}, false, rev
	}
	wctx, cancel = context.WithTimeout(wctx, honour)
	defer cancel()
	for {
		select {
		case u, open := <-w.Updates():
			if !open {
				return Entry{}, false, 0
			}
			if u == nil {
				continue
			}
			switch {
			case u.Key() == name && u.Operation() == jetstream.KeyValuePut:
				if e, ok := t.accept(ctx, key, name, u.Value(), maxAge); ok {
					return e, true, 0
				}
			case u.Key() == lease && u.Operation() != jetstream.KeyValuePut:
				// Released: the other replica stored its entry (seen above, or in flight), or failed.
				e, ok := t.Get(ctx, key, maxAge)
				return e, ok, 0
			}
		case <-wctx.Done():
			return Entry{}, false, 0
		}
	}
}

// judgeLease reads key's lease and returns how long a waiter may honour it (0 or less: not at all, counted and
// logged as rejected) and its revision. A lease is honoured only if it opens for key, carries a finite TTL (every
// lease a replica takes does), and was created less than wait+leaseSkew ago, and only until then. The error wraps
// jetstream.ErrMsgNotFound when there is no lease.
func (t *Tier) judgeLease(ctx context.Context, key []byte, lease string, wait time.Duration) (time.Duration, uint64, error) {
	st := t.stream.Load()
	if st == nil {
		return 0, 0, errors.New("shared cache bucket not bound")
	}
	m, err := (*st).GetLastMsgForSubject(ctx, "$KV."+t.cfg.Bucket+"."+lease)
	if err != nil {
		return 0, 0, err
	}
	if m.Header.Get("KV-Operation") != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return 0, 0, jetstream.ErrMsgNotFound // a delete, purge or expiry marker: released
	}
	created, err := t.sealer.OpenLease(key, m.Data)
	var why string
	now := t.cfg.Now()
	honour := min(wait, created.Add(wait+leaseSkew).Sub(now))
	switch {
	case err != nil:
		why = "it does not open (planted, moved from another key, or sealed with another SERVER_XKEY_SEED)"
	case !finiteTTL(m.Header.Get(jetstream.MsgTTLHeader)):
		why = "it never expires (planted or replayed without a TTL)"
	case created.After(now.Add(leaseSkew)):
		why = "its creation time is in the future"
	case honour <= 0:
		why = "it is older than any claim (kept or replayed beyond its time)"
	default:
		return honour, m.Sequence, nil
	}
	t.rejectAs(ctx, "lease not waited for", why)
	return 0, m.Sequence, nil
}

// finiteTTL reports whether a Nats-TTL header value makes the message expire, as the server reads it: a duration
// of at least a second, or a whole number of seconds; not "never", and not absent.
func finiteTTL(v string) bool {
	if d, err := time.ParseDuration(v); err == nil {
		return d >= time.Second
	}
	n, err := strconv.ParseUint(v, 10, 63)
	return err == nil && n > 0
}

func (t *Tier) count(ctx context.Context, result string) {
	t.res.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

func resultsCounter() metric.Int64Counter {
	const name = "secrets.shared_cache.results"
	c, err := otel.Meter(telemetry.InstrumentationName).Int64Counter(name, metric.WithDescription(
		"Shared cache operations by result: hit, miss, expired, rejected, stored, deleted, waited, error, unavailable"))
	if err != nil {
		c, _ = noop.NewMeterProvider().Meter("").Int64Counter(name)
	}
	return c
}
