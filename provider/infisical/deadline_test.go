package infisical

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// When a read gives up, in testing/synctest's fake time: the waits between attempts, each attempt's UpstreamTimeout
// and the caller's deadline are exact here, where against a real server a test could only bound them loosely (and
// fail on a loaded machine). Each attempt is a call() of a function standing in for the SDK, so that nothing but the
// client's own timing is measured; the other tests hold what the SDK and the fake server answer.
func TestReadTimingInFakeTime(t *testing.T) {
	serverError := func() (string, error) {
		return "", &Error{Kind: KindUnavailable, Status: 500, Message: "Something went wrong"}
	}
	tests := []struct {
		name            string
		upstreamTimeout time.Duration
		budget          time.Duration // the caller's deadline
		// attempt stands in for one SDK call; hang is closed when the test ends.
		attempt      func(hang <-chan struct{}) (string, error)
		wantAttempts int
		wantKind     ErrorKind // 0 = success
		wantMessage  string
		// The read returns after at least minElapsed and at most maxElapsed (the waits between attempts are drawn at
		// random from a range).
		minElapsed, maxElapsed time.Duration
	}{
		{
			name: "a 500 is tried three times, backing off", budget: 8 * time.Second,
			attempt:      func(<-chan struct{}) (string, error) { return serverError() },
			wantAttempts: MaxAttempts, wantKind: KindUnavailable, wantMessage: "Something went wrong",
			// 50-100 ms, then 100-200 ms
			minElapsed: 150 * time.Millisecond, maxElapsed: 300 * time.Millisecond,
		},
		{
			name: "500 until the budget runs out", budget: 120 * time.Millisecond,
			attempt: func(<-chan struct{}) (string, error) { return serverError() },
			// The first wait (50-100 ms) fits the 120 ms, the second (100-200 ms) no longer does.
			wantAttempts: 2, wantKind: KindUnavailable, wantMessage: "Something went wrong",
			minElapsed: 50 * time.Millisecond, maxElapsed: 100 * time.Millisecond,
		},
		{
			name: "a slow failing Infisical is not retried past the budget", budget: 600 * time.Millisecond,
			attempt: func(<-chan struct{}) (string, error) {
				time.Sleep(240 * time.Millisecond) // the subject: each failing answer takes this long
				return serverError()
			},
			// 240 ms, a wait of 50-100 ms, 240 ms: what is left (20-70 ms) fits no second wait of 100-200 ms.
			wantAttempts: 2, wantKind: KindUnavailable, wantMessage: "Something went wrong",
			minElapsed: 530 * time.Millisecond, maxElapsed: 580 * time.Millisecond,
		},
		{
			name: "a hung call ends at UpstreamTimeout", upstreamTimeout: 200 * time.Millisecond, budget: time.Second,
			attempt:      func(hang <-chan struct{}) (string, error) { <-hang; return "", nil },
			wantAttempts: 1, wantKind: KindTimeout, wantMessage: "no answer within 200ms",
			minElapsed: 200 * time.Millisecond, maxElapsed: 200 * time.Millisecond,
		},
		{
			name: "a hung call ends at the caller's deadline when that comes first", upstreamTimeout: time.Second,
			budget:       300 * time.Millisecond,
			attempt:      func(hang <-chan struct{}) (string, error) { <-hang; return "", nil },
			wantAttempts: 1, wantKind: KindTimeout, wantMessage: "the deadline passed before Infisical answered",
			minElapsed: 300 * time.Millisecond, maxElapsed: 300 * time.Millisecond,
		},
		{
			name: "a 429 naming a wait beyond the budget is not waited for", budget: 700 * time.Millisecond,
			attempt: func(<-chan struct{}) (string, error) {
				return "", &Error{Kind: KindRateLimited, Status: 429, RetryAfter: 5 * time.Second, Message: "Rate limit exceeded"}
			},
			wantAttempts: 1, wantKind: KindRateLimited, wantMessage: "Rate limit exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				hang := make(chan struct{})
				defer close(hang) // lets abandoned attempts return before the bubble ends
				c, err := New(Config{
					Auth:            Credentials{Method: MethodToken, AccessToken: "token"},
					UpstreamTimeout: tt.upstreamTimeout,
					Logger:          slog.New(slog.DiscardHandler),
				})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), tt.budget)
				defer cancel()
				attempts := 0
				start := time.Now()
				_, err = retrying(c, ctx, "read", func(*session, int) (string, error) {
					attempts++
					return call(c, ctx, routeGet, func() (string, error) { return tt.attempt(hang) })
				})
				elapsed := time.Since(start)
				if tt.wantKind == 0 && err != nil {
					t.Fatalf("read: %v", err)
				} else if tt.wantKind != 0 {
					wantKind(t, err, tt.wantKind, tt.wantMessage)
				}
				if attempts != tt.wantAttempts {
					t.Errorf("%d attempts, want %d", attempts, tt.wantAttempts)
				}
				if elapsed < tt.minElapsed || elapsed > tt.maxElapsed || elapsed > tt.budget {
					t.Errorf("the read returned after %s; want %s to %s, within its %s budget", elapsed, tt.minElapsed, tt.maxElapsed, tt.budget)
				}
			})
		})
	}
}

// A 429 whose named wait fits the budget is waited for exactly, and the read then succeeds.
func TestRateLimitWaitInFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{Auth: Credentials{Method: MethodToken, AccessToken: "token"}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var at []time.Duration
		start := time.Now()
		got, err := retrying(c, ctx, "read", func(*session, int) (string, error) {
			at = append(at, time.Since(start))
			if len(at) == 1 {
				return "", &Error{Kind: KindRateLimited, Status: 429, RetryAfter: time.Second, Message: "Rate limit exceeded"}
			}
			return "value", nil
		})
		if err != nil || got != "value" {
			t.Fatalf("read: %q, %v", got, err)
		}
		if len(at) != 2 || at[0] != 0 || at[1] != time.Second {
			t.Fatalf("attempts at %v; want two, the second exactly the named 1s after the first", at)
		}
	})
}
