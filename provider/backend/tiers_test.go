package backend

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/sharedcache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

type testClock = testclock.Clock

func newTestClock() *testClock { return testclock.New(time.Now()) }

// tierFake is a fake Infisical with a shop folder of three secrets, a billing folder, and one identity.
func tierFake(t *testing.T) *fakeinfisical.Server {
	t.Helper()
	fake := fakeinfisical.New(t)
	fake.AddIdentity(testClient, testSecret, testProject)
	for _, name := range []string{"A", "B", "C"} {
		fake.SetSecret(testProject, "prod", "/shop", name, "shop-"+strings.ToLower(name))
	}
	fake.SetSecret(testProject, "prod", "/shop", "A", "shop-a2") // A has two versions
	fake.SetSecret(testProject, "prod", "/billing", "KEY", "billing-key")
	return fake
}

// replica is one backend, with its log.
type replica struct {
	*Backend
	logs *capture.Buffer
}

// newReplica starts a backend on fake with the given settings (over sensible test defaults), the test's clock, and
// the shared tier if one is given.
func newReplica(t *testing.T, fake *fakeinfisical.Server, clk *testClock, shared *sharedcache.Tier, kv ...string) replica {
	t.Helper()
	cfg := map[string]string{
		"INFISICAL_CLIENT_ID": testClient, "INFISICAL_PROJECT_ID": testProject, "INFISICAL_BASE_URL": fake.URL,
		"TRUSTED_ISSUERS": "*", "CACHE_TTL": "30s", "STALE_IF_ERROR": "10m", "CACHE_NOT_FOUND_TTL": "5s",
		"UPSTREAM_TIMEOUT": "2s",
	}
	for i := 0; i+1 < len(kv); i += 2 {
		cfg[kv[i]] = kv[i+1]
	}
	s, err := settings.Load(settings.Maps(cfg, map[string]string{"INFISICAL_CLIENT_SECRET": testSecret}))
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	logs := &capture.Buffer{}
	b, err := New(Config{Settings: s, Now: clk.Now, Shared: shared,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return replica{Backend: b, logs: logs}
}

// get asks for key like a host would, as a component of application "shop"; it returns the value, or the wire error
// kind and message.
func (r replica) get(t *testing.T, key string, version ...int) (string, secrets.ErrorKind, string) {
	t.Helper()
	return r.getAs(t, "shop", key, version...)
}

func (r replica) getAs(t *testing.T, app, key string, version ...int) (string, secrets.ErrorKind, string) {
	t.Helper()
	req := &secrets.Request{Key: key}
	if len(version) > 0 {
		v := strconv.Itoa(version[0])
		req.Version = &v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	s, err := r.Get(ctx, &secrets.Verified{Request: req, Application: app,
		Entity: &wascap.Claims{Issuer: "AISSUER", Subject: "MSUBJECT", Name: "api"}})
	var werr *secrets.Error
	switch {
	case errors.As(err, &werr):
		return "", werr.Kind, werr.Message
	case err != nil:
		t.Fatalf("Get %s: %v", key, err)
	case s.StringSecret == nil:
		t.Fatalf("Get %s: no string value", key)
	}
	return *s.StringSecret, "", ""
}

func (r replica) mustGet(t *testing.T, key, want string) {
	t.Helper()
	got, kind, msg := r.get(t, key)
	if kind != "" || got != want {
		t.Fatalf("Get %s = %q, %s %q; want %q\n%s", key, got, kind, msg, want, r.logs)
	}
}

func (r replica) wantKind(t *testing.T, key string, kind secrets.ErrorKind) string {
	t.Helper()
	got, k, msg := r.get(t, key)
	if k != kind {
		t.Fatalf("Get %s = %q, %s %q; want %s\n%s", key, got, k, msg, kind, r.logs)
	}
	return msg
}

// calls is what Infisical saw: folder lists and single reads.
type calls struct{ lists, reads int }

func wantCalls(t *testing.T, fake *fakeinfisical.Server, want calls) {
	t.Helper()
	if got := (calls{fake.Lists(), fake.Reads()}); got != want {
		t.Fatalf("Infisical saw %d lists and %d reads; want %d and %d", got.lists, got.reads, want.lists, want.reads)
	}
}

func TestPrefetchReadsAFolderOnce(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	r.mustGet(t, "/shop/B", "shop-b")
	r.mustGet(t, "/shop/C", "shop-c")
	wantCalls(t, fake, calls{lists: 1})
	r.mustGet(t, "/billing/KEY", "billing-key")
	wantCalls(t, fake, calls{lists: 2})

	// An explicit version is read exactly, never from the listing.
	got, kind, _ := r.get(t, "/shop/A", 1)
	if kind != "" || got != "shop-a" {
		t.Fatalf("version 1 = %q, %s; want shop-a", got, kind)
	}
	wantCalls(t, fake, calls{lists: 2, reads: 1})

	// Turned off, every key is its own read.
	fake2, clk2 := tierFake(t), newTestClock()
	off := newReplica(t, fake2, clk2, nil, "CACHE_PREFETCH", "false")
	off.mustGet(t, "/shop/A", "shop-a2")
	off.mustGet(t, "/shop/B", "shop-b")
	wantCalls(t, fake2, calls{reads: 2})
}

func TestConcurrentKeysOfAFolderShareOneList(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	fake.Hang(fakeinfisical.RouteListSecrets, true)
	var wg sync.WaitGroup
	for _, k := range []string{"A", "B", "C", "A", "B", "C"} {
		wg.Go(func() { r.mustGet(t, "/shop/"+k, map[string]string{"A": "shop-a2", "B": "shop-b", "C": "shop-c"}[k]) })
	}
	// Those that arrive after the list ends find it cached: either way, one list.
	eventually.True(t, "the list to reach Infisical", func() bool { return fake.Lists() == 1 })
	fake.Hang(fakeinfisical.RouteListSecrets, false)
	wg.Wait()
	wantCalls(t, fake, calls{lists: 1})
}

// A key missing from a listing younger than CACHE_NOT_FOUND_TTL is not found without another call; an older
// listing is revalidated first (a 304 when nothing changed), so a secret created since is found.
func TestAbsentFromARecentListingIsNotFound(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	r.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	wantCalls(t, fake, calls{lists: 1})

	clk.Advance(6 * time.Second) // past CACHE_NOT_FOUND_TTL, within CACHE_TTL
	r.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	wantCalls(t, fake, calls{lists: 2})
	reqs := fake.Requests()
	if last := reqs[len(reqs)-1]; last.IfNoneMatch == "" || last.Status != http.StatusNotModified {
		t.Fatalf("the revalidation sent If-None-Match %q and got %d; want an ETag and 304", last.IfNoneMatch, last.Status)
	}
	r.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound) // the 304 renewed the listing
	wantCalls(t, fake, calls{lists: 2})

	fake.SetSecret(testProject, "prod", "/shop", "NOPE", "now-here")
	clk.Advance(6 * time.Second)
	r.mustGet(t, "/shop/NOPE", "now-here")
	wantCalls(t, fake, calls{lists: 3})
	// A missing folder is not found, and remembered like a missing key.
	r.wantKind(t, "/nowhere/X", secrets.KindSecretNotFound)
	r.wantKind(t, "/nowhere/X", secrets.KindSecretNotFound)
	wantCalls(t, fake, calls{lists: 4})
}

// A listing that hid a value cannot prove anything absent: the hidden key and any key it lacks are read exactly.
func TestHiddenValuesAreReadExactly(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	fake.SetSecret(testProject, "prod", "/locked", "OPEN", "open")
	fake.SetSecret(testProject, "prod", "/locked", "SHUT", "shut")
	fake.HideValue(testProject, "prod", "/locked", "SHUT")
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/locked/OPEN", "open")
	msg := r.wantKind(t, "/locked/SHUT", secrets.KindUpstreamError)
	if !strings.Contains(msg, "denied access") {
		t.Fatalf("hidden value: %q; want Infisical's refusal", msg)
	}
	r.wantKind(t, "/locked/ELSEWHERE", secrets.KindSecretNotFound)
	wantCalls(t, fake, calls{lists: 1, reads: 2})
	if strings.Contains(r.logs.String(), "<hidden-by-infisical>") {
		t.Fatal("the mask was served or logged")
	}
}

// Access rules are checked for the key asked for, whatever the listing brought along.
func TestAccessRulesPerKeyWithPrefetch(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil, "ACCESS_RULES", `[{"key":"/shop/A"}]`)
	r.mustGet(t, "/shop/A", "shop-a2")
	r.wantKind(t, "/shop/B", secrets.KindUnauthorized)
	r.wantKind(t, "/shop/NOPE", secrets.KindUnauthorized)
	wantCalls(t, fake, calls{lists: 1})
}

// A value that came with a listing is cached like one read on its own: stale-if-error serves it.
func TestListedValuesAreServedStale(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	clk.Advance(time.Minute)
	fake.FailNext(fakeinfisical.RouteAll, 1000, http.StatusInternalServerError, "Something went wrong", nil)
	r.mustGet(t, "/shop/B", "shop-b") // never asked for before: it came with A's listing
	if !strings.Contains(r.logs.String(), "serving a stale value") {
		t.Fatalf("no stale warning:\n%s", r.logs)
	}
	// Not in the stale listing: an upstream error, not a "not found" Infisical never said.
	r.wantKind(t, "/shop/NOPE", secrets.KindUpstreamError)
}

// Past CACHE_TTL a listing is revalidated with its ETag: a 304 renews every entry.
func TestRevalidationRenewsTheListing(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	clk.Advance(31 * time.Second)
	r.mustGet(t, "/shop/A", "shop-a2")
	wantCalls(t, fake, calls{lists: 2})
	if n := fake.Answered(http.StatusNotModified); n != 1 {
		t.Fatalf("%d answers were 304; want the revalidation's", n)
	}
	clk.Advance(20 * time.Second)
	r.mustGet(t, "/shop/B", "shop-b")
	wantCalls(t, fake, calls{lists: 2})
	// A change shows after the next expiry.
	fake.SetSecret(testProject, "prod", "/shop", "B", "shop-b2")
	clk.Advance(11 * time.Second)
	r.mustGet(t, "/shop/B", "shop-b2")
	wantCalls(t, fake, calls{lists: 3})
}

// Not found is remembered for CACHE_NOT_FOUND_TTL: repeated gets of a missing key cost one read, and a value once
// found and then gone is never served again, not even while Infisical fails.
func TestNotFoundIsRememberedBriefly(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil, "CACHE_PREFETCH", "false")
	for range 5 {
		r.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	}
	wantCalls(t, fake, calls{reads: 1})
	clk.Advance(5 * time.Second)
	r.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	wantCalls(t, fake, calls{reads: 2})

	r.mustGet(t, "/shop/C", "shop-c")
	fake.DeleteSecret(testProject, "prod", "/shop", "C")
	clk.Advance(31 * time.Second)
	r.wantKind(t, "/shop/C", secrets.KindSecretNotFound)
	fake.FailNext(fakeinfisical.RouteAll, 1000, http.StatusInternalServerError, "Something went wrong", nil)
	r.wantKind(t, "/shop/C", secrets.KindSecretNotFound) // remembered
	clk.Advance(5 * time.Second)
	r.wantKind(t, "/shop/C", secrets.KindUpstreamError) // forgotten: Infisical is asked, fails, and the old value stays dead

	// 0 asks every time.
	fake2, clk2 := tierFake(t), newTestClock()
	every := newReplica(t, fake2, clk2, nil, "CACHE_PREFETCH", "false", "CACHE_NOT_FOUND_TTL", "0")
	every.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	every.wantKind(t, "/shop/NOPE", secrets.KindSecretNotFound)
	wantCalls(t, fake2, calls{reads: 2})
}

