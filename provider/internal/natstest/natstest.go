// Package natstest runs real, in-process NATS servers on loopback for tests.
package natstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Start runs a NATS server on 127.0.0.1 with a random port and stops it when the test ends.
func Start(tb testing.TB) (url string, srv *server.Server) {
	tb.Helper()
	srv, err := Run(&server.Options{})
	if err != nil {
		tb.Fatalf("start embedded NATS: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv.ClientURL(), srv
}

// StartJetStream runs a NATS server with JetStream (its store in a temporary directory), as the lattice NATS of a
// wasmCloud deployment has, and stops it when the test ends.
func StartJetStream(tb testing.TB) (url string, srv *server.Server) {
	tb.Helper()
	srv, err := Run(&server.Options{JetStream: true, StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("start embedded NATS with JetStream: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv.ClientURL(), srv
}

// Run starts a NATS server with opts on loopback (random port unless set) and waits until it accepts clients.
// The caller shuts it down.
func Run(opts *server.Options) (*server.Server, error) {
	o := *opts
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	o.NoLog, o.NoSigs = true, true
	srv, err := server.NewServer(&o)
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats server not ready after 10s")
	}
	return srv, nil
}

// Connect connects to url and closes the connection when the test ends.
func Connect(tb testing.TB, url string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		tb.Fatalf("connect to %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
