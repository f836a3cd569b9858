package ociimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociimage"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/registrytest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testpki"
)

const testVersion = "9.9.9-imagetest"

// buildBinary builds the provider as make image does: static, linux/amd64, the version stamped in by -ldflags.
func buildBinary(t *testing.T) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	out := filepath.Join(t.TempDir(), "infisical-secrets-provider")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli.Version="+testVersion,
		"-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func caBundle(t *testing.T) []byte {
	t.Helper()
	p, err := testpki.New("image test CA")
	if err != nil {
		t.Fatal(err)
	}
	return p.CAPEM
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// files reads the image's filesystem as a container runtime would see it.
func files(t *testing.T, rc io.ReadCloser) map[string]file {
	t.Helper()
	defer rc.Close()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read image filesystem: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = file{h, b}
	}
}

func TestImageForServe(t *testing.T) {
	bin := buildBinary(t)
	ca := caBundle(t)
	created := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	img, err := ociimage.Build(ociimage.Options{
		Binary: bin, CABundle: ca, Version: testVersion, Revision: "abc123", Vendor: "acme", Created: created,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %q; want %q", mt, types.OCIManifestSchema1)
	}
	if ls, _ := img.Layers(); len(ls) == 1 {
		if mt, _ := ls[0].MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %q; want %q", mt, types.OCILayer)
		}
	} else {
		t.Errorf("%d layers; want one", len(ls))
	}
	tag := "ghcr.io/acme/infisical-secrets-provider-standalone:" + testVersion
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := ociimage.WriteTarball(path, tag, img); err != nil {
		t.Fatalf("WriteTarball: %v", err)
	}

	// Read it back as docker load / podman load would: by the tag in the tarball's manifest.json.
	ntag, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(path, &ntag)
	if err != nil {
		t.Fatalf("ImageFromPath: %v", err)
	}
	cfg, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("platform %s/%s; want linux/amd64", cfg.OS, cfg.Architecture)
	}
	c := cfg.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q; want 65532:65532 (numeric, so runAsNonRoot can verify it)", c.User)
	}
	if strings.Join(c.Entrypoint, " ") != ociimage.BinaryPath || strings.Join(c.Cmd, " ") != "serve" {
		t.Errorf("entrypoint %q cmd %q; want [%s] [serve]", c.Entrypoint, c.Cmd, ociimage.BinaryPath)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":    "infisical-secrets-provider",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": "abc123",
		"org.opencontainers.image.vendor":   "acme",
		"org.opencontainers.image.created":  "2025-06-01T12:00:00Z",
		"org.opencontainers.image.source":   "https://github.com/infisical-secrets-provider/infisical-secrets-provider",
	} {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q; want %q", k, got, want)
		}
	}
	if !cfg.Created.Time.Equal(created) {
		t.Errorf("created %v; want %v", cfg.Created.Time, created)
	}

	fs := files(t, mutate.Extract(loaded))
	for path, want := range map[string]struct {
		mode     int64
		uid, gid int
		contains string
	}{
		"usr/local/bin/infisical-secrets-provider": {0o755, 0, 0, ""},
		"etc/ssl/certs/ca-certificates.crt":        {0o644, 0, 0, "BEGIN CERTIFICATE"},
		"etc/passwd":                               {0o644, 0, 0, "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		"etc/group":                                {0o644, 0, 0, "nonroot:x:65532:\n"},
		"etc/nsswitch.conf":                        {0o644, 0, 0, "hosts: files dns"},
		"home/nonroot":                             {0o700, 65532, 65532, ""},
		"tmp":                                      {0o1777, 0, 0, ""},
	} {
		f, ok := fs[path]
		if !ok {
			t.Errorf("image lacks %s", path)
			continue
		}
		if f.hdr.Mode != want.mode || f.hdr.Uid != want.uid || f.hdr.Gid != want.gid {
			t.Errorf("%s: mode %o uid %d gid %d; want %o %d %d", path, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, want.mode, want.uid, want.gid)
		}
		if !f.hdr.ModTime.Equal(created) {
			t.Errorf("%s: mtime %v; want the image's creation time %v (reproducible layers)", path, f.hdr.ModTime, created)
		}
		if !strings.Contains(string(f.data), want.contains) {
			t.Errorf("%s does not contain %q:\n%s", path, want.contains, f.data)
		}
	}
	if got := fs["etc/ssl/certs/ca-certificates.crt"].data; !bytes.Equal(got, ca) {
		t.Error("the CA bundle in the image is not the one given")
	}

	// The binary from the layer runs here (this machine is linux/amd64 too).
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("cannot run a linux/amd64 binary on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	exe := filepath.Join(t.TempDir(), "from-image")
	if err := os.WriteFile(exe, fs["usr/local/bin/infisical-secrets-provider"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != testVersion {
		t.Errorf("%s version = %q, %v; want %q", exe, out, err, testVersion)
	}

	// And it pushes to a registry like any image.
	reg := registrytest.Start(t)
	ref, err := name.NewTag(reg.Ref("infisical-secrets-provider-standalone", testVersion))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, loaded, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push image: %v", err)
	}
	pulled, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pull image: %v", err)
	}
	// A docker-format tarball carries the config and layers, not the OCI manifest: compare those.
	wantCfg, _ := img.ConfigName()
	if got, _ := pulled.ConfigName(); got != wantCfg {
		t.Errorf("pulled config %s; want the built image's %s", got, wantCfg)
	}
	wantLayers, _ := img.Layers()
	gotLayers, _ := pulled.Layers()
	if len(gotLayers) != len(wantLayers) || len(gotLayers) != 1 {
		t.Fatalf("pulled %d layers; want %d (one)", len(gotLayers), len(wantLayers))
	}
	wd, _ := wantLayers[0].Digest()
	if gd, _ := gotLayers[0].Digest(); gd != wd {
		t.Errorf("pulled layer %s; want %s", gd, wd)
	}
	want, _ := img.Digest()
	// The same inputs give the same image.
	again, err := ociimage.Build(ociimage.Options{
		Binary: bin, CABundle: ca, Version: testVersion, Revision: "abc123", Vendor: "acme", Created: created,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := again.Digest(); d != want {
		t.Errorf("rebuild digest %s; want %s (reproducible)", d, want)
	}
}

func TestBuildRefusesWhatCannotRun(t *testing.T) {
	ca := caBundle(t)
	for _, tc := range []struct {
		name string
		opts ociimage.Options
		want string
	}{
		{"no binary", ociimage.Options{CABundle: ca}, "binary"},
		{"not ELF", ociimage.Options{Binary: []byte("#!/bin/sh\necho hi\n"), CABundle: ca}, "linux/amd64"},
		{"truncated ELF", ociimage.Options{Binary: []byte("\x7fELF\x02\x01\x01\x00"), CABundle: ca}, "linux/amd64"},
		{"no CA", ociimage.Options{Binary: []byte("x")}, "CA bundle"},
		{"CA without certificates", ociimage.Options{Binary: []byte("x"), CABundle: []byte("not pem")}, "CA bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ociimage.Build(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildRefusesADynamicBinary(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("needs a linux/amd64 dynamically linked executable")
	}
	// The test binary itself is linked dynamically when cgo is on; /bin/sh nearly always is.
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	_, err = ociimage.Build(ociimage.Options{Binary: sh, CABundle: caBundle(t)})
	if err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("Build with /bin/sh = %v; want an error saying the binary must be static", err)
	}
}