// Revoked access, like a deleted secret, is never served from the cache afterwards.
func TestRevokedAccessIsNeverServedFromAListing(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	clk.Advance(31 * time.Second)
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
	r.wantKind(t, "/shop/A", secrets.KindUpstreamError)
	fake.FailNext(fakeinfisical.RouteAll, 1000, http.StatusInternalServerError, "Something went wrong", nil)
	r.wantKind(t, "/shop/B", secrets.KindUpstreamError)
}

func sharedTier(t *testing.T, url, seed string, clk *testClock) *sharedcache.Tier {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tier := sharedcache.Open(ctx, natstest.Connect(t, url), sharedcache.Config{Bucket: "test-shared", Seed: seed,
		Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if tier == nil {
		t.Fatal("no shared tier")
	}
	return tier
}

// One replica's read serves the fleet; a replica started during an Infisical outage serves what another read
// within CACHE_TTL (never older); a replica with another seed finds nothing it can open.
func TestSharedCacheServesEveryReplica(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	fake, clk, seed := tierFake(t), newTestClock(), testkeys.CurveSeed(t)
	first := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	second := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	first.mustGet(t, "/shop/A", "shop-a2")
	second.mustGet(t, "/shop/B", "shop-b")
	second.mustGet(t, "/shop/C", "shop-c")
	wantCalls(t, fake, calls{lists: 1})

	// Exact reads are shared too.
	a := newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "CACHE_PREFETCH", "false")
	b := newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "CACHE_PREFETCH", "false")
	a.mustGet(t, "/billing/KEY", "billing-key")
	b.mustGet(t, "/billing/KEY", "billing-key")
	wantCalls(t, fake, calls{lists: 1, reads: 1})

	// During an outage, a replica started since is served what another read less than CACHE_TTL ago, and nothing
	// older: anyone who may write the bucket can put back an entry that a replica deleted after a final answer, so
	// the shared tier is never a stale fallback. Each replica's own memory is.
	clk.Advance(20 * time.Second)
	fake.Down(true)
	t.Cleanup(func() { fake.Down(false) })
	restarted := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	restarted.mustGet(t, "/shop/C", "shop-c")
	clk.Advance(5 * time.Minute)
	restarted.mustGet(t, "/shop/C", "shop-c") // stale, from its memory
	late := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	late.wantKind(t, "/shop/C", secrets.KindUpstreamError)
	lateExact := newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "CACHE_PREFETCH", "false")
	lateExact.wantKind(t, "/billing/KEY", secrets.KindUpstreamError)

	fake.Down(false)
	stranger := newReplica(t, fake, clk, sharedTier(t, url, testkeys.CurveSeed(t), clk))
	stranger.mustGet(t, "/shop/A", "shop-a2")
	if fake.Lists() < 2 {
		t.Fatal("a replica with another seed was served without asking Infisical")
	}
}

