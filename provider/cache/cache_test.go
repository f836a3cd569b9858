package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testclock"
)

type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) }

var (
	errUpstream = errors.New("upstream down")
	errNotFound = errors.New("not found")
)

// counter is a fetch function that counts its calls and returns value or err.
type counter struct {
	calls atomic.Int64
	value string
	err   error
}

func (f *counter) fetch(context.Context) (string, error) {
	n := f.calls.Add(1)
	if f.err != nil {
		return "", f.err
	}
	return fmt.Sprintf("%s#%d", f.value, n), nil
}

func newCache(t *testing.T, o Options[string]) (*Cache[string, string], *clock) {
	t.Helper()
	clk := newClock()
	o.Now = clk.Now
	if o.Final == nil {
		o.Final = func(err error) bool { return errors.Is(err, errNotFound) }
	}
	return New[string, string](o), clk
}

type step struct {
	advance time.Duration
	err     error // what the upstream returns in this step; nil = a value
	want    string
	result  Result
	wantErr error
}

func TestGet(t *testing.T) {
	const ttl, window = 30 * time.Second, 10 * time.Minute
	tests := []struct {
		name  string
		ttl   time.Duration
		steps []step
	}{
		{name: "miss then hit", ttl: ttl, steps: []step{
			{want: "v#1", result: Miss},
			{advance: ttl - time.Nanosecond, want: "v#1", result: Hit},
		}},
		{name: "expiry refetches", ttl: ttl, steps: []step{
			{want: "v#1", result: Miss},
			{advance: ttl, want: "v#2", result: Miss},
			{advance: time.Second, want: "v#2", result: Hit},
		}},
		{name: "stale served on error within window", ttl: ttl, steps: []step{
			{want: "v#1", result: Miss},
			{advance: ttl + window, err: errUpstream, want: "v#1", result: Stale},
		}},
		{name: "error past the stale window", ttl: ttl, steps: []step{
			{want: "v#1", result: Miss},
			{advance: ttl + window + time.Nanosecond, err: errUpstream, result: Miss, wantErr: errUpstream},
		}},
		{name: "error with nothing cached", ttl: ttl, steps: []step{
			{err: errUpstream, result: Miss, wantErr: errUpstream},
		}},
		{name: "final error drops the entry and is never served stale", ttl: ttl, steps: []step{
			{want: "v#1", result: Miss},
			{advance: ttl + time.Second, err: errNotFound, result: Miss, wantErr: errNotFound},
			{err: errUpstream, result: Miss, wantErr: errUpstream},
		}},
		{name: "recovers after an error", ttl: ttl, steps: []step{
			{err: errUpstream, result: Miss, wantErr: errUpstream},
			{want: "v#2", result: Miss},
			{want: "v#2", result: Hit},
		}},
		{name: "TTL 0 fetches every time", ttl: 0, steps: []step{
			{want: "v#1", result: Miss},
			{want: "v#2", result: Miss},
			{err: errUpstream, result: Miss, wantErr: errUpstream},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newCache(t, Options[string]{TTL: tt.ttl, StaleIfError: window})
			f := &counter{value: "v"}
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				f.err = s.err
				got, res, err := c.Get(context.Background(), "k", f.fetch)
				if !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
					t.Fatalf("step %d: err = %v, want %v", i, err, s.wantErr)
				}
				if got != s.want || res != s.result {
					t.Fatalf("step %d: got (%q, %s), want (%q, %s)", i, got, res, s.want, s.result)
				}
			}
		})
	}
}

func TestCoalescing(t *testing.T) {
	c, _ := newCache(t, Options[string]{TTL: time.Minute})
	const callers = 20
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var calls atomic.Int64
	fetch := func(ctx context.Context) (string, error) {
		calls.Add(1)
		select {
		case <-release:
			return "v", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}

	results := make(chan Result, callers)
	ctx := newWaitingContext()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			v, res, err := c.Get(ctx, "k", fetch)
			if err != nil || v != "v" {
				t.Errorf("Get = (%q, %v)", v, err)
			}
			results <- res
		})
	}
	eventually.True(t, "all callers to join the fetch", func() bool { return ctx.waiting.Load() == callers })
	once.Do(func() { close(release) })
	wg.Wait()
	close(results)

	if n := calls.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
	count := map[Result]int{}
	for r := range results {
		count[r]++
	}
	if count[Miss] != 1 || count[Coalesced] != callers-1 {
		t.Errorf("results = %v, want 1 miss and %d coalesced", count, callers-1)
	}
	if _, res, _ := c.Get(context.Background(), "k", fetch); res != Hit {
		t.Errorf("after the fetch: %s, want hit", res)
	}
}

