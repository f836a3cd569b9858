package e2e

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// Prefetch is on by default, so a get costs one list of its folder; the same holds for reads with it off.
func TestConcurrentGetsCoalesceIntoOneCall(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "400ms"
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
	waitFor(t, "the first list to reach Infisical", func() bool { return h.fake.Lists() >= 1 })
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
	time.Sleep(500 * time.Millisecond) // past the real CACHE_TTL of the process under test
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	if n := h.fake.Lists(); n != 2 {
		t.Fatalf("a repeat after CACHE_TTL made %d lists in all; want 2", n)
	}
}

func TestStaleIfError(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "200ms"
	h.env["STALE_IF_ERROR"] = "1500ms"
	h.env["UPSTREAM_TIMEOUT"] = "300ms"
	h.start()
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	time.Sleep(300 * time.Millisecond) // past the TTL
	h.fake.FailNext(fakeinfisical.RouteAll, 100000, http.StatusInternalServerError, "Something went wrong", nil)
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("stale value = %q", got)
	}
	time.Sleep(1500 * time.Millisecond) // past STALE_IF_ERROR
	_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
	wantKind(t, err, secrets.KindUpstreamError)

	// Infisical down entirely behaves the same for a value cached earlier.
	h.fake.FailNext(fakeinfisical.RouteAll, 0, 0, "", nil)
	h.mustString(hostsim.Ref{Key: "/payments/API_KEY"})
	time.Sleep(300 * time.Millisecond)
	h.fake.Down(true)
	defer h.fake.Down(false)
	if got := h.mustString(hostsim.Ref{Key: "/payments/API_KEY"}); got != "pay-key" {
		t.Fatalf("stale value with Infisical down = %q", got)
	}
}

func TestNotFoundIsNeverServedStale(t *testing.T) {
	h := newHarness(t)
	h.env["CACHE_TTL"] = "100ms"
	h.start()
	h.mustString(hostsim.Ref{Key: "/shop/TOKEN"})
	h.fake.DeleteSecret(project, "prod", "/shop", "TOKEN")
	time.Sleep(200 * time.Millisecond)
	_, err := h.fetch(hostsim.Ref{Key: "/shop/TOKEN"})
	wantKind(t, err, secrets.KindSecretNotFound)
}

func TestHangingInfisicalCostsOneBudget(t *testing.T) {
	h := newHarness(t)
	h.env["UPSTREAM_TIMEOUT"] = "500ms"
	h.start()
	h.fake.Hang(fakeinfisical.RouteListSecrets, true)
	start := time.Now()
	_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
	wantKind(t, err, secrets.KindUpstreamError)
	if took := time.Since(start); took >= 10*time.Second {
		t.Fatalf("the host waited %s: past its 10 s timeout", took)
	}
	h.fake.Hang(fakeinfisical.RouteListSecrets, false)
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after recovery: %q", got)
	}
}

func TestRateLimitedOnceThenServed(t *testing.T) {
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
	deadline := time.Now().Add(6 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
		werr := wantKind(t, err, secrets.KindUpstreamError)
		if !containsFold(werr.Message, "authentication") {
			t.Fatalf("bad credentials error does not say authentication failed: %q", werr.Message)
		}
		n++
		time.Sleep(100 * time.Millisecond)
	}
	if logins := h.fake.Count(fakeinfisical.RouteUniversalAuthLogin); logins > 4 {
		t.Fatalf("%d gets over 6s caused %d login attempts; want at most 4", n, logins)
	}
}