// A listing another replica made is as old as it is: a key it lacks is not found only while the listing is younger
// than CACHE_NOT_FOUND_TTL; an older one is revalidated first, so a secret created since is found.
func TestNotFoundFromASharedListingIsAsFreshAsThatListing(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	fake, clk, seed := tierFake(t), newTestClock(), testkeys.CurveSeed(t)
	first := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	first.mustGet(t, "/shop/A", "shop-a2")
	second := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	second.wantKind(t, "/shop/NEW", secrets.KindSecretNotFound) // the listing is a moment old
	wantCalls(t, fake, calls{lists: 1})

	fake.SetSecret(testProject, "prod", "/shop", "NEW", "new")
	clk.Advance(6 * time.Second)
	third := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
	third.mustGet(t, "/shop/NEW", "new")
	wantCalls(t, fake, calls{lists: 2})
}

// A not found or a refused permission seen by one replica removes the shared entry, so that no replica serves it
// stale afterwards.
func TestFinalAnswersRemoveTheSharedEntry(t *testing.T) {
	tests := []struct {
		name   string
		revoke func(fake *fakeinfisical.Server)
		want   secrets.ErrorKind
	}{
		{name: "not found", want: secrets.KindSecretNotFound, revoke: func(fake *fakeinfisical.Server) {
			fake.DeleteSecret(testProject, "prod", "/billing", "KEY")
		}},
		{name: "permission refused", want: secrets.KindUpstreamError, revoke: func(fake *fakeinfisical.Server) {
			fake.FailNext(fakeinfisical.RouteGetSecret, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := natstest.StartJetStream(t)
			fake, clk, seed := tierFake(t), newTestClock(), testkeys.CurveSeed(t)
			one := newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "CACHE_PREFETCH", "false")
			one.mustGet(t, "/billing/KEY", "billing-key")
			tt.revoke(fake)
			clk.Advance(31 * time.Second)
			one.wantKind(t, "/billing/KEY", tt.want)
			fake.Down(true)
			t.Cleanup(func() { fake.Down(false) })
			other := newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "CACHE_PREFETCH", "false")
			if got, kind, _ := other.get(t, "/billing/KEY"); kind == "" {
				t.Fatalf("another replica served %q after the first saw it %s", got, tt.name)
			}
		})
	}
}

