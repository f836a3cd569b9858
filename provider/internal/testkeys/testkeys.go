// Package testkeys makes throwaway keys for tests.
package testkeys

import (
	"testing"

	"github.com/nats-io/nkeys"
)

// CurveSeed returns the seed (SX…) of a new curve (xkey) key pair, such as SERVER_XKEY_SEED takes.
func CurveSeed(tb testing.TB) string {
	tb.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		tb.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	return string(seed)
}

// AccountKey returns the public key (A…) of a new account key pair: an issuer, such as TRUSTED_ISSUERS takes.
func AccountKey(tb testing.TB) string {
	tb.Helper()
	return PublicKey(tb, nkeys.CreateAccount)
}

// PublicKey returns the public key of a new key pair that create makes (nkeys.CreateUser, nkeys.CreateServer, …).
func PublicKey(tb testing.TB, create func() (nkeys.KeyPair, error)) string {
	tb.Helper()
	kp, err := create()
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}