func TestTTLZeroStillCoalesces(t *testing.T) {
	c, _ := newCache(t, Options[string]{})
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var calls atomic.Int64
	fetch := func(context.Context) (string, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}
	ctx := newWaitingContext()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { _, _, _ = c.Get(ctx, "k", fetch) })
	}
	eventually.True(t, "callers to join", func() bool { return ctx.waiting.Load() == 5 })
	once.Do(func() { close(release) })
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
	if c.Len() != 0 {
		t.Errorf("Len = %d, want 0: TTL 0 stores nothing", c.Len())
	}
}

func TestCallerContextEnds(t *testing.T) {
	const ttl, window = 30 * time.Second, 10 * time.Minute
	tests := []struct {
		name      string
		seed      bool // cache a value first, then let it expire
		wantValue string
		wantRes   Result
		wantErr   bool
	}{
		{name: "stale value served", seed: true, wantValue: "old", wantRes: Stale},
		{name: "no stale value: error", seed: false, wantRes: Miss, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newCache(t, Options[string]{TTL: ttl, StaleIfError: window, FetchTimeout: time.Minute})
			if tt.seed {
				if _, _, err := c.Get(context.Background(), "k", func(context.Context) (string, error) { return "old", nil }); err != nil {
					t.Fatal(err)
				}
				clk.Advance(ttl + time.Second)
			}
			release := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			started := make(chan struct{})
			fetchErr := make(chan error, 1)
			fetch := func(ctx context.Context) (string, error) {
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
				}
				fetchErr <- ctx.Err()
				return "new", ctx.Err()
			}

			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-started
				cancel()
			}()
			v, res, err := c.Get(ctx, "k", fetch)
			if tt.wantErr {
				if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for upstream") {
					t.Fatalf("err = %v, want a wrapped context.Canceled", err)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			if v != tt.wantValue || res != tt.wantRes {
				t.Fatalf("got (%q, %s), want (%q, %s)", v, res, tt.wantValue, tt.wantRes)
			}

			// The detached fetch was not cancelled with the caller: it finishes and fills the cache.
			once.Do(func() { close(release) })
			if err := <-fetchErr; err != nil {
				t.Fatalf("the shared fetch saw its context end: %v", err)
			}
			eventually.True(t, "the fetch to store its value", func() bool {
				v, age, ok := c.Stale("k")
				return ok && v == "new" && age == 0
			})
			v, res, err = c.Get(context.Background(), "k", fetch)
			if err != nil || v != "new" || res != Hit {
				t.Fatalf("next Get = (%q, %s, %v), want (new, hit, nil)", v, res, err)
			}
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	c, _ := newCache(t, Options[string]{TTL: time.Minute, FetchTimeout: time.Millisecond})
	_, _, err := c.Get(context.Background(), "k", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", fmt.Errorf("fetch: %w", ctx.Err())
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the fetch's deadline", err)
	}
}

func TestFetchKeepsContextValues(t *testing.T) {
	type ctxKey struct{}
	c, _ := newCache(t, Options[string]{TTL: time.Minute})
	ctx := context.WithValue(context.Background(), ctxKey{}, "trace")
	v, _, err := c.Get(ctx, "k", func(ctx context.Context) (string, error) {
		s, _ := ctx.Value(ctxKey{}).(string)
		return s, nil
	})
	if err != nil || v != "trace" {
		t.Fatalf("Get = (%q, %v), want the caller's context values in the fetch", v, err)
	}
}

func TestStale(t *testing.T) {
	const ttl, window = 30 * time.Second, time.Minute
	c, clk := newCache(t, Options[string]{TTL: ttl, StaleIfError: window})
	if _, _, ok := c.Stale("k"); ok {
		t.Fatal("Stale of a missing key reported ok")
	}
	f := &counter{value: "v"}
	if _, _, err := c.Get(context.Background(), "k", f.fetch); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		advance time.Duration
		wantAge time.Duration
		wantOK  bool
	}{
		{name: "fresh", advance: time.Second, wantAge: 0, wantOK: true},
		{name: "expired", advance: ttl + 4*time.Second, wantAge: 5 * time.Second, wantOK: true},
		{name: "edge of window", advance: window - 5*time.Second, wantAge: window, wantOK: true},
		{name: "past window", advance: time.Nanosecond, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Advance(tt.advance)
			v, age, ok := c.Stale("k")
			if ok != tt.wantOK || age != tt.wantAge || (ok && v != "v#1") {
				t.Fatalf("Stale = (%q, %v, %v), want (v#1, %v, %v)", v, age, ok, tt.wantAge, tt.wantOK)
			}
		})
	}
}

