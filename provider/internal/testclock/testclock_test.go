package testclock

import (
	"slices"
	"testing"
	"time"
)

var start = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestAdvanceRunsDueTimersInOrderAtTheirTime(t *testing.T) {
	c := New(start)
	var ran []string
	var seen []time.Duration
	at := func(name string) func() {
		return func() { ran = append(ran, name); seen = append(seen, c.Now().Sub(start)) }
	}
	c.AfterFunc(3*time.Second, at("3s"))
	c.AfterFunc(time.Second, at("1s"))
	c.AfterFunc(10*time.Second, at("10s"))
	c.AfterFunc(2*time.Second, func() {
		at("2s")()
		c.AfterFunc(time.Second, at("2s+1s")) // due at 3s, within this Advance
	})

	c.Advance(999 * time.Millisecond)
	if len(ran) != 0 || c.Timers() != 4 {
		t.Fatalf("ran %v before any timer was due, %d timers left; want none run, 4 left", ran, c.Timers())
	}
	c.Advance(4 * time.Second)
	if want := []string{"1s", "2s", "3s", "2s+1s"}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v; want %v", ran, want)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}; !slices.Equal(seen, want) {
		t.Fatalf("callbacks saw the clock at %v; want the times they were due at, %v", seen, want)
	}
	if got := c.Now().Sub(start); got != 4999*time.Millisecond {
		t.Fatalf("clock at %s after the Advance; want 4.999s", got)
	}
	if n := c.Timers(); n != 1 {
		t.Fatalf("%d timers left; want the one due at 10s", n)
	}
}

func TestStopCancelsATimerOnce(t *testing.T) {
	c := New(start)
	ran := false
	stop := c.AfterFunc(time.Second, func() { ran = true })
	if !stop() {
		t.Fatal("stop of a pending timer reported false")
	}
	if stop() {
		t.Fatal("a second stop reported true")
	}
	c.Advance(time.Minute)
	if ran || c.Timers() != 0 {
		t.Fatalf("a stopped timer ran (%v) or is still pending (%d)", ran, c.Timers())
	}
	fired := c.AfterFunc(time.Second, func() {})
	c.Advance(time.Second)
	if fired() {
		t.Fatal("stop of a timer that already ran reported true")
	}
}