// A final answer is about the secret (or, for a listing, the folder), not only about the entry whose fetch got it:
// the listing and the version read of the secret both leave the shared tier, so another replica has neither to serve
// stale, whichever of them Infisical refused.
func TestFinalAnswersRemoveEverySharedEntryOfTheSecret(t *testing.T) {
	tests := []struct {
		name   string
		route  fakeinfisical.Route
		refuse func(r replica) secrets.ErrorKind
	}{
		{name: "listing refused", route: fakeinfisical.RouteListSecrets, refuse: func(r replica) secrets.ErrorKind {
			_, kind, _ := r.get(t, "/shop/A")
			return kind
		}},
		{name: "version read refused", route: fakeinfisical.RouteGetSecret, refuse: func(r replica) secrets.ErrorKind {
			_, kind, _ := r.get(t, "/shop/A", 2)
			return kind
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := natstest.StartJetStream(t)
			fake, clk, seed := tierFake(t), newTestClock(), testkeys.CurveSeed(t)
			one := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
			one.mustGet(t, "/shop/A", "shop-a2")
			if got, kind, _ := one.get(t, "/shop/A", 2); kind != "" || got != "shop-a2" {
				t.Fatalf("version 2: %q %s", got, kind)
			}
			wantCalls(t, fake, calls{lists: 1, reads: 1})
			clk.Advance(31 * time.Second)
			fake.FailNext(tt.route, 1, http.StatusForbidden, "You are not allowed to read on secrets", nil)
			if kind := tt.refuse(one); kind != secrets.KindUpstreamError {
				t.Fatalf("the 403: %s", kind)
			}
			fake.Down(true)
			t.Cleanup(func() { fake.Down(false) })
			other := newReplica(t, fake, clk, sharedTier(t, url, seed, clk))
			if got, kind, _ := other.get(t, "/shop/A"); kind == "" {
				t.Fatalf("another replica served the listing's %q after Infisical refused access", got)
			}
			if got, kind, _ := other.get(t, "/shop/A", 2); kind == "" {
				t.Fatalf("another replica served version 2 (%q) after Infisical refused access", got)
			}
		})
	}
}

