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