func TestMaxEntries(t *testing.T) {
	c, _ := newCache(t, Options[string]{TTL: time.Minute, MaxEntries: 3})
	f := &counter{value: "v"}
	get := func(key string) Result {
		t.Helper()
		_, res, err := c.Get(context.Background(), key, f.fetch)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, k := range []string{"a", "b", "c"} {
		get(k)
	}
	get("a") // now b is the least recently used
	get("d")
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	tests := []struct {
		key  string
		want Result
	}{{"a", Hit}, {"c", Hit}, {"d", Hit}, {"b", Miss}}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := get(tt.key); got != tt.want {
				t.Errorf("Get(%s) = %s, want %s", tt.key, got, tt.want)
			}
		})
	}
	if c.Len() != 3 {
		t.Fatalf("Len = %d after refetching, want 3", c.Len())
	}
}

func TestDefaultMaxEntries(t *testing.T) {
	c := New[int, int](Options[int]{TTL: time.Minute})
	for i := range DefaultMaxEntries + 10 {
		if _, _, err := c.Get(context.Background(), i, func(context.Context) (int, error) { return i, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != DefaultMaxEntries {
		t.Fatalf("Len = %d, want %d", c.Len(), DefaultMaxEntries)
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name   string
		delete func(c *Cache[string, string])
		want   map[string]Result
	}{
		{name: "Delete", delete: func(c *Cache[string, string]) { c.Delete("t1/a") },
			want: map[string]Result{"t1/a": Miss, "t1/b": Hit, "t2/a": Hit}},
		{name: "DeleteFunc", delete: func(c *Cache[string, string]) {
			c.DeleteFunc(func(k string) bool { return strings.HasPrefix(k, "t1/") })
		}, want: map[string]Result{"t1/a": Miss, "t1/b": Miss, "t2/a": Hit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t, Options[string]{TTL: time.Minute})
			f := &counter{value: "v"}
			for k := range tt.want {
				if _, _, err := c.Get(context.Background(), k, f.fetch); err != nil {
					t.Fatal(err)
				}
			}
			tt.delete(c)
			for k, want := range tt.want {
				if _, got, _ := c.Get(context.Background(), k, f.fetch); got != want {
					t.Errorf("Get(%s) = %s, want %s", k, got, want)
				}
			}
		})
	}
}

func TestFlightKeysOfDifferentTypesDoNotCollide(t *testing.T) {
	c := New[any, string](Options[string]{TTL: time.Minute})
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	slow := func(context.Context) (string, error) {
		<-release
		return "int", nil
	}
	done := make(chan string, 1)
	ctx := newWaitingContext()
	go func() {
		v, _, _ := c.Get(ctx, int(1), slow)
		done <- v
	}()
	eventually.True(t, "the first fetch to start", func() bool { return ctx.waiting.Load() == 1 })
	v, res, err := c.Get(context.Background(), int64(1), func(context.Context) (string, error) { return "int64", nil })
	if err != nil || v != "int64" || res != Miss {
		t.Fatalf("Get(int64(1)) = (%q, %s, %v), want its own fetch", v, res, err)
	}
	once.Do(func() { close(release) })
	if v := <-done; v != "int" {
		t.Fatalf("Get(int(1)) = %q", v)
	}
}

func TestConcurrentUse(t *testing.T) {
	c, clk := newCache(t, Options[string]{TTL: time.Second, StaleIfError: time.Second, MaxEntries: 8})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprint(i % 12)
				_, _, _ = c.Get(context.Background(), key, func(context.Context) (string, error) {
					if i%5 == 0 {
						return "", errUpstream
					}
					return key, nil
				})
				switch i % 50 {
				case 0:
					clk.Advance(700 * time.Millisecond)
				case 1:
					c.DeleteFunc(func(k string) bool { return k == fmt.Sprint(g) })
				}
				c.Stale(key)
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 8 {
		t.Fatalf("Len = %d, above MaxEntries", n)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := New[string, string](Options[string]{TTL: time.Hour})
	fetch := func(context.Context) (string, error) { return "v", nil }
	ctx := context.Background()
	if _, _, err := c.Get(ctx, "k", fetch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, res, _ := c.Get(ctx, "k", fetch); res != Hit {
				b.Fatalf("result %s", res)
			}
		}
	})
}

// secretPanic is a panic value whose text must never reach an error.
type secretPanic struct{ value string }

func TestFetchPanicBecomesAnError(t *testing.T) {
	const ttl, window = 30 * time.Second, time.Minute
	tests := []struct {
		name      string
		panicWith func()
		cached    bool // a value is cached (and expired) before the panicking fetch
		want      string
		result    Result
		wantText  string // in the error
	}{
		{name: "string value", panicWith: func() { panic("s3cr3t-token") }, result: Miss, wantText: "a value of type string"},
		{name: "struct value", panicWith: func() { panic(secretPanic{value: "s3cr3t-token"}) }, result: Miss, wantText: "cache.secretPanic"},
		{name: "runtime error", panicWith: func() {
			var m map[string]*secretPanic
			_ = m["s3cr3t-token"].value
		}, result: Miss, wantText: "nil pointer dereference"},
		{name: "stale value served", panicWith: func() { panic("s3cr3t-token") }, cached: true, want: "v#1", result: Stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newCache(t, Options[string]{TTL: ttl, StaleIfError: window})
			if tt.cached {
				f := &counter{value: "v"}
				if _, _, err := c.Get(context.Background(), "k", f.fetch); err != nil {
					t.Fatal(err)
				}
				clk.Advance(ttl)
			}
			got, res, err := c.Get(context.Background(), "k", func(context.Context) (string, error) {
				tt.panicWith()
				return "unreachable", nil
			})
			if got != tt.want || res != tt.result {
				t.Fatalf("got (%q, %s), want (%q, %s)", got, res, tt.want, tt.result)
			}
			if tt.wantText == "" {
				if err != nil {
					t.Fatalf("err = %v, want the stale value", err)
				}
				return
			}
			if !errors.Is(err, ErrFetchPanicked) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v, want %v saying %q", err, ErrFetchPanicked, tt.wantText)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("err = %v: the panic value leaked", err)
			}
		})
	}
}

