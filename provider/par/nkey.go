package par

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// Go nkeys refuses the service prefix (V...), which wascap uses for provider subjects. Public V keys are encoded by
// package wascap; service seeds (SV..., as wash writes them) are encoded here by hand in the nkeys format: base32
// (no padding) of prefix bytes ‖ payload ‖ crc16-xmodem little endian.
const (
	prefixService      = wascap.PrefixService // encodes to 'V'
	prefixSeed    byte = 18 << 3              // encodes to 'S'

	seedLen = 58 // base32 of 2 + 32 + 2 bytes
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func encodeKey(head []byte, payload []byte) string {
	raw := make([]byte, 0, len(head)+len(payload)+2)
	raw = append(raw, head...)
	raw = append(raw, payload...)
	raw = binary.LittleEndian.AppendUint16(raw, wascap.CRC16(raw))
	return b32.EncodeToString(raw)
}

// decodeKey base32-decodes s and checks its length and CRC; it returns the bytes before the CRC.
func decodeKey(s string, wantLen int) ([]byte, error) {
	raw, err := b32.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base32")
	}
	if len(raw) != wantLen {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(raw), wantLen)
	}
	body, sum := raw[:len(raw)-2], binary.LittleEndian.Uint16(raw[len(raw)-2:])
	if wascap.CRC16(body) != sum {
		return nil, errors.New("checksum mismatch")
	}
	return body, nil
}

// EncodeServiceKey encodes a raw ed25519 public key as a wascap service key (V...).
func EncodeServiceKey(pub ed25519.PublicKey) (string, error) {
	k, err := wascap.EncodePublicKey(wascap.PrefixService, pub)
	if err != nil {
		return "", fmt.Errorf("service key: %w", err)
	}
	return k, nil
}

// CheckServiceKey reports whether key is a well-formed service public key (V...): length, base32, prefix and CRC.
func CheckServiceKey(key string) error {
	if err := wascap.CheckPublicKey(key, wascap.PrefixService); err != nil {
		return fmt.Errorf("service key %q: %w", key, err)
	}
	return nil
}

// ServiceKey is a wascap service identity (a provider's subject). nkeys.KeyPair cannot hold one, so the ed25519
// seed is kept here; only the public key ever appears in a PAR, because the subject never signs.
type ServiceKey struct {
	seed [ed25519.SeedSize]byte
}

// NewServiceKey makes a random service key.
func NewServiceKey() (*ServiceKey, error) {
	var k ServiceKey
	if _, err := rand.Read(k.seed[:]); err != nil {
		return nil, fmt.Errorf("service key: %w", err)
	}
	return &k, nil
}

// ParseServiceSeed reads a service seed (SV..., as wash writes to *_service.nk). Any other nkeys seed (SU..., SA...)
// is accepted too and its key re-encoded as V..., so a key made with the nk tool, which cannot make SV seeds, works.
// Errors never include the seed text.
func ParseServiceSeed(seed string) (*ServiceKey, error) {
	seed = strings.TrimSpace(seed)
	if len(seed) != seedLen || seed[0] != 'S' {
		return nil, errors.New("service seed: not an nkeys seed (want SV... of 58 characters)")
	}
	body, err := decodeKey(seed, 2+ed25519.SeedSize+2)
	if err != nil {
		return nil, fmt.Errorf("service seed: %w", err)
	}
	if body[0]&0xF8 != prefixSeed {
		return nil, errors.New("service seed: not an nkeys seed")
	}
	var k ServiceKey
	copy(k.seed[:], body[2:])
	return &k, nil
}

// Seed returns the seed text (SV...), wash-compatible. It is secret material: never log it.
func (k *ServiceKey) Seed() string {
	// The seed prefix packs the 'S' marker and the public prefix into two bytes so both print as letters.
	head := []byte{prefixSeed | prefixService>>5, (prefixService & 31) << 3}
	return encodeKey(head, k.seed[:])
}

// PublicKey returns the service public key (V...).
func (k *ServiceKey) PublicKey() string {
	pub := ed25519.NewKeyFromSeed(k.seed[:]).Public().(ed25519.PublicKey)
	return encodeKey([]byte{prefixService}, pub) // what wascap.EncodePublicKey makes, without its unreachable error
}

// checkAccountKey reports whether key is an nkeys account public key (A...).
func checkAccountKey(key string) error {
	if !nkeys.IsValidPublicAccountKey(key) {
		return fmt.Errorf("issuer %q is not an account public key (A...)", key)
	}
	return nil
}
