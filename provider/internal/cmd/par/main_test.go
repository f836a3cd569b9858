package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildThenVerify(t *testing.T) {
	dir := t.TempDir()
	amd := writeFile(t, dir, "amd64", "fake amd64")
	arm := writeFile(t, dir, "arm64", "fake arm64")
	out := filepath.Join(dir, "build", "p.par.gz")
	env := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	args := []string{
		"--name", "Infisical Secrets Provider", "--vendor", "acme", "--version", "0.1.0", "--revision", "4",
		"--out", out, "--keys-dir", filepath.Join(dir, "keys"),
		"--bin", "linux/amd64=" + amd, "--bin", "aarch64-linux=" + arm,
	}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("build exit %d: %s", code, stderr.String())
	}
	a, err := par.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{out, "issuer:  " + a.Claims.Issuer, "subject: " + a.Claims.Subject, a.Claims.Wascap.TargetHashes["x86_64-linux"]} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("build output lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "generated signing key") {
		t.Errorf("no notice of generated keys: %q", stderr.String())
	}
	if a.Claims.IssuedAt != 1700000000 || a.Claims.Wascap.Rev != 4 {
		t.Errorf("claims %+v: want iat from SOURCE_DATE_EPOCH and rev 4", a.Claims)
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"verify", []string{"verify", out}, 0, "OK"},
		{"verify native target", []string{"verify", "--target", "x86_64-linux", out}, 0, "OK"},
		{"verify missing target", []string{"verify", "--target", "x86_64-windows", out}, 1, "not found"},
		{"verify missing file", []string{"verify", filepath.Join(dir, "nope")}, 1, "no such file"},
		{"verify usage", []string{"verify"}, 2, "usage"},
		{"build without bins", []string{"--out", out, "--version", "1"}, 2, "required"},
		{"bad bin flag", []string{"--bin", "nopath"}, 2, "TARGET=PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr, func(string) string { return "" })
			if code != tt.wantCode || !strings.Contains(stdout.String()+stderr.String(), tt.wantOut) {
				t.Errorf("exit %d, want %d; output %q, want it to mention %q", code, tt.wantCode, stdout.String()+stderr.String(), tt.wantOut)
			}
		})
	}
}

func TestVerifyRejectsTamperedFile(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "bin", "fake binary content")
	out := filepath.Join(dir, "p.par.gz")
	args := []string{"--name", "n", "--vendor", "v", "--version", "0.1.0", "--out", out,
		"--keys-dir", filepath.Join(dir, "keys"), "--bin", "x86_64-linux=" + bin}
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr, func(string) string { return "" }); code != 0 {
		t.Fatalf("build exit %d: %s", code, stderr.String())
	}
	// Unzip and change the binary in place: the claims still name the old hash.
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(plain, []byte("fake binary content"), []byte("evil binary content"), 1)
	if bytes.Equal(tampered, plain) {
		t.Fatal("binary not found in the tar")
	}
	tamperedPath := filepath.Join(dir, "tampered.par")
	if err := os.WriteFile(tamperedPath, tampered, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, path string
		wantCode   int
	}{
		{"untouched", out, 0},
		{"tampered", tamperedPath, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{"verify", tt.path}, &stdout, &stderr, nil); code != tt.wantCode {
				t.Errorf("verify exit %d, want %d: %s", code, tt.wantCode, stderr.String())
			}
		})
	}
}