// A value that another tier read earlier (the shared cache) stays fresh only for what is left of its TTL.
func TestFetchedAtStampsValues(t *testing.T) {
	const ttl = 30 * time.Second
	type stamped struct {
		v  string
		at time.Time
	}
	clk := newClock()
	c := New[string, stamped](Options[stamped]{TTL: ttl, StaleIfError: time.Minute, Now: clk.Now,
		FetchedAt: func(s stamped) time.Time { return s.at }})
	var calls int
	fetch := func(context.Context) (stamped, error) {
		calls++
		return stamped{v: fmt.Sprint("v", calls), at: clk.Now().Add(-20 * time.Second)}, nil
	}
	steps := []struct {
		advance time.Duration
		want    string
		result  Result
	}{
		{want: "v1", result: Miss},
		{advance: 9 * time.Second, want: "v1", result: Hit},
		{advance: time.Second, want: "v2", result: Miss}, // 20 s + 10 s: its TTL is over
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		got, res, err := c.Get(context.Background(), "k", fetch)
		if err != nil || got.v != s.want || res != s.result {
			t.Fatalf("step %d: got (%q, %s, %v), want (%q, %s)", i, got.v, res, err, s.want, s.result)
		}
	}
	// A stamp in the future (a clock ahead of ours) counts from now, never beyond.
	future := New[string, stamped](Options[stamped]{TTL: ttl, Now: clk.Now, FetchedAt: func(s stamped) time.Time { return s.at }})
	if _, _, err := future.Get(context.Background(), "k", func(context.Context) (stamped, error) {
		return stamped{v: "f", at: clk.Now().Add(time.Hour)}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, at, ok := future.Latest("k"); !ok || !at.Equal(clk.Now()) {
		t.Fatalf("a future stamp was stored as %v (ok %v); want now, %v", at, ok, clk.Now())
	}
}

func TestPutAndLatest(t *testing.T) {
	const ttl, window = 30 * time.Second, time.Minute
	c, clk := newCache(t, Options[string]{TTL: ttl, StaleIfError: window})
	if _, _, ok := c.Latest("k"); ok {
		t.Fatal("Latest of a missing key reported ok")
	}
	// Put with an old time: past its TTL, so a Get fetches, and the put value is the stale fallback.
	c.Put("k", "put", clk.Now().Add(-ttl-time.Second))
	if v, at, ok := c.Latest("k"); !ok || v != "put" || !at.Equal(clk.Now().Add(-ttl-time.Second)) {
		t.Fatalf("Latest = (%q, %v, %v)", v, at, ok)
	}
	got, res, err := c.Get(context.Background(), "k", (&counter{err: errUpstream}).fetch)
	if err != nil || got != "put" || res != Stale {
		t.Fatalf("Get with a failing fetch = (%q, %s, %v); want the put value, stale", got, res, err)
	}
	c.Put("k", "fresh", clk.Now())
	f := &counter{value: "v"}
	if got, res, _ := c.Get(context.Background(), "k", f.fetch); got != "fresh" || res != Hit || f.calls.Load() != 0 {
		t.Fatalf("Get after Put = (%q, %s), %d fetches; want the put value, hit, none", got, res, f.calls.Load())
	}
	// TTL 0 stores nothing, Put included.
	off, _ := newCache(t, Options[string]{})
	off.Put("k", "v", time.Now())
	if off.Len() != 0 {
		t.Fatal("a cache with TTL 0 stored a Put")
	}
}

func TestGetWithin(t *testing.T) {
	const ttl = 30 * time.Second
	c, clk := newCache(t, Options[string]{TTL: ttl, StaleIfError: time.Minute})
	f := &counter{value: "v"}
	if _, _, err := c.Get(context.Background(), "k", f.fetch); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	tests := []struct {
		name   string
		maxAge time.Duration
		want   string
		result Result
	}{
		{name: "younger than maxAge", maxAge: 20 * time.Second, want: "v#1", result: Hit},
		{name: "older than maxAge", maxAge: 5 * time.Second, want: "v#2", result: Miss},
		{name: "maxAge beyond the TTL is the TTL", maxAge: time.Hour, want: "v#2", result: Hit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, err := c.GetWithin(context.Background(), "k", tt.maxAge, f.fetch)
			if err != nil || got != tt.want || res != tt.result {
				t.Fatalf("GetWithin = (%q, %s, %v), want (%q, %s)", got, res, err, tt.want, tt.result)
			}
		})
	}
	// A refetch that fails still falls back to the stale value.
	f.err = errUpstream
	clk.Advance(time.Second)
	if got, res, err := c.GetWithin(context.Background(), "k", time.Nanosecond, f.fetch); err != nil || got != "v#2" || res != Stale {
		t.Fatalf("GetWithin with a failing fetch = (%q, %s, %v); want the stale value", got, res, err)
	}
}

// Fresh answers as Get would without fetching: a value younger than the TTL, and nothing once it is older.
func TestFresh(t *testing.T) {
	c, clk := newCache(t, Options[string]{TTL: time.Minute, StaleIfError: time.Hour})
	if _, ok := c.Fresh("k"); ok {
		t.Fatal("Fresh found a value never stored")
	}
	c.Put("k", "v", clk.Now())
	if v, ok := c.Fresh("k"); !ok || v != "v" {
		t.Fatalf("Fresh = %q, %v; want v, true", v, ok)
	}
	clk.Advance(time.Minute)
	if _, ok := c.Fresh("k"); ok {
		t.Fatal("Fresh answered with a value as old as the TTL")
	}
	if _, _, stale := c.Stale("k"); !stale {
		t.Fatal("the expired value is no longer a stale fallback")
	}
}
