package infisical

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
)

// Infisical Cloud counts requests per client IP, whoever makes them: a 429 seen by one identity pauses every
// identity's calls to that URL for the time Infisical names, and a call during the pause is refused at once, with
// the wait in its message, instead of being sent to prolong the limit.
func TestRateLimitPausesEveryIdentityOnTheURL(t *testing.T) {
	t.Parallel()
	fake := newFake(t)
	fake.AddIdentity("other-id", "other-secret", project)
	clk := testclock.New(time.Now())
	limits := NewRateLimits(clk.Now)
	first := newClient(t, fake.URL, func(c *Config) { c.RateLimits = limits })
	second := newClient(t, fake.URL, func(c *Config) {
		c.RateLimits = limits
		c.Auth = Credentials{ClientID: "other-id", ClientSecret: "other-secret"}
	})
	elsewhere := newFake(t) // another Infisical: its budget is its own
	third := newClient(t, elsewhere.URL, func(c *Config) { c.RateLimits = limits })
	mustLogin(t, first)

	fake.FailNext(fakeinfisical.RouteGetSecret, 1, http.StatusTooManyRequests,
		"Rate limit exceeded. Please try again in 30 seconds", http.Header{"Retry-After": {"30"}})
	_, err := first.GetSecret(ctxWithin(t, 2*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindRateLimited, "try again in 30 seconds")
	if n := fake.Reads(); n != 1 {
		t.Fatalf("%d reads; want 1: a wait beyond the deadline is not waited", n)
	}
	if wait := limits.Wait(fake.URL); wait != 30*time.Second {
		t.Fatalf("pause = %v; want the 30s Infisical named", wait)
	}

	calls := fake.Count(fakeinfisical.RouteAll)
	for _, c := range []*Client{first, second} { // second is not even logged in: its login waits too
		_, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
		e := wantKind(t, err, KindRateLimited, "retry in 30s")
		if !errors.Is(e, ErrPaused) || e.RetryAfter != 30*time.Second {
			t.Fatalf("error %v: want ErrPaused with RetryAfter 30s", e)
		}
	}
	if n := fake.Count(fakeinfisical.RouteAll); n != calls {
		t.Fatalf("%d calls reached Infisical during the pause", n-calls)
	}
	if got, err := third.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil || got.Value != "root-value" {
		t.Fatalf("another Infisical URL: %+v, %v; want its value", got, err)
	}

	clk.Advance(29 * time.Second)
	_, err = second.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT"))
	wantKind(t, err, KindRateLimited, "retry in 1s")
	clk.Advance(time.Second)
	for _, c := range []*Client{first, second} {
		if got, err := c.GetSecret(ctxWithin(t, 5*time.Second), rootRef("ROOT")); err != nil || got.Value != "root-value" {
			t.Fatalf("after the pause: %+v, %v", got, err)
		}
	}
}

// A later 429 naming a longer wait extends the pause; a shorter one never cuts it; an absurd one is capped; one
// that names no wait pauses for DefaultRateLimitPause.
func TestRateLimitPauseLength(t *testing.T) {
	t.Parallel()
	clk := testclock.New(time.Now())
	l := NewRateLimits(clk.Now)
	const url = "https://infisical.example"
	steps := []struct {
		pause, advance, want time.Duration
	}{
		{pause: 10 * time.Second, want: 10 * time.Second},
		{pause: 20 * time.Second, want: 20 * time.Second},
		{pause: 5 * time.Second, want: 20 * time.Second},
		{advance: 20 * time.Second, want: 0},
		{pause: 0, want: DefaultRateLimitPause},
		{advance: DefaultRateLimitPause, pause: 24 * time.Hour, want: MaxRateLimitPause},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if s.pause != 0 || s.want == DefaultRateLimitPause {
			l.Pause(url, s.pause)
		}
		if got := l.Wait(url); got != s.want {
			t.Fatalf("step %d: wait = %v; want %v", i, got, s.want)
		}
	}
	if l.Wait("https://other.example") != 0 {
		t.Fatal("a pause of one URL paused another")
	}
}

func TestPausedErrorNamesTheWait(t *testing.T) {
	e := pausedError(12 * time.Second)
	if msg := e.Error(); !strings.Contains(msg, "retry in 12s") || !strings.Contains(msg, "429") {
		t.Fatalf("message %q: want the wait and the reason", msg)
	}
}
