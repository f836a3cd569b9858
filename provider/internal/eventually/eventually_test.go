package eventually

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB whose Fatalf records the failure instead of ending the test, so that these tests can
// see the helper fail.
type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) { r.failure = fmt.Sprintf(format, args...) }

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	var polls atomic.Int32
	rec := &recorder{TB: t}
	True(rec, "the third poll", func() bool { return polls.Add(1) == 3 })
	if rec.failure != "" {
		t.Fatalf("failed: %s", rec.failure)
	}
	if n := polls.Load(); n != 3 {
		t.Fatalf("polled %d times; want 3 (it returns at the first poll that holds)", n)
	}
}

func TestTrueSeesAnotherGoroutine(t *testing.T) {
	var done atomic.Bool
	go func() { done.Store(true) }()
	True(t, "the goroutine to run", done.Load)
}

func TestNoErrorFailsWithWhatAndTheLastError(t *testing.T) {
	rec := &recorder{TB: t}
	polls := 0
	Within(20*time.Millisecond).NoError(rec, "the answer", func() error {
		polls++
		return fmt.Errorf("poll %d: not yet", polls)
	})
	want := fmt.Sprintf("waited 20ms for the answer: poll %d: not yet", polls)
	if rec.failure != want {
		t.Fatalf("failure %q; want %q", rec.failure, want)
	}
}

func TestTrueFailsNamingWhatItWaitedFor(t *testing.T) {
	rec := &recorder{TB: t}
	Within(time.Millisecond).True(rec, "the flag", func() bool { return false })
	if !strings.HasPrefix(rec.failure, "waited 1ms for the flag: ") {
		t.Fatalf("failure %q; want it to name the wait and what was awaited", rec.failure)
	}
}

func TestEveryPollsAtTheGivenPace(t *testing.T) {
	rec := &recorder{TB: t}
	var polls []time.Time
	Within(35*time.Millisecond).Every(10*time.Millisecond).NoError(rec, "nothing", func() error {
		polls = append(polls, time.Now())
		return errors.New("never")
	})
	if rec.failure == "" {
		t.Fatal("a condition that never holds did not fail")
	}
	// A pause between polls can only be longer than asked (a busy machine), never shorter.
	for i := 1; i < len(polls); i++ {
		if gap := polls[i].Sub(polls[i-1]); gap < 10*time.Millisecond {
			t.Fatalf("polls %d and %d were %s apart; want at least the 10ms asked for", i-1, i, gap)
		}
	}
}