// A version Infisical does not have is about that version only: the secret's listing stays, and serves without a
// call.
func TestVersionNotFoundKeepsTheListing(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	r := newReplica(t, fake, clk, nil)
	r.mustGet(t, "/shop/A", "shop-a2")
	if _, kind, _ := r.get(t, "/shop/A", 9); kind != secrets.KindSecretNotFound {
		t.Fatalf("version 9: %s; want SecretNotFound", kind)
	}
	r.mustGet(t, "/shop/A", "shop-a2")
	wantCalls(t, fake, calls{lists: 1, reads: 1})
}

// A 429 pauses every identity on that Infisical URL: requests that need Infisical fail at once naming the wait,
// while cached values are still served.
func TestRateLimitPauseFailsFastAndServesCache(t *testing.T) {
	fake, clk := tierFake(t), newTestClock()
	fake.AddIdentity("tenant-client", "tenant-secret", testProject)
	r := newReplica(t, fake, clk, nil)
	tenant := r.Settings().Infisical
	tenant.ClientID, tenant.ClientSecret = "tenant-client", "tenant-secret"
	if err := r.SetTenant("shop", tenant); err != nil {
		t.Fatal(err)
	}
	want := func(app, key string) string {
		t.Helper()
		got, kind, msg := r.getAs(t, app, key)
		if kind != secrets.KindUpstreamError {
			t.Fatalf("%s %s = %q, %s; want UpstreamError", app, key, got, kind)
		}
		return msg
	}
	if got, kind, _ := r.getAs(t, "shop", "/shop/A"); kind != "" || got != "shop-a2" {
		t.Fatalf("tenant: %q, %s", got, kind) // the tenant's listing, cached
	}
	fake.FailNext(fakeinfisical.RouteListSecrets, 1, http.StatusTooManyRequests,
		"Rate limit exceeded. Please try again in 40 seconds", http.Header{"Retry-After": {"40"}})
	if msg := want("other", "/billing/KEY"); !strings.Contains(msg, "try again in 40 seconds") {
		t.Fatalf("the 429: %q", msg)
	}

	sent := fake.Count(fakeinfisical.RouteAll)
	if got, kind, _ := r.getAs(t, "shop", "/shop/B"); kind != "" || got != "shop-b" {
		t.Fatalf("a cached value during the pause: %q, %s", got, kind)
	}
	for _, app := range []string{"shop", "other"} {
		if msg := want(app, "/billing/KEY"); !strings.Contains(msg, "retry in 40s") {
			t.Fatalf("%s during the pause: %q; want the wait named", app, msg)
		}
	}
	if n := fake.Count(fakeinfisical.RouteAll) - sent; n != 0 {
		t.Fatalf("%d calls reached Infisical during the pause", n)
	}
	clk.Advance(40 * time.Second)
	if got, kind, _ := r.getAs(t, "other", "/billing/KEY"); kind != "" || got != "billing-key" {
		t.Fatalf("after the pause: %q, %s", got, kind)
	}
}

