package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TLS is a private CA and a 127.0.0.1 server certificate it signed, like a NATS server behind an internal CA.
type TLS struct {
	CAFile string      // the CA certificate (PEM) in the test's temp dir, the file NATS_TLS_CA names
	Server *tls.Config // the server side: the leaf certificate and its key
}

// NewTLS makes a fresh CA and server certificate for 127.0.0.1 and localhost.
func NewTLS(tb testing.TB) *TLS {
	tb.Helper()
	caPEM, leaf, err := newCertificates()
	if err != nil {
		tb.Fatalf("natstest TLS: %v", err)
	}
	caFile := filepath.Join(tb.TempDir(), "nats-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		tb.Fatalf("natstest TLS: write CA: %v", err)
	}
	return &TLS{
		CAFile: caFile,
		Server: &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12},
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

func newCertificates() (caPEM []byte, leaf tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "natstest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, leaf, fmt.Errorf("CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, leaf, fmt.Errorf("parse CA certificate: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, fmt.Errorf("server key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, leaf, fmt.Errorf("server certificate: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, nil
}
