// Package eventually is how tests wait for what another goroutine or process will do: poll a condition until it
// holds, and fail with what was awaited (and what the condition last saw) once a deadline passes. It replaces
// sleeps used as synchronisation, which are too short on a loaded machine and needlessly long on an idle one.
//
// The deadline bounds a wait that should end long before it, unless a test says that it is the claim under test
// (gets served again within five seconds of losing a NATS node). Tests whose subject is the code's own timing move
// a manual clock (internal/testclock) or run in testing/synctest instead.
package eventually

import (
	"errors"
	"testing"
	"time"
)

// DefaultWithin bounds a wait: generous, since a loaded machine running the race detector can be slow, and costing
// nothing when the condition holds early.
const DefaultWithin = 10 * time.Second

// maxInterval caps the pause between polls, which starts short so that a condition holding at once is seen at
// once, and doubles so that an expensive one (a NATS round trip, a command) is not run in a tight loop.
const maxInterval = 50 * time.Millisecond

// Poll is a wait with a deadline. The zero value waits DefaultWithin.
type Poll struct {
	within time.Duration
	every  time.Duration // fixed pause between polls; 0 = from 1 ms doubling to maxInterval
}

// Within returns a wait that gives up after d.
func Within(d time.Duration) Poll { return Poll{within: d} }

// Every returns p polling every d instead of backing off, for conditions too costly to run more often.
func (p Poll) Every(d time.Duration) Poll {
	p.every = d
	return p
}

// True polls cond until it holds; after the deadline it fails tb with what.
func True(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Poll{}.True(tb, what, cond)
}

// NoError polls cond until it returns nil; after the deadline it fails tb with what and cond's last error.
func NoError(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	Poll{}.NoError(tb, what, cond)
}

// True polls cond until it holds; after the deadline it fails tb with what.
func (p Poll) True(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	p.NoError(tb, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("the condition does not hold")

// NoError polls cond until it returns nil; after the deadline it fails tb with what and cond's last error.
func (p Poll) NoError(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	within := p.within
	if within <= 0 {
		within = DefaultWithin
	}
	deadline := time.Now().Add(within)
	interval := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited %s for %s: %v", within, what, err)
			return
		}
		pause := p.every
		if pause <= 0 {
			pause = interval
			interval = min(2*interval, maxInterval)
		}
		time.Sleep(pause)
	}
}
