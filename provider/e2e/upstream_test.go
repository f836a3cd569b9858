package e2e

import (
	"net/http"
	"sync"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// Prefetch is on by default, so a get costs one list of its folder; the same holds for reads with it off.
func TestSlow_ConcurrentGetsCoalesceIntoOneCall(t *testing.T) {
	h := newHarness(t)
	// Long enough for the repeat below to come within it on a loaded machine; waiting for it to run out costs
	// exactly its length.
	h.env["CACHE_TTL"] = "2s"
	h.start()
	// Slow Infisical down so that requests arrive while the first list is in flight; those that arrive after it
	// find its result cached.
	h.fake.Hang(fakeinfisical.RouteListSecrets, true)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
			if err == nil && (s.StringSecret == nil || *s.StringSecret != "v2-password") {
				err = errUnexpected(s)
			}
			errs <- err
		}()
	}
	eventually.True(t, "the first list to reach Infisical", func() bool { return h.fake.Lists() >= 1 })
	h.fake.Hang(fakeinfisical.RouteListSecrets, false)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("get: %v", err)
		}
	}
	if n, r := h.fake.Lists(), h.fake.Reads(); n != 1 || r != 0 {
		t.Fatalf("Infisical saw %d lists and %d reads for 20 concurrent gets; want 1 list", n, r)
	}
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	if n := h.fake.Lists(); n != 1 {
		t.Fatalf("a repeat within CACHE_TTL made a call (%d lists)", n)
	}
	// Repeats are served from memory until the real CACHE_TTL of the process under test runs out; the first after
	// it lists the folder again.
	eventually.True(t, "a get past CACHE_TTL to list the folder again", func() bool {
		h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
		return h.fake.Lists() > 1
	})
	if n := h.fake.Lists(); n != 2 {
		t.Fatalf("a repeat after CACHE_TTL made %d lists in all; want 2", n)
	}
}

// staleServes counts the backend's warnings that it served a value stale because Infisical failed.
func (h *harness) staleServes() int {
	return capture.CountLines(h.logs.String(), "Infisical failing: serving a stale value")
}

// servedStaleOnce polls ref, which must keep its value want, until a get past CACHE_TTL is served stale.
func (h *harness) servedStaleOnce(ref hostsim.Ref, want string) {
	h.t.Helper()
	before := h.staleServes()
	eventually.True(h.t, "a get of "+ref.Key+" past CACHE_TTL to be served stale", func() bool {
		if got := h.mustString(ref); got != want {
			h.t.Fatalf("%s = %q while Infisical fails; want the value read before, %q", ref.Key, got, want)
		}
		return h.staleServes() > before
	})
}

func TestSlow_StaleIfError(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "200ms"
	h.env["STALE_IF_ERROR"] = "1500ms"
	h.env["UPSTREAM_TIMEOUT"] = "300ms"
	h.start()
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	h.fake.FailNext(fakeinfisical.RouteAll, 100000, http.StatusInternalServerError, "Something went wrong", nil)
	h.servedStaleOnce(hostsim.Ref{Key: "DB_PASSWORD"}, "v2-password")
	// Stale values are served until STALE_IF_ERROR runs out; then Infisical's failure is the answer.
	var err error
	eventually.True(t, "STALE_IF_ERROR to run out", func() bool {
		_, err = h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
		return err != nil
	})
	wantKind(t, err, secrets.KindUpstreamError)

	// Infisical down entirely behaves the same for a value cached earlier.
	h.fake.FailNext(fakeinfisical.RouteAll, 0, 0, "", nil)
	h.mustString(hostsim.Ref{Key: "/payments/API_KEY"})
	h.fake.Down(true)
	defer h.fake.Down(false)
	h.servedStaleOnce(hostsim.Ref{Key: "/payments/API_KEY"}, "pay-key")
}

func TestNotFoundIsNeverServedStale(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "100ms"
	h.start()
	h.mustString(hostsim.Ref{Key: "/shop/TOKEN"})
	h.fake.DeleteSecret(project, "prod", "/shop", "TOKEN")
	// Served from memory until CACHE_TTL runs out; then the deletion is the answer, never the value read before.
	var err error
	eventually.True(t, "a get past CACHE_TTL to fail", func() bool {
		_, err = h.fetch(hostsim.Ref{Key: "/shop/TOKEN"})
		return err != nil
	})
	wantKind(t, err, secrets.KindSecretNotFound)
}

func TestHangingInfisicalCostsOneBudget(t *testing.T) {
	h := newHarness(t)
	h.env["UPSTREAM_TIMEOUT"] = "500ms"
	h.start()
	h.fake.Hang(fakeinfisical.RouteListSecrets, true)
	// An answer at all proves it came before the host's 10 s timeout: the host simulator gives up at that time, with
	// an error of its own.
	_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
	wantKind(t, err, secrets.KindUpstreamError)
	h.fake.Hang(fakeinfisical.RouteListSecrets, false)
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after recovery: %q", got)
	}
}

func TestSlow_RateLimitedOnceThenServed(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.fake.FailNext(fakeinfisical.RouteListSecrets, 1, http.StatusTooManyRequests,
		"Rate limit exceeded. Please try again in 1 seconds", http.Header{"Retry-After": []string{"1"}})
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after a 429: %q", got)
	}
	if n := h.fake.Lists(); n != 2 {
		t.Fatalf("lists = %d; want 2 (the 429 and the retry after the wait it named)", n)
	}
}

func TestTokenExpiryReLogsIn(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "0"
	h.start()
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	logins := h.fake.Logins()
	h.fake.ExpireTokens()
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after token expiry: %q", got)
	}
	if h.fake.Logins() <= logins {
		t.Fatal("no new login after the token expired")
	}
}

func TestWrongClientSecretDoesNotHammerInfisical(t *testing.T) {
	h := newHarness(t)
	h.env["INFISICAL_CLIENT_SECRET"] = "wrong"
	h.env["CACHE_TTL"] = "0"
	h.start()
	// Back to back, well within the 15 s pause after a rejected login (which infisical's own tests hold to the
	// second on a manual clock).
	const gets = 60
	for range gets {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
		werr := wantKind(t, err, secrets.KindUpstreamError)
		if !containsFold(werr.Message, "authentication") {
			t.Fatalf("bad credentials error does not say authentication failed: %q", werr.Message)
		}
	}
	if logins := h.fake.Count(fakeinfisical.RouteUniversalAuthLogin); logins > 4 {
		t.Fatalf("%d gets caused %d login attempts; want at most 4", gets, logins)
	}
}
