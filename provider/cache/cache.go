// Package cache is a small, bounded, generic TTL cache for values read from a slow or flaky upstream.
//
// It does three things a plain map does not:
//   - coalescing: concurrent Gets for one key share one fetch (golang.org/x/sync/singleflight), so a burst of
//     requests for a cold key costs the upstream one call;
//   - detachment: the shared fetch runs on a context detached from the caller that started it (values such as the
//     trace span are kept, cancellation is not) and bounded by FetchTimeout, so one impatient caller cannot cancel
//     the fetch the others wait for; every caller waits only as long as its own context allows;
//   - stale-if-error: when the upstream fails (or a caller's context ends first), a value that expired no more than
//     StaleIfError ago is served instead of an error, unless the error is Final (for example "not found"), which
//     drops the entry so that a deleted value is never resurrected.
//
// A value may carry the time it was really read (Options.FetchedAt, Put), so that one kept by another tier (the
// cache shared between replicas) is fresh only for what is left of its TTL; GetWithin asks for a younger value than
// the TTL where a caller needs one (a "not found" must come from a recent read).
//
// TTL 0 disables caching completely: nothing is stored (so nothing can be served stale either), but concurrent Gets
// for one key still share one fetch. The cache holds at most MaxEntries values and evicts the least recently used.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Result says how Get obtained its value.
type Result string

const (
	Hit       Result = "hit"       // a fresh cached value
	Miss      Result = "miss"      // this caller started the fetch
	Coalesced Result = "coalesced" // this caller joined a fetch another caller started
	Stale     Result = "stale"     // the fetch failed or took too long; an expired value within StaleIfError
)

// DefaultMaxEntries bounds a cache whose Options.MaxEntries is not positive.
const DefaultMaxEntries = 10000

// Options configures a Cache. The zero value is a cache that stores nothing and only coalesces.
type Options[V any] struct {
	TTL          time.Duration // how long a value is fresh; 0 (or less) disables caching
	StaleIfError time.Duration // how long past TTL a value may still be served when the upstream fails
	FetchTimeout time.Duration // bound on one shared fetch; 0 = only the fetch function's own limits
	MaxEntries   int           // default DefaultMaxEntries
	Now          func() time.Time
	// Final reports errors that prove the cached value is gone (e.g. not found): the entry is dropped and the error
	// returned, never a stale value.
	Final func(error) bool
	// FetchedAt, when set, says when a fetched value was really read upstream (a value another tier kept for a
	// while); the value is fresh for what is left of its TTL from then. A zero time or a time ahead of Now counts
	// as now.
	FetchedAt func(V) time.Time
}

type entry[K comparable, V any] struct {
	key    K
	value  V
	stored time.Time
	elem   *list.Element
}

// outcome is what a shared fetch hands to every caller that waited for it.
type outcome[K comparable, V any] struct {
	key    K // lets a caller detect a flight-key collision (see flightKey)
	value  V
	cached bool // the fetch found a fresh value stored by a fetch that finished just before it
}

// Cache is safe for concurrent use. Create it with New.
type Cache[K comparable, V any] struct {
	o     Options[V]
	group singleflight.Group

	mu      sync.Mutex
	entries map[K]*entry[K, V]
	lru     *list.List // of *entry; front = most recently used
}

// New returns an empty cache.
func New[K comparable, V any](o Options[V]) *Cache[K, V] {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Final == nil {
		o.Final = func(error) bool { return false }
	}
	if o.TTL < 0 {
		o.TTL = 0
	}
	if o.StaleIfError < 0 {
		o.StaleIfError = 0
	}
	return &Cache[K, V]{o: o, entries: make(map[K]*entry[K, V]), lru: list.New()}
}

// Get returns the value for key: a fresh cached one, or the result of fetch, shared with every concurrent Get for
// the same key. fetch receives a context detached from ctx and bounded by FetchTimeout. If the fetch fails with a
// non-final error, or ctx ends before it returns, a value within StaleIfError is returned with Stale; otherwise the
// error (for ctx, wrapped as "waiting for upstream: ...").
func (c *Cache[K, V]) Get(ctx context.Context, key K, fetch func(ctx context.Context) (V, error)) (V, Result, error) {
	return c.get(ctx, key, c.o.TTL, fetch)
}

// GetWithin is Get for a caller that needs a value read no more than maxAge ago (at most the TTL): an older one is
// fetched again, and still serves as the stale fallback if that fails.
func (c *Cache[K, V]) GetWithin(ctx context.Context, key K, maxAge time.Duration, fetch func(ctx context.Context) (V, error)) (V, Result, error) {
	return c.get(ctx, key, min(maxAge, c.o.TTL), fetch)
}

func (c *Cache[K, V]) get(ctx context.Context, key K, ttl time.Duration, fetch func(ctx context.Context) (V, error)) (V, Result, error) {
	if v, ok := c.fresh(key, ttl); ok {
		return v, Hit, nil
	}
	var started atomic.Bool
	ch := c.group.DoChan(flightKey(key), func() (any, error) {
		started.Store(true)
		return c.fill(ctx, key, ttl, fetch)
	})
	select {
	case r := <-ch:
		o, _ := r.Val.(outcome[K, V])
		if o.key != key {
			// Two distinct keys printed alike: never hand one key's value to the other; fetch on our own.
			o, err := c.fill(ctx, key, ttl, fetch)
			return c.finish(key, o, err, Miss)
		}
		return c.finish(key, o, r.Err, role(&started))
	case <-ctx.Done():
		if v, _, ok := c.Stale(key); ok {
			return v, Stale, nil
		}
		var zero V
		return zero, role(&started), fmt.Errorf("waiting for upstream: %w", ctx.Err())
	}
}

