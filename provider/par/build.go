package par

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nats-io/nkeys"
)

// BuildOptions say what goes into an archive.
type BuildOptions struct {
	Name     string // wascap.name, e.g. "Infisical Secrets Provider"
	Vendor   string // wascap.vendor (required)
	Version  string // wascap.ver, e.g. "0.1.0"
	Revision int    // wascap.rev

	// Binaries maps a target (see Target) to its executable.
	Binaries map[string][]byte
	// World is the provider's WIT package encoded as wasm; optional.
	World []byte

	Issuer  nkeys.KeyPair // account key pair (SA... seed) that signs the claims
	Subject string        // the provider's service public key (V...), e.g. ServiceKey.PublicKey()

	// Time sets iat and the tar entries' mtimes; zero means now. With a fixed Time and fixed keys a build is
	// byte-for-byte reproducible (Ed25519 and the derived jti are deterministic).
	Time time.Time
}

// Build writes a signed, gzipped provider archive to w.
func Build(w io.Writer, opts BuildOptions) error {
	if err := opts.check(); err != nil {
		return fmt.Errorf("build provider archive: %w", err)
	}
	now := opts.Time
	if now.IsZero() {
		now = time.Now()
	}
	now = now.Truncate(time.Second) // whole seconds keep Go's tar writer from adding PAX records

	token, err := opts.claims(now)
	if err != nil {
		return fmt.Errorf("build provider archive: %w", err)
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("build provider archive: %w", err)
	}
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, data []byte) error {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Size:     int64(len(data)),
			Mode:     mode,
			ModTime:  now,
			Format:   tar.FormatGNU,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s header: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	// The order matches wash's: claims first, then the world, then the libraries.
	if err := add(claimsEntry, 0o644, []byte(token)); err != nil {
		return fmt.Errorf("build provider archive: %w", err)
	}
	if len(opts.World) > 0 {
		if err := add(worldEntry, 0o644, opts.World); err != nil {
			return fmt.Errorf("build provider archive: %w", err)
		}
	}
	for _, t := range sortedKeys(opts.Binaries) {
		if err := add(t+binSuffix, 0o755, opts.Binaries[t]); err != nil {
			return fmt.Errorf("build provider archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build provider archive: finish tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("build provider archive: finish gzip: %w", err)
	}
	return nil
}

func (o *BuildOptions) check() error {
	var errs []error
	if o.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if o.Vendor == "" {
		errs = append(errs, errors.New("vendor is empty"))
	}
	if len(o.Binaries) == 0 {
		errs = append(errs, errors.New("no binaries"))
	}
	for _, t := range sortedKeys(o.Binaries) {
		if err := checkTarget(t); err != nil {
			errs = append(errs, err)
		} else if n := len(o.Binaries[t]); n == 0 || n > MaxBinarySize {
			errs = append(errs, fmt.Errorf("binary %s is %d bytes, want 1..%d", t, n, MaxBinarySize))
		}
	}
	if len(o.World) > MaxWorldSize {
		errs = append(errs, fmt.Errorf("world is %d bytes, want at most %d", len(o.World), MaxWorldSize))
	}
	if o.Issuer == nil {
		errs = append(errs, errors.New("no issuer key"))
	} else if pub, err := o.Issuer.PublicKey(); err != nil {
		errs = append(errs, fmt.Errorf("issuer key: %w", err))
	} else if err := checkAccountKey(pub); err != nil {
		errs = append(errs, err)
	}
	if err := CheckServiceKey(o.Subject); err != nil {
		errs = append(errs, fmt.Errorf("subject: %w", err))
	}
	return errors.Join(errs...)
}

// claims mints and signs the claims token.
func (o *BuildOptions) claims(now time.Time) (string, error) {
	iss, err := o.Issuer.PublicKey()
	if err != nil {
		return "", fmt.Errorf("issuer key: %w", err)
	}
	hashes := make(map[string]string, len(o.Binaries)+1)
	for t, b := range o.Binaries {
		hashes[t] = Hash(b)
	}
	if len(o.World) > 0 {
		hashes[WorldHashKey] = Hash(o.World)
	}
	c := &Claims{
		IssuedAt: now.Unix(),
		Issuer:   iss,
		Subject:  o.Subject,
		Wascap: Metadata{
			Name:         o.Name,
			Vendor:       o.Vendor,
			Rev:          o.Revision,
			Ver:          o.Version,
			TargetHashes: hashes,
		},
		WascapRevision: WascapRevision,
	}
	// wash uses a random nuid; a digest of the rest of the claims is as unique per build and keeps builds
	// reproducible.
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	sum := sha256.Sum256(body)
	c.JTI = hex.EncodeToString(sum[:16])
	return sign(c, o.Issuer)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
