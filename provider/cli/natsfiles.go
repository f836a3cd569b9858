package cli

import (
	"crypto/x509"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
)

// natsFileOptions replace nats.UserCredentials and nats.RootCAs, which read their files whole: these read them
// capped (files.Read), again at every (re)connect as nats.go does, and name the setting in every error.
func natsFileOptions(creds, ca string) []nats.Option {
	var opts []nats.Option
	if creds != "" {
		opts = append(opts, natsCredsOption(creds))
	}
	if ca != "" {
		opts = append(opts, nats.ClientTLSConfig(nil, func() (*x509.CertPool, error) { return readCAPool(ca) }))
	}
	return opts
}

// natsCredsOption signs the server's nonce with the seed of a .creds file; the seed is wiped after each use and never
// appears in an error.
func natsCredsOption(path string) nats.Option {
	user := func() (string, error) {
		raw, err := readCreds(path)
		if err != nil {
			return "", err
		}
		jwt, err := nkeys.ParseDecoratedJWT(raw)
		if err != nil {
			return "", fmt.Errorf("NATS_CREDS: %s holds no user JWT: %w", path, err)
		}
		return jwt, nil
	}
	sign := func(nonce []byte) ([]byte, error) {
		raw, err := readCreds(path)
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedNKey(raw)
		if err != nil {
			return nil, fmt.Errorf("NATS_CREDS: %s holds no user seed", path)
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	}
	return nats.UserJWT(user, sign)
}

func readCreds(path string) ([]byte, error) {
	raw, err := files.Read(path)
	if err != nil {
		return nil, fmt.Errorf("NATS_CREDS: %w", err)
	}
	return raw, nil
}

func readCAPool(path string) (*x509.CertPool, error) {
	pem, err := files.Read(path)
	if err != nil {
		return nil, fmt.Errorf("NATS_TLS_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("NATS_TLS_CA: %s holds no PEM certificate", path)
	}
	return pool, nil
}
