package wascap

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
)

// Prefix bytes of the nkey types that wasmCloud uses but Go nkeys refuses to encode.
const (
	PrefixModule  byte = 12 << 3 // base32-encodes to 'M...': components
	PrefixService byte = 21 << 3 // base32-encodes to 'V...': capability providers
)

// PublicKeyLength is the length of an encoded public nkey: base32 of prefix(1) || key(32) || CRC16(2).
const PublicKeyLength = 56

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrInvalidPublicKey reports a malformed public nkey.
var ErrInvalidPublicKey = errors.New("invalid public key")

// EncodePublicKey encodes a 32-byte public key with the given prefix the way nkeys does, so that M and V keys can be
// produced in Go.
func EncodePublicKey(prefix byte, pub []byte) (string, error) {
	if prefix&7 != 0 {
		// A prefix with low bits set would bleed into the second base32 character and not read as a key type.
		return "", fmt.Errorf("%w: prefix byte %#x is not a multiple of 8", ErrInvalidPublicKey, prefix)
	}
	if len(pub) != 32 {
		return "", fmt.Errorf("%w: key is %d bytes, want 32", ErrInvalidPublicKey, len(pub))
	}
	raw := make([]byte, 0, 35)
	raw = append(raw, prefix)
	raw = append(raw, pub...)
	crc := CRC16(raw)
	raw = append(raw, byte(crc), byte(crc>>8))
	return b32.EncodeToString(raw), nil
}

// NewPublicKey returns a random public key with the given prefix (M or V keys for test subjects).
func NewPublicKey(prefix byte) (string, error) {
	pub := make([]byte, 32)
	if _, err := rand.Read(pub); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return EncodePublicKey(prefix, pub)
}

// CheckPublicKey checks that key is a well-formed public nkey with the given prefix byte.
func CheckPublicKey(key string, prefix byte) error {
	if len(key) != PublicKeyLength {
		return fmt.Errorf("%w: length %d, want %d", ErrInvalidPublicKey, len(key), PublicKeyLength)
	}
	raw, err := b32.DecodeString(key)
	if err != nil {
		return fmt.Errorf("%w: not base32: %w", ErrInvalidPublicKey, err)
	}
	if raw[0] != prefix {
		want, _ := EncodePublicKey(prefix, make([]byte, 32))
		return fmt.Errorf("%w: prefix %q, want %q", ErrInvalidPublicKey, key[:1], want[:1])
	}
	body, sum := raw[:33], uint16(raw[33])|uint16(raw[34])<<8
	if CRC16(body) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrInvalidPublicKey)
	}
	return nil
}

// CRC16 is CRC-16/XMODEM (poly 0x1021, init 0), the checksum nkeys appends (little-endian) to every key and seed.
func CRC16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
