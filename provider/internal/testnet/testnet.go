// Package testnet gives tests network addresses with known behaviour.
package testnet

import (
	"net"
	"testing"
)

// ClosedAddr returns a host:port on 127.0.0.1 where nothing listens: the port was free a moment ago, so a dial
// is refused at once (rather than timing out, as an unroutable address would).
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}
