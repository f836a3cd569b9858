// Package ociimage assembles the container image for the standalone backend (`serve`) without Docker or a base
// image: one layer with the static binary, a CA bundle for Infisical's TLS, and /etc/passwd and /etc/group naming
// a non-root user, so that Kubernetes' runAsNonRoot can check the numeric user and nothing else in the image can be
// run. The image is reproducible: every file time and the creation time come from Options.Created.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image, and who runs it.
const (
	BinaryPath   = "/usr/local/bin/infisical-secrets-provider"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt" // the first place Go's crypto/x509 looks on Linux
	UID, GID     = 65532, 65532                         // "nonroot", as distroless numbers it
	User         = "65532:65532"
	Source       = "https://github.com/infisical-secrets-provider/infisical-secrets-provider"
)

// Options are the image's inputs.
type Options struct {
	Binary   []byte    // the provider, built static for linux/amd64 (CGO_ENABLED=0)
	CABundle []byte    // PEM certificates to trust, e.g. the build machine's /etc/ssl/certs/ca-certificates.crt
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision: the source commit; optional
	Vendor   string    // org.opencontainers.image.vendor; optional
	Created  time.Time // creation time and every file's mtime; zero = the Unix epoch, for reproducibility
}

// Build returns the image: entrypoint the binary, command `serve`, user 65532:65532, OCI media types.
func Build(opts Options) (v1.Image, error) {
	if err := errors.Join(checkBinary(opts.Binary), checkCABundle(opts.CABundle)); err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	created := opts.Created.UTC()
	if opts.Created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	fs, err := rootFS(opts, created)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(fs)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}

	labels := map[string]string{
		"org.opencontainers.image.title":       "infisical-secrets-provider",
		"org.opencontainers.image.description": "wasmCloud secrets backend for Infisical, standalone (serve)",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  opts.Version,
		"org.opencontainers.image.revision": opts.Revision,
		"org.opencontainers.image.vendor":   opts.Vendor,
	} {
		if v != "" {
			labels[k] = v
		}
	}
	base, err := mutate.ConfigFile(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		&v1.ConfigFile{
			Architecture: "amd64",
			OS:           "linux",
			Config: v1.Config{
				User:       User,
				Entrypoint: []string{BinaryPath},
				Cmd:        []string{"serve"},
				Env:        []string{"PATH=/usr/local/bin"},
				WorkingDir: "/",
				Labels:     labels,
			},
			RootFS: v1.RootFS{Type: "layers"},
		})
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "make image (provider/internal/ociimage)"},
	})
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: created})
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	return img, nil
}

// WriteTarball writes img tagged tag to path in the format `docker load` and `podman load` read.
func WriteTarball(path, tag string, img v1.Image) error {
	t, err := name.NewTag(tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", tag, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, t, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write image: %w", err)
	}
	return nil
}

// checkBinary refuses what would not start in an image without a libc: anything but a static linux/amd64 ELF.
func checkBinary(b []byte) error {
	if len(b) == 0 {
		return errors.New("no provider binary given")
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("the binary is not a linux/amd64 executable (build it with GOOS=linux GOARCH=amd64): %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("the binary is for %s, not linux/amd64 (build it with GOOS=linux GOARCH=amd64)", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("the binary is linked dynamically; the image has no libc: build it static with CGO_ENABLED=0")
		}
	}
	return nil
}

func checkCABundle(b []byte) error {
	if len(b) == 0 {
		return errors.New("no CA bundle given: Infisical's TLS certificate could not be verified")
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return errors.New("the CA bundle holds no PEM certificate")
	}
	return nil
}

// rootFS is the layer's tar: every file owned by root and not writable by the user, but its home and /tmp.
func rootFS(opts Options, mtime time.Time) ([]byte, error) {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := "root:x:0:\n" + fmt.Sprintf("nonroot:x:%d:\n", GID)
	entries := []struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte
	}{
		{"etc/", 0o755, 0, 0, nil},
		{"etc/group", 0o644, 0, 0, []byte(group)},
		{"etc/nsswitch.conf", 0o644, 0, 0, []byte("hosts: files dns\n")},
		{"etc/passwd", 0o644, 0, 0, []byte(passwd)},
		{"etc/ssl/", 0o755, 0, 0, nil},
		{"etc/ssl/certs/", 0o755, 0, 0, nil},
		{CABundlePath[1:], 0o644, 0, 0, opts.CABundle},
		{"home/", 0o755, 0, 0, nil},
		{"home/nonroot/", 0o700, UID, GID, nil},
		{"tmp/", 0o1777, 0, 0, nil},
		{"usr/", 0o755, 0, 0, nil},
		{"usr/local/", 0o755, 0, 0, nil},
		{"usr/local/bin/", 0o755, 0, 0, nil},
		{BinaryPath[1:], 0o755, 0, 0, opts.Binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatPAX,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)),
		}
		if e.name[len(e.name)-1] == '/' {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}
