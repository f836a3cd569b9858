package wascap

import (
	"bytes"
	"sync"
	"time"
)

// Verifier parses tokens like ParseEntity and ParseHost, and remembers the ones that verified, keyed by the token's
// exact text: a host sends the same host JWT and entity JWT with every secret of a component, and the two Ed25519
// checks are most of what a cached get costs. A remembered token skips the decoding and the signature check, which
// the same bytes would pass again; its expiry and not-before times are checked on every use, as on the first, and
// a token past its expiry is forgotten. Failures are never remembered, so a bad token costs its full check every
// time, as before.
//
// The memory is bounded in entries (MaxTokens) and in the size of a token it keeps (MaxRememberedToken): anyone may
// sign a valid token with a key of their own, so tokens beyond the bound replace an arbitrary remembered one. A
// flood of such tokens only costs the speed-up, never a wrong answer.
type Verifier struct {
	max int

	mu      sync.Mutex
	entries map[verifiedKey]*verified
}

// verified is a remembered token: its claims, and its expiry and not-before as the token states them (nil = absent;
// Claims keep an absent time as 0, which is also a time a token may state).
type verified struct {
	claims Claims
	times  times
}

// MaxRememberedToken is the longest token a Verifier keeps; real wascap tokens are about 1 KiB.
const MaxRememberedToken = 4 << 10

// DefaultVerifiedTokens is how many tokens a Verifier remembers by default: a fleet's hosts and entities.
const DefaultVerifiedTokens = 1024

type verifiedKey struct {
	host  bool // parsed as a host token; the same text parsed as an entity is checked apart
	token string
}

// NewVerifier returns a Verifier that remembers up to maxTokens verified tokens; 0 or less remembers none, so every
// call verifies in full.
func NewVerifier(maxTokens int) *Verifier {
	return &Verifier{max: max(maxTokens, 0), entries: map[verifiedKey]*verified{}}
}

// ParseEntity is ParseEntity, remembering the token once it verified.
func (v *Verifier) ParseEntity(tok string, now time.Time) (*Claims, error) {
	return v.parse(verifiedKey{token: tok}, now, parseEntity)
}

// ParseHost is ParseHost, remembering the token once it verified.
func (v *Verifier) ParseHost(tok string, now time.Time) (*Claims, error) {
	return v.parse(verifiedKey{host: true, token: tok}, now, parseHost)
}

func (v *Verifier) parse(key verifiedKey, now time.Time, parse func(string, time.Time) (*Claims, times, error)) (*Claims, error) {
	if v.max == 0 || len(key.token) > MaxRememberedToken {
		c, _, err := parse(key.token, now)
		return c, err
	}
	v.mu.Lock()
	e, ok := v.entries[key]
	v.mu.Unlock()
	if ok {
		if err := checkTimes(e.times.exp, e.times.nbf, now); err != nil {
			v.mu.Lock()
			delete(v.entries, key)
			v.mu.Unlock()
			return nil, err
		}
		return e.claims.copy(), nil // each caller gets its own Claims, as from a full parse
	}
	c, ts, err := parse(key.token, now)
	if err != nil {
		return nil, err
	}
	kept := &verified{claims: *c.copy(), times: ts}
	v.mu.Lock()
	if _, held := v.entries[key]; !held && len(v.entries) >= v.max {
		for k := range v.entries { // an arbitrary entry: map iteration starts at a random one
			delete(v.entries, k)
			break
		}
	}
	v.entries[key] = kept
	v.mu.Unlock()
	return c, nil
}

// copy is c with metadata of its own, so that no caller can change what another gets.
func (c *Claims) copy() *Claims {
	out := *c
	out.Metadata = bytes.Clone(c.Metadata)
	return &out
}

// Len is how many tokens are remembered.
func (v *Verifier) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.entries)
}