// role says whether this caller's function ran the fetch (Miss) or it joined another caller's (Coalesced).
func role(started *atomic.Bool) Result {
	if started.Load() {
		return Miss
	}
	return Coalesced
}

func (c *Cache[K, V]) finish(key K, o outcome[K, V], err error, res Result) (V, Result, error) {
	if err == nil {
		if o.cached {
			res = Hit
		}
		return o.value, res, nil
	}
	if !c.o.Final(err) {
		if v, _, ok := c.Stale(key); ok {
			return v, Stale, nil
		}
	}
	var zero V
	return zero, res, err
}

// ErrFetchPanicked is wrapped by the error Get returns when the fetch panicked.
var ErrFetchPanicked = errors.New("the fetch panicked")

// fill runs one fetch for key and stores its result. It runs once per flight, on the goroutine singleflight starts.
func (c *Cache[K, V]) fill(ctx context.Context, key K, ttl time.Duration, fetch func(ctx context.Context) (V, error)) (o outcome[K, V], err error) {
	// singleflight re-raises a panic on a goroutine of its own, where no caller could recover it: one bad fetch
	// would end the process. It becomes this flight's error instead (not final: a stale value may still serve).
	defer func() {
		if p := recover(); p != nil {
			o, err = outcome[K, V]{key: key}, fmt.Errorf("%w: %s", ErrFetchPanicked, panicText(p))
		}
	}()
	// A fetch that finished between our cache check and joining the flight has already stored a fresh value.
	if v, ok := c.fresh(key, ttl); ok {
		return outcome[K, V]{key: key, value: v, cached: true}, nil
	}
	fctx := context.WithoutCancel(ctx)
	if c.o.FetchTimeout > 0 {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(fctx, c.o.FetchTimeout)
		defer cancel()
	}
	v, err := fetch(fctx)
	if err != nil {
		if c.o.Final(err) {
			c.Delete(key)
		}
		return outcome[K, V]{key: key}, err
	}
	at := c.o.Now()
	if c.o.FetchedAt != nil {
		if t := c.o.FetchedAt(v); !t.IsZero() && t.Before(at) {
			at = t
		}
	}
	c.store(key, v, at)
	return outcome[K, V]{key: key, value: v}, nil
}

// panicText describes a panic without its value, which may hold anything (a token, a secret value): a runtime
// error's own text (nil dereference, index out of range), else only the value's type.
func panicText(p any) string {
	if re, ok := p.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("a value of type %T", p)
}

// flightKey names key for singleflight, which wants strings. The dynamic type is part of the name so that equal
// printouts of different types (int 1, int64 1) differ; any remaining collision is caught by comparing keys in Get.
func flightKey[K comparable](key K) string {
	return fmt.Sprintf("%T\x00%#v", key, key)
}

// fresh returns key's value if it is younger than ttl (at most the TTL), marking it recently used.
func (c *Cache[K, V]) fresh(key K, ttl time.Duration) (V, bool) {
	var zero V
	if ttl <= 0 {
		return zero, false
	}
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return zero, false
	}
	age := now.Sub(e.stored)
	if age < ttl {
		c.lru.MoveToFront(e.elem)
		return e.value, true
	}
	if age-c.o.TTL > c.o.StaleIfError {
		c.remove(e) // useless even as a fallback
	}
	return zero, false
}

// Fresh returns key's value if it is younger than the TTL, as Get would without fetching.
func (c *Cache[K, V]) Fresh(key K) (V, bool) { return c.fresh(key, c.o.TTL) }

// Put stores v for key as read upstream at time at (a time ahead of Now counts as now), e.g. a value another tier
// held: fresh while younger than the TTL, then a stale fallback like any other.
func (c *Cache[K, V]) Put(key K, v V, at time.Time) {
	if now := c.o.Now(); at.After(now) {
		at = now
	}
	c.store(key, v, at)
}

func (c *Cache[K, V]) store(key K, v V, at time.Time) {
	if c.o.TTL <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		e.value, e.stored = v, at
		c.lru.MoveToFront(e.elem)
		return
	}
	for c.lru.Len() >= c.o.MaxEntries {
		c.remove(c.lru.Back().Value.(*entry[K, V]))
	}
	e := &entry[K, V]{key: key, value: v, stored: at}
	e.elem = c.lru.PushFront(e)
	c.entries[key] = e
}

// remove needs c.mu held.
func (c *Cache[K, V]) remove(e *entry[K, V]) {
	c.lru.Remove(e.elem)
	delete(c.entries, e.key)
}

// Stale returns key's value and how long ago it expired (0 while still fresh), if it may still be served as a
// fallback, i.e. it expired no more than StaleIfError ago.
func (c *Cache[K, V]) Stale(key K) (V, time.Duration, bool) {
	var zero V
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return zero, 0, false
	}
	past := max(now.Sub(e.stored)-c.o.TTL, 0)
	if past > c.o.StaleIfError {
		return zero, 0, false
	}
	return e.value, past, true
}

// Latest returns key's stored value and when it was read, however old (an expired value still tells what to
// revalidate), without marking it used.
func (c *Cache[K, V]) Latest(key K) (V, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		return e.value, e.stored, true
	}
	var zero V
	return zero, time.Time{}, false
}

// Len returns the number of stored entries, including expired ones not yet dropped.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Delete drops key's entry. A fetch in flight for key still stores its result when it finishes.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.remove(e)
	}
}

// DeleteFunc drops every entry whose key matches, e.g. all of one tenant's values.
func (c *Cache[K, V]) DeleteFunc(match func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if match(k) {
			c.remove(e)
		}
	}
}
