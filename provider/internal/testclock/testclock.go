// Package testclock is the manual clock tests inject where code takes a `now func() time.Time` (and, for code that
// schedules work, an `afterFunc`): a test moves time with Advance instead of sleeping, so time-dependent behaviour
// is deterministic on a loaded machine.
package testclock

import (
	"slices"
	"sync"
	"time"
)

// Clock is a clock that only moves when told to. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at time.Time
	f  func()
}

// New returns a clock standing at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arranges for f to run once the clock has been advanced by d, as time.AfterFunc does on the real clock.
// The returned stop cancels it and reports whether it did (false once f has run or was stopped).
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Timers returns how many AfterFunc callbacks are waiting for the clock: a test waits for the code under test to
// have scheduled its work before it advances the clock past it.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves the clock forward by d and runs, in the order they are due, the callbacks of the timers it passes
// (a timer a callback schedules runs too if it falls due by the new time). Unlike time.AfterFunc, each callback
// runs on the caller's goroutine before Advance returns: when Advance returns, what the timers started has
// happened, with no need to wait for it.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		next := -1
		for i, t := range c.timers {
			if !t.at.After(end) && (next < 0 || t.at.Before(c.timers[next].at)) {
				next = i
			}
		}
		if next < 0 {
			c.now = end
			c.mu.Unlock()
			return
		}
		t := c.timers[next]
		c.timers = slices.Delete(c.timers, next, next+1)
		if t.at.After(c.now) {
			c.now = t.at // the callback sees the time it was due at
		}
		c.mu.Unlock()
		t.f() // without the lock: a callback may read the clock or schedule another timer
	}
}
