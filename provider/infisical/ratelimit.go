package infisical

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Bounds of a pause after a 429.
const (
	// DefaultRateLimitPause applies when a 429 names no wait. (The SDK hides the Retry-After header, so the wait
	// comes from the "try again in N seconds" of Infisical's message.)
	DefaultRateLimitPause = 5 * time.Second
	// MaxRateLimitPause caps what a 429 may name: Infisical's limits are per minute, and a proxy's or a broken
	// server's "try again in a day" must not stop the provider for a day.
	MaxRateLimitPause = 2 * time.Minute
)

// ErrPaused is wrapped by the error of a call that was not sent because Infisical answered 429 to an earlier one.
var ErrPaused = errors.New("calls to Infisical are paused after a 429")

// RateLimits is the rate-limit budget of the Infisical instances a process talks to, shared by every Client that
// is given it. Infisical Cloud counts requests per client IP, for every identity and replica behind it, so a 429
// seen by one identity pauses the calls of all of them to that URL for the time Infisical names: calls made during
// the pause would only be refused and prolong it. It is safe for concurrent use.
type RateLimits struct {
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time // base URL -> end of its pause
}

// NewRateLimits returns an empty budget; now defaults to time.Now.
func NewRateLimits(now func() time.Time) *RateLimits {
	if now == nil {
		now = time.Now
	}
	return &RateLimits{now: now, until: map[string]time.Time{}}
}

// Wait returns how long calls to url remain paused; 0 when they are not.
func (l *RateLimits) Wait(url string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.until[url]
	if !ok {
		return 0
	}
	wait := until.Sub(l.now())
	if wait <= 0 {
		delete(l.until, url)
		return 0
	}
	return wait
}

// Pause stops calls to url for d (DefaultRateLimitPause when d is 0, at most MaxRateLimitPause). A pause already
// running that ends later is kept. It reports whether this extended the pause.
func (l *RateLimits) Pause(url string, d time.Duration) bool {
	if d <= 0 {
		d = DefaultRateLimitPause
	}
	d = min(d, MaxRateLimitPause)
	l.mu.Lock()
	defer l.mu.Unlock()
	until := l.now().Add(d)
	if prev, ok := l.until[url]; ok && !until.After(prev) {
		return false
	}
	l.until[url] = until
	return true
}

// pausedError is what a call refused during a pause returns: a rate-limit error that names the wait.
func pausedError(wait time.Duration) *Error {
	return &Error{Kind: KindRateLimited, RetryAfter: wait, Err: ErrPaused,
		Message: "not sent: Infisical answered 429 to an earlier call, so calls to it are paused for every identity until its limit resets"}
}

// checkPause refuses a call to this client's Infisical while a 429's pause runs, counting the refusal.
func (c *Client) checkPause(ctx context.Context, r route) error {
	wait := c.limits.Wait(c.baseURL)
	if wait <= 0 {
		return nil
	}
	c.tel.refused.Add(ctx, 1, metric.WithAttributes(r.attr()))
	return pausedError(wait)
}

// notePause starts or extends the pause when Infisical answered 429.
func (c *Client) notePause(ctx context.Context, e *Error) {
	if e == nil || e.Kind != KindRateLimited || e.Status == 0 || errors.Is(e, ErrPaused) {
		return
	}
	wait := min(max(e.RetryAfter, 0), MaxRateLimitPause)
	if wait == 0 {
		wait = DefaultRateLimitPause
	}
	if c.limits.Pause(c.baseURL, wait) {
		c.tel.pauses.Add(ctx, 1)
		c.tel.pauseSeconds.Add(ctx, wait.Seconds())
		c.log.Warn("Infisical is rate limiting: pausing every call to it; cached values are still served",
			"url", c.baseURL, "pause", wait.String(), "req_id", e.RequestID)
	}
}
