package sharedcache

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

func mustSealer(t testing.TB, seed string) *Sealer {
	t.Helper()
	s, err := NewSealer(seed)
	if err != nil {
		t.Fatalf("NewSealer: %v", err)
	}
	return s
}

func TestSealOpens(t *testing.T) {
	s := mustSealer(t, testkeys.CurveSeed(t))
	key := []byte("identity\x00project\x00prod\x00/shop\x00DB_PASSWORD")
	at := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	sealed := s.Seal(key, at, []byte("hunter2"))
	data, got, err := s.Open(key, sealed)
	if err != nil || string(data) != "hunter2" || !got.Equal(at) {
		t.Fatalf("Open = (%q, %v, %v); want the value and its fetch time", data, got, err)
	}
	// Fresh randomness every time: equal values do not give equal entries.
	if bytes.Equal(sealed, s.Seal(key, at, []byte("hunter2"))) {
		t.Fatal("two seals of one value are equal")
	}
}

// Whoever may write the bucket can move, alter or make up entries; none of them opens.
func TestTamperedEntriesAreRejected(t *testing.T) {
	seed := testkeys.CurveSeed(t)
	s := mustSealer(t, seed)
	key, other := []byte("k\x00shop"), []byte("k\x00billing")
	sealed := s.Seal(key, time.Now(), []byte("shop-secret"))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	tests := []struct {
		name   string
		key    []byte
		sealed []byte
		sealer *Sealer
	}{
		{name: "swapped to another key", key: other, sealed: sealed, sealer: s},
		{name: "one bit flipped", key: key, sealed: flipped, sealer: s},
		{name: "forged", key: key, sealed: append([]byte{formatV1}, bytes.Repeat([]byte{7}, 64)...), sealer: s},
		{name: "truncated", key: key, sealed: sealed[:10], sealer: s},
		{name: "empty", key: key, sealed: nil, sealer: s},
		{name: "unknown format", key: key, sealed: append([]byte{0x7f}, sealed[1:]...), sealer: s},
		{name: "sealed with another seed", key: key, sealed: sealed, sealer: mustSealer(t, testkeys.CurveSeed(t))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _, err := tt.sealer.Open(tt.key, tt.sealed)
			if !errors.Is(err, ErrUnopenable) || data != nil {
				t.Fatalf("Open = (%q, %v); want ErrUnopenable and nothing", data, err)
			}
		})
	}
	// The same seed opens it, from another process too.
	if _, _, err := mustSealer(t, seed).Open(key, sealed); err != nil {
		t.Fatalf("the same seed: %v", err)
	}
}

// A lease opens only as the lease of the entry it was made for, with its creation time; a lease never opens as an
// entry (an empty listing) nor an entry as a lease.
func TestLeasesAreBoundToTheirEntry(t *testing.T) {
	s := mustSealer(t, testkeys.CurveSeed(t))
	key, other := []byte("k\x00shop"), []byte("k\x00billing")
	at := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	lease := s.SealLease(key, at)
	if got, err := s.OpenLease(key, lease); err != nil || !got.Equal(at) {
		t.Fatalf("OpenLease = (%v, %v); want its creation time", got, err)
	}
	for name, open := range map[string]func() error{
		"for another entry":   func() error { _, err := s.OpenLease(other, lease); return err },
		"with another seed":   func() error { _, err := mustSealer(t, testkeys.CurveSeed(t)).OpenLease(key, lease); return err },
		"a lease as an entry": func() error { _, _, err := s.Open(key, lease); return err },
		"an entry as a lease": func() error { _, err := s.OpenLease(key, s.Seal(key, at, nil)); return err },
		"an entry sealed for the lease name": func() error {
			_, err := s.OpenLease(key, s.Seal([]byte(s.LeaseName(key)), at, nil)) // what older replicas wrote
			return err
		},
	} {
		if err := open(); !errors.Is(err, ErrUnopenable) {
			t.Errorf("%s: %v; want ErrUnopenable", name, err)
		}
	}
}

// Names are keyed hashes: stable for one seed (every replica finds the entry), unrelated across seeds and kinds,
// valid JetStream keys, and nothing of the cache key shows.
func TestNames(t *testing.T) {
	seed := testkeys.CurveSeed(t)
	a, b := mustSealer(t, seed), mustSealer(t, seed)
	key := []byte("identity\x00project-x\x00prod\x00/payments\x00API_KEY")
	n := a.Name(key)
	if n != b.Name(key) {
		t.Fatal("two sealers with one seed name a key differently")
	}
	if n == a.Name([]byte("identity\x00project-x\x00prod\x00/payments\x00API_KEX")) || n == a.LeaseName(key) ||
		n == mustSealer(t, testkeys.CurveSeed(t)).Name(key) {
		t.Fatal("names collide across keys, kinds or seeds")
	}
	if !validKey(n) || !validKey(a.LeaseName(key)) {
		t.Fatalf("%q is not a valid KV key", n)
	}
	for _, part := range []string{"project", "prod", "payments", "API_KEY"} {
		if strings.Contains(strings.ToLower(n), strings.ToLower(part)) {
			t.Fatalf("name %q shows %q", n, part)
		}
	}
}

func TestNewSealerNeedsASeed(t *testing.T) {
	if _, err := NewSealer(""); err == nil {
		t.Fatal("no error without a seed")
	}
	if _, err := NewSealer("SAnotacurveseed"); err == nil || strings.Contains(err.Error(), "SAnotacurveseed") {
		t.Fatalf("bad seed: %v; want an error that does not quote it", err)
	}
}
