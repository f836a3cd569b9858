package backend

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// Dial returns a Dialer that makes real Infisical clients with the given per-attempt timeout.
func Dial(upstreamTimeout time.Duration, log *slog.Logger) Dialer {
	return dialer(upstreamTimeout, log, nil)
}

// dialer is Dial with the rate-limit budget the clients share (nil: each its own).
func dialer(upstreamTimeout time.Duration, log *slog.Logger, limits *infisical.RateLimits) Dialer {
	return func(s settings.Infisical) (Upstream, error) {
		return NewClient(s, upstreamTimeout, log, limits)
	}
}

// NewClient is the one way to build an Infisical client from an identity's settings, used by serve, managed mode
// and the operator tools alike, so that none of them misses a setting (such as INFISICAL_CA_CERT_PATH). The CA
// file is read at every call, so a replaced file takes effect on the next reconfiguration or link. limits is the
// rate-limit budget shared with other clients (nil: the client's own).
func NewClient(s settings.Infisical, upstreamTimeout time.Duration, log *slog.Logger, limits *infisical.RateLimits) (*infisical.Client, error) {
	ca, err := caCert(s)
	if err != nil {
		return nil, err
	}
	return infisical.New(infisical.Config{
		BaseURL:         s.BaseURL,
		CACert:          ca,
		Auth:            s.Credentials,
		UpstreamTimeout: upstreamTimeout,
		Logger:          log,
		RateLimits:      limits,
		Names:           settings.SettingFor, // so that its errors and hints name the settings to fix
	})
}

// caCert is the PEM of the CA that s trusts: INFISICAL_CA_CERT, or the file INFISICAL_CA_CERT_PATH names.
func caCert(s settings.Infisical) (string, error) {
	if s.CACertPath == "" {
		return s.CACert, nil
	}
	pem, err := files.Read(s.CACertPath)
	if err != nil {
		return "", fmt.Errorf("INFISICAL_CA_CERT_PATH: cannot read the CA certificate file (%w); "+
			"set it to a readable PEM file, or put the PEM text in INFISICAL_CA_CERT", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return "", fmt.Errorf("INFISICAL_CA_CERT_PATH: %s holds no PEM certificate; "+
			"point it at the CA's certificate, a file starting with -----BEGIN CERTIFICATE-----", s.CACertPath)
	}
	return string(pem), nil
}

// Bounds on one folder's listing, which the memory tier keeps whole (up to 1 000 listings) and the shared tier
// seals whole: a tenant's INFISICAL_BASE_URL may be its own server, and answer with anything the transport lets
// through (infisical.MaxResponseBytes).
const (
	maxListedSecrets = 10_000
	maxListingBytes  = infisical.MaxResponseBytes
)

// withPrefetchHint says how to read a folder whose listing Infisical sent too large to read at all.
func withPrefetchHint(err error) error {
	if errors.Is(err, infisical.ErrTooLarge) {
		return fmt.Errorf("%w; set CACHE_PREFETCH=false to read its secrets one at a time", err)
	}
	return err
}

// checkListing refuses a listing over the bounds, with an error that says how to read such a folder.
func checkListing(folder string, l infisical.Listing) error {
	n := len(l.Secrets) + len(l.Unsure)
	size := 0
	for name, s := range l.Secrets {
		size += len(name) + len(s.Value) + len(s.Path) + len(s.Environment)
	}
	for name := range l.Unsure {
		size += len(name)
	}
	if n <= maxListedSecrets && size <= maxListingBytes {
		return nil
	}
	return &infisical.Error{Kind: infisical.KindUnavailable, Message: fmt.Sprintf(
		"folder %q lists %d secrets (%d KiB), more than the %d secrets or %d MiB the provider caches per folder; "+
			"set CACHE_PREFETCH=false to read its secrets one at a time, or split the folder",
		folder, n, size>>10, maxListedSecrets, maxListingBytes>>20)}
}

// IdentityID names the credentials and the server they are used with, without holding either secret: cache entries
// of one identity are never served to another.
func IdentityID(s settings.Infisical) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", s.BaseURL, s.Credentials.Identity())
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// ResolveRef turns a key as a manifest writes it into a reference in the identity's default project, environment and
// folder.
func ResolveRef(s settings.Infisical, key string) (infisical.SecretRef, error) {
	folder, name, err := resolveKey(s.SecretPath, key)
	if err != nil {
		return infisical.SecretRef{}, err
	}
	return infisical.SecretRef{ProjectID: s.ProjectID, Environment: s.Environment, Path: folder, Name: name}, nil
}
