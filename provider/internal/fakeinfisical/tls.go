package fakeinfisical

import (
	"crypto/tls"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testpki"
)

// tlsMaterial is a private CA and a 127.0.0.1 server certificate it signed, like a self-hosted Infisical behind an
// internal CA.
type tlsMaterial struct {
	caPEM []byte
	pki   *testpki.PKI
}

func newTLSMaterial() (*tlsMaterial, error) {
	p, err := testpki.New("fakeinfisical test CA")
	if err != nil {
		return nil, err
	}
	return &tlsMaterial{caPEM: p.CAPEM, pki: p}, nil
}

func (m *tlsMaterial) serverConfig() *tls.Config { return m.pki.ServerConfig() }
