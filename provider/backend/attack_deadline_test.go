package backend

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// hangingLister lists one folder once, then hangs every call until its context ends: Infisical during an outage
// that accepts connections and never answers.
type hangingLister struct {
	lifecycle
	hang atomic.Bool
}

func (h *hangingLister) GetSecret(ctx context.Context, ref infisical.SecretRef) (infisical.Secret, error) {
	if h.hang.Load() {
		<-ctx.Done()
		return infisical.Secret{}, ctx.Err()
	}
	return infisical.Secret{Name: ref.Name, Value: "held", Version: 1}, nil
}

func (h *hangingLister) ListSecrets(ctx context.Context, _ infisical.FolderRef, _ string) (infisical.Listing, error) {
	if h.hang.Load() {
		<-ctx.Done()
		return infisical.Listing{}, ctx.Err()
	}
	return infisical.Listing{Secrets: map[string]infisical.Secret{"A": {Name: "A", Value: "held", Version: 1}},
		Complete: true}, nil
}

// tickingClock stands still until started, then reads a later instant at every reading, as a real clock does between
// any two readings: each reading is step after the one before.
type tickingClock struct {
	mu      sync.Mutex
	now     time.Time
	step    time.Duration
	ticking bool
}

func (c *tickingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ticking {
		c.now = c.now.Add(c.step)
	}
	return c.now
}

func (c *tickingClock) start(at time.Time, step time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now, c.step, c.ticking = at.Add(-step), step, true
}

// A request whose cached value expires while the request is on its way through the memory tier, at whatever instant
// (between any two of the tier's clock readings, or exactly on one), with Infisical hanging, still gets the stale
// value within staleWait, and in any case before its deadline minus replyMargin: the instant of expiry must not decide
// whether the request's waits are bounded. (The fast path decided "fresh" at one reading and the wait at another: a
// value fresh at the first and expired by the cache's own check waited for the whole deadline, with neither the stale
// wait nor the reply margin.)
func TestAttackExpiryDuringALookupKeepsTheWaitsBounded(t *testing.T) {
	const (
		ttl      = 30 * time.Second
		step     = time.Millisecond
		deadline = 3 * time.Second // what the request has left; a wait without bounds ends only here
	)
	// The value is stored at 0; reading i of the request (1, 2, ...) is at ttl - expiry + i*step, so that the TTL
	// passes between readings when expiry is an odd number of half steps, and exactly on one otherwise.
	for i := range 24 {
		half, prefetch := i/2+1, []string{"true", "false"}[i%2]
		expiry := time.Duration(half) * step / 2
		t.Run(fmt.Sprintf("prefetch %s, ttl passes at reading %.1f", prefetch, float64(half)/2), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { // fake time: took is exact, however busy the machine
				up := &hangingLister{}
				stored := time.Now()
				clk := &tickingClock{now: stored}
				get := hangingBackend(t, up, clk.Now, ttl.String(), prefetch)
				if v, _, err := get(deadline); err != nil || v != "held" {
					t.Fatalf("first get = %q, %v", v, err)
				}

				up.hang.Store(true)
				clk.start(stored.Add(ttl-expiry+step), step) // the first reading from now on is ttl - expiry + step
				v, took, err := get(deadline)
				if err != nil || v != "held" {
					t.Fatalf("get = %q, %v; want the held value (fresh or stale)", v, err)
				}
				if limit := min(staleWait, deadline-replyMargin); took > limit {
					t.Fatalf("the request waited %s for a hanging Infisical with a value to serve; want at most the stale wait "+
						"(%s), and never past its deadline minus the reply margin (%s)", took.Round(time.Millisecond), staleWait,
						deadline-replyMargin)
				}
				waitOutAbandonedFetches()
			})
		})
	}
}

// waitOutAbandonedFetches lets the fake time of a synctest bubble run past the budget of the fetches a request left
// hanging in the background, which end only then: a bubble may not end with goroutines still blocked.
func waitOutAbandonedFetches() { time.Sleep(time.Minute) }

// hangingBackend is a backend reading through up with the given clock, CACHE_TTL and CACHE_PREFETCH; get asks it for
// /A with the given time left, returning the value and how long the answer took.
func hangingBackend(t *testing.T, up *hangingLister, now func() time.Time, ttl, prefetch string) func(time.Duration) (string, time.Duration, error) {
	t.Helper()
	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_CLIENT_ID": testClient, "INFISICAL_PROJECT_ID": testProject, "INFISICAL_BASE_URL": "http://infisical.invalid",
		"TRUSTED_ISSUERS": "*", "CACHE_TTL": ttl, "STALE_IF_ERROR": "10m", "CACHE_NOT_FOUND_TTL": "5s",
		"UPSTREAM_TIMEOUT": "2s", "INFISICAL_ENVIRONMENT": "prod", "CACHE_PREFETCH": prefetch,
	}, map[string]string{"INFISICAL_CLIENT_SECRET": testSecret}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Settings: s, Now: now, Logger: slog.New(slog.DiscardHandler),
		Dial: func(settings.Infisical) (Upstream, error) { return up, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return func(left time.Duration) (string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), left)
		defer cancel()
		start := time.Now()
		sec, err := b.Get(ctx, &secrets.Verified{Request: &secrets.Request{Key: "A"}, Application: "shop",
			Entity: &wascap.Claims{Issuer: "AISSUER", Subject: "MSUBJECT", Name: "api"}})
		if err != nil {
			return "", time.Since(start), err
		}
		return *sec.StringSecret, time.Since(start), nil
	}
}

// With less time left than the stale wait, an expired value is served replyMargin before the deadline, whether it
// came with a listing or was read exactly; a fresh one is served at once however little time is left.
func TestAttackStaleValueLeavesTheReplyMargin(t *testing.T) {
	const left = time.Second
	for _, prefetch := range []string{"true", "false"} {
		t.Run("prefetch "+prefetch, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { // fake time: took is exact, however busy the machine
				up := &hangingLister{}
				clk := newTestClock()
				get := hangingBackend(t, up, clk.Now, "30s", prefetch)
				if v, _, err := get(left); err != nil || v != "held" {
					t.Fatalf("first get = %q, %v", v, err)
				}
				up.hang.Store(true)
				if v, took, err := get(time.Millisecond); err != nil || v != "held" || took != 0 {
					t.Fatalf("fresh get with 1ms left = %q, %v after %s; want the value at once", v, err, took)
				}
				clk.Advance(31 * time.Second)
				v, took, err := get(left)
				if err != nil || v != "held" {
					t.Fatalf("get = %q, %v; want the stale value", v, err)
				}
				if limit := left - replyMargin; took > limit {
					t.Fatalf("stale value served after %s of %s; want it by %s (the deadline minus the reply margin)",
						took.Round(time.Millisecond), left, left-replyMargin)
				}
				waitOutAbandonedFetches()
			})
		})
	}
}
