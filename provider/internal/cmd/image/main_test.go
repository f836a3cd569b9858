package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testpki"
)

// tinyStatic builds a trivial static linux/amd64 program: the command checks the binary, not what it does.
func tinyStatic(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"tiny\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", "tiny", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "tiny")
}

func writeCA(t *testing.T) string {
	t.Helper()
	p, err := testpki.New("cmd image test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, p.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImageWritesALoadableTarball(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("builds a linux binary with the local toolchain")
	}
	bin, ca := tinyStatic(t), writeCA(t)
	out := filepath.Join(t.TempDir(), "build", "image.tar")
	tag := "ghcr.io/acme/infisical-secrets-provider-standalone:1.2.3"
	var stdout, stderr bytes.Buffer
	env := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	code := run([]string{"--binary", bin, "--ca-bundle", ca, "--tag", tag, "--version", "1.2.3", "--revision", "deadbeef", "--out", out},
		&stdout, &stderr, func(k string) string { return env[k] })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	ntag, _ := name.NewTag(tag)
	img, err := tarball.ImageFromPath(out, &ntag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Created.Unix() != 1700000000 || cfg.Config.Labels["org.opencontainers.image.revision"] != "deadbeef" {
		t.Errorf("created %v, labels %v; want SOURCE_DATE_EPOCH and the revision", cfg.Created, cfg.Config.Labels)
	}
	for _, want := range []string{out, tag, "docker load -i " + out} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestImageSaysWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"usage", []string{"--binary", "x"}, 2, "--binary, --tag and --out are required"},
		{"no CA bundle", []string{"--binary", "x", "--ca-bundle", filepath.Join(dir, "none.crt"), "--tag", "r.io/a:1", "--out", filepath.Join(dir, "o.tar")},
			1, "install the ca-certificates package"},
		{"no binary", []string{"--binary", filepath.Join(dir, "none"), "--ca-bundle", writeCA(t), "--tag", "r.io/a:1", "--out", filepath.Join(dir, "o.tar")},
			1, "none"},
		{"bad tag", []string{"--binary", "x", "--ca-bundle", writeCA(t), "--tag", "no tag here", "--out", filepath.Join(dir, "o.tar")}, 2, "tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr, func(string) string { return "" })
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "o.tar")); err == nil {
		t.Error("a failed run left an image behind")
	}
}
