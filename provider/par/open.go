package par

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const (
	claimsEntry = "claims.jwt"
	worldEntry  = "world.wasm"
	binSuffix   = ".bin"
)

// Bounds on what Open reads, so a hostile or broken archive cannot exhaust memory.
const (
	MaxBinarySize = 256 << 20 // one platform binary
	MaxWorldSize  = 16 << 20  // world.wasm
	MaxTotalSize  = 1 << 30   // all entries together
	MaxEntries    = 32
)

// Archive is an opened provider archive. Open only checks its shape; call Verify before trusting it.
type Archive struct {
	Token    string            // claims.jwt as stored
	Claims   *Claims           // decoded from Token, not yet verified
	World    []byte            // world.wasm, nil when absent
	Binaries map[string][]byte // target -> executable
}

// Open reads a provider archive, gzipped (sniffed by its magic bytes) or plain tar. It rejects directories, links,
// unknown or duplicate entries, entries over the size bounds, and archives without claims or binaries: the host
// would treat any unknown file as a library, so none are allowed.
func Open(r io.Reader) (*Archive, error) {
	br := bufio.NewReader(r)
	src := io.Reader(br)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open provider archive: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	a, err := readTar(tar.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("open provider archive: %w", err)
	}
	return a, nil
}

// OpenFile opens the provider archive at path.
func OpenFile(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open provider archive: %w", err)
	}
	defer f.Close()
	return Open(f)
}

func readTar(tr *tar.Reader) (*Archive, error) {
	a := &Archive{Binaries: map[string][]byte{}}
	seen := map[string]bool{}
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if n >= MaxEntries {
			return nil, fmt.Errorf("more than %d entries", MaxEntries)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("entry %q: not a regular file (type %q)", hdr.Name, hdr.Typeflag)
		}
		if seen[hdr.Name] {
			return nil, fmt.Errorf("duplicate entry %q", hdr.Name)
		}
		seen[hdr.Name] = true
		limit, target, err := classify(hdr.Name)
		if err != nil {
			return nil, err
		}
		if hdr.Size < 0 || hdr.Size > limit {
			return nil, fmt.Errorf("entry %q: %d bytes, limit %d", hdr.Name, hdr.Size, limit)
		}
		if total += hdr.Size; total > MaxTotalSize {
			return nil, fmt.Errorf("entries exceed %d bytes in total", MaxTotalSize)
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		switch {
		case hdr.Name == claimsEntry:
			a.Token = strings.TrimSpace(string(data))
		case hdr.Name == worldEntry:
			a.World = data
		default:
			a.Binaries[target] = data
		}
	}
	if !seen[claimsEntry] {
		return nil, errors.New("no claims.jwt")
	}
	if len(a.Binaries) == 0 {
		return nil, errors.New("no {target}.bin binaries")
	}
	c, err := decodeToken(a.Token)
	if err != nil {
		return nil, fmt.Errorf("claims.jwt: %w", err)
	}
	a.Claims = c
	return a, nil
}

// classify names the entry's size bound and, for a binary, its target.
func classify(name string) (limit int64, target string, err error) {
	switch {
	case name == claimsEntry:
		return MaxClaimsSize, "", nil
	case name == worldEntry:
		return MaxWorldSize, "", nil
	case strings.HasSuffix(name, binSuffix):
		t := strings.TrimSuffix(name, binSuffix)
		if err := checkTarget(t); err != nil {
			return 0, "", fmt.Errorf("entry %q: %w", name, err)
		}
		return MaxBinarySize, t, nil
	}
	return 0, "", fmt.Errorf("unknown entry %q: want claims.jwt, world.wasm or {target}.bin", name)
}

// Verify checks the archive as a host and a secrets backend would: the JWT header, the issuer's signature and that
// it is an account key, the subject's service-key checksum, exp/nbf, and that every binary (and world.wasm) matches
// its target hash and every target hash has its binary.
func (a *Archive) Verify() error {
	return a.VerifyAt(time.Now())
}

// VerifyAt is Verify with the clock for exp/nbf given.
func (a *Archive) VerifyAt(now time.Time) error {
	c, err := verifyToken(a.Token, now)
	if err != nil {
		return fmt.Errorf("verify provider archive: claims: %w", err)
	}
	var errs []error
	for _, t := range sortedKeys(a.Binaries) {
		want, ok := c.Wascap.TargetHashes[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("binary %s has no target hash", t))
		case want != Hash(a.Binaries[t]):
			errs = append(errs, fmt.Errorf("binary %s: hash %s does not match claims %s", t, Hash(a.Binaries[t]), want))
		}
	}
	for _, t := range sortedKeys(c.Wascap.TargetHashes) {
		want := c.Wascap.TargetHashes[t]
		if t == WorldHashKey {
			if a.World == nil {
				errs = append(errs, errors.New("claims hash a world.wasm the archive lacks"))
			} else if want != Hash(a.World) {
				errs = append(errs, fmt.Errorf("world.wasm: hash %s does not match claims %s", Hash(a.World), want))
			}
			continue
		}
		if _, ok := a.Binaries[t]; !ok {
			errs = append(errs, fmt.Errorf("claims hash target %s but the archive has no %s.bin", t, t))
		}
	}
	if a.World != nil {
		if _, ok := c.Wascap.TargetHashes[WorldHashKey]; !ok {
			errs = append(errs, errors.New("world.wasm has no target hash"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verify provider archive: %w", err)
	}
	return nil
}

// Targets lists the archive's targets, sorted.
func (a *Archive) Targets() []string { return sortedKeys(a.Binaries) }

// Binary returns the binary for target, with the host's wording when it is missing.
func (a *Archive) Binary(target string) ([]byte, error) {
	b, ok := a.Binaries[target]
	if !ok {
		return nil, fmt.Errorf("target `%s` not found", target)
	}
	return b, nil
}

// NativeTarget is the target a host on this machine would load.
func NativeTarget() string { return Target(runtime.GOOS, runtime.GOARCH) }

// Extract writes target's binary into dir as an executable named {target}.bin, as a host does before starting it,
// and returns its path.
func (a *Archive) Extract(dir, target string) (string, error) {
	b, err := a.Binary(target)
	if err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	path := filepath.Join(dir, target+binSuffix)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		return "", fmt.Errorf("extract %s: %w", target, err)
	}
	// WriteFile keeps the mode of a file that already exists.
	if err := os.Chmod(path, 0o755); err != nil {
		return "", fmt.Errorf("extract %s: %w", target, err)
	}
	return path, nil
}

// Verify opens and verifies the archive read from r.
func Verify(r io.Reader) (*Archive, error) {
	a, err := Open(r)
	if err != nil {
		return nil, err
	}
	if err := a.Verify(); err != nil {
		return nil, err
	}
	return a, nil
}
