package natstest

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testpki"
)

// TLS is a private CA and a 127.0.0.1 server certificate it signed, like a NATS server behind an internal CA.
type TLS struct {
	CAFile string      // the CA certificate (PEM) in the test's temp dir, the file NATS_TLS_CA names
	Server *tls.Config // the server side: the leaf certificate and its key
}

// NewTLS makes a fresh CA and server certificate for 127.0.0.1 and localhost.
func NewTLS(tb testing.TB) *TLS {
	tb.Helper()
	pki, err := testpki.New("natstest CA")
	if err != nil {
		tb.Fatalf("natstest TLS: %v", err)
	}
	caFile := filepath.Join(tb.TempDir(), "nats-ca.pem")
	if err := os.WriteFile(caFile, pki.CAPEM, 0o600); err != nil {
		tb.Fatalf("natstest TLS: write CA: %v", err)
	}
	return &TLS{
		CAFile: caFile,
		Server: pki.ServerConfig(),
	}
}

// StartTLS runs a NATS server that requires TLS with a certificate from a fresh private CA, and stops it when the
// test ends. The URL has the tls:// scheme; clients must trust CAFile.
func StartTLS(tb testing.TB) (url string, certs *TLS) {
	tb.Helper()
	certs = NewTLS(tb)
	srv, err := Run(&server.Options{TLSConfig: certs.Server, TLSTimeout: 5})
	if err != nil {
		tb.Fatalf("start embedded NATS with TLS: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv.ClientURL(), certs
}
