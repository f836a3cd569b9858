package sharedcache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"regexp"
	"time"

	"github.com/nats-io/nkeys"
)

// Sealed entry format, version 1:
//
//	0x01 | nonce (12) | AES-256-GCM( fetched-at (8, Unix nanoseconds, big-endian) | data ) | tag (16)
//
// with additional data "infisical-secrets-provider/shared-cache/v1" 0x00 name 0x00 key, where key is the entry's
// full cache key and name its KV key. So an entry opens only under the cache key it was sealed for (one moved to
// another key is rejected), only with the same seed, and its fetch time cannot be changed without the seed.
//
// A lease (a claim to fetch an entry) is sealed the same way with no data and its creation time in place of the
// fetch time, under additional data "infisical-secrets-provider/shared-cache/lease/v1" 0x00 lease name 0x00 key: it
// opens only as the lease of the entry it was made for, and neither a lease nor an entry opens as the other.
const (
	formatV1     byte = 0x01
	adContext         = "infisical-secrets-provider/shared-cache/v1"
	leaseContext      = "infisical-secrets-provider/shared-cache/lease/v1"
	hkdfSalt          = "infisical-secrets-provider shared cache"
)

// ErrUnopenable is wrapped by Open's error for an entry that was not sealed by this seed for this key: sealed with
// another SERVER_XKEY_SEED, moved from another key, altered, or made up.
var ErrUnopenable = errors.New("shared cache entry cannot be opened")

// Sealer seals and opens entries and names them, with keys derived from SERVER_XKEY_SEED: every replica given the
// same seed derives the same keys, and nobody without it can read, alter or name an entry.
type Sealer struct {
	aead  cipher.AEAD
	names []byte // HMAC key that turns cache keys into KV keys
}

// NewSealer derives the sealing and naming keys from a curve seed (SX...). The error never quotes the seed.
func NewSealer(seed string) (*Sealer, error) {
	if seed == "" {
		return nil, errors.New("no SERVER_XKEY_SEED to derive the shared cache's key from")
	}
	if _, err := nkeys.FromCurveSeed([]byte(seed)); err != nil {
		return nil, errors.New("SERVER_XKEY_SEED is not a curve seed (SX...)")
	}
	// HKDF with distinct labels: the xkey itself and these two keys are independent of each other.
	derive := func(label string) ([]byte, error) {
		return hkdf.Key(sha256.New, []byte(seed), []byte(hkdfSalt), label, 32)
	}
	sealKey, err := derive("aead v1")
	if err != nil {
		return nil, err
	}
	nameKey, err := derive("names v1")
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	// A fresh random nonce per seal (prepended by the AEAD): entries are rewritten often, by many replicas, and
	// 2^32 seals per key are far away.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead, names: nameKey}, nil
}

// Name is the KV key of the entry for a cache key: a keyed hash, so the bucket shows no project, folder or secret
// name, and nobody without the seed can tell which entry holds what.
func (s *Sealer) Name(key []byte) string { return s.name("entry", key) }

// LeaseName is the KV key that marks a fetch of the entry for key in progress on some replica.
func (s *Sealer) LeaseName(key []byte) string { return s.name("lease", key) }

func (s *Sealer) name(kind string, key []byte) string {
	m := hmac.New(sha256.New, s.names)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(key)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func additionalData(context, name string, key []byte) []byte {
	ad := make([]byte, 0, len(context)+len(name)+len(key)+2)
	ad = append(ad, context...)
	ad = append(ad, 0)
	ad = append(ad, name...)
	ad = append(ad, 0)
	return append(ad, key...)
}

// Seal encrypts data read from Infisical at fetchedAt for the cache key key.
func (s *Sealer) Seal(key []byte, fetchedAt time.Time, data []byte) []byte {
	return s.seal(additionalData(adContext, s.Name(key), key), fetchedAt, data)
}

// Open returns the data and fetch time of an entry sealed for key, or an error wrapping ErrUnopenable.
func (s *Sealer) Open(key, sealed []byte) ([]byte, time.Time, error) {
	return s.open(additionalData(adContext, s.Name(key), key), sealed)
}

// SealLease seals the lease on key's entry that a replica takes at createdAt.
func (s *Sealer) SealLease(key []byte, createdAt time.Time) []byte {
	return s.seal(additionalData(leaseContext, s.LeaseName(key), key), createdAt, nil)
}

// OpenLease returns the creation time of a lease sealed for key's entry, or an error wrapping ErrUnopenable.
func (s *Sealer) OpenLease(key, sealed []byte) (time.Time, error) {
	data, at, err := s.open(additionalData(leaseContext, s.LeaseName(key), key), sealed)
	if err == nil && len(data) != 0 {
		err = errors.Join(ErrUnopenable, errors.New("a lease holds no data"))
	}
	if err != nil {
		return time.Time{}, err
	}
	return at, nil
}

func (s *Sealer) seal(ad []byte, at time.Time, data []byte) []byte {
	plain := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint64(plain, uint64(at.UnixNano()))
	plain = append(plain, data...)
	out := []byte{formatV1}
	out = s.aead.Seal(out, nil, plain, ad)
	clear(plain)
	return out
}

func (s *Sealer) open(ad, sealed []byte) ([]byte, time.Time, error) {
	if len(sealed) < 1 || sealed[0] != formatV1 {
		return nil, time.Time{}, errors.Join(ErrUnopenable, errors.New("unknown format"))
	}
	plain, err := s.aead.Open(nil, nil, sealed[1:], ad)
	if err != nil || len(plain) < 8 {
		return nil, time.Time{}, errors.Join(ErrUnopenable, errors.New("sealed with another key, for another entry, or altered"))
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(plain))).UTC()
	return plain[8:], at, nil
}

// validKey is JetStream's rule for KV keys (names here use only the base64url alphabet).
var validKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`).MatchString