// A storm of a fleet starting: every replica asks for every key of several folders at once, cold. Infisical sees
// one list per folder for the whole fleet.
func TestStormCostsOneListPerFolderForTheFleet(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	fake, clk, seed := fakeinfisical.New(t), newTestClock(), testkeys.CurveSeed(t)
	fake.AddIdentity(testClient, testSecret, testProject)
	const folders, perFolder, replicas, hosts = 4, 5, 3, 4
	for f := range folders {
		for k := range perFolder {
			fake.SetSecret(testProject, "prod", "/f"+strconv.Itoa(f), "K"+strconv.Itoa(k), "v")
		}
	}
	fleet := make([]replica, replicas)
	for i := range fleet {
		fleet[i] = newReplica(t, fake, clk, sharedTier(t, url, seed, clk), "UPSTREAM_TIMEOUT", "5s")
	}
	var wg sync.WaitGroup
	for h := range hosts {
		for f := range folders {
			wg.Go(func() {
				for k := range perFolder {
					fleet[(h+f+k)%replicas].mustGet(t, "/f"+strconv.Itoa(f)+"/K"+strconv.Itoa(k), "v")
				}
			})
		}
	}
	wg.Wait()
	if fake.Lists() > folders || fake.Reads() != 0 {
		t.Fatalf("Infisical saw %d lists and %d reads for the fleet; want at most %d lists", fake.Lists(), fake.Reads(), folders)
	}
}
