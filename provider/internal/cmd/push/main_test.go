package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociartifact"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/registrytest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

func writePAR(t *testing.T) string {
	t.Helper()
	iss, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := par.NewServiceKey()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := par.Build(&buf, par.BuildOptions{
		Name: "p", Vendor: "acme", Version: "0.1.0",
		Binaries: map[string][]byte{"x86_64-linux": []byte("\x7fELF fake")},
		Issuer:   iss, Subject: sub.PublicKey(), Time: time.Now().Add(-time.Minute),
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p.par.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPushPrintsRefAndDigest(t *testing.T) {
	reg := registrytest.Start(t)
	file := writePAR(t)
	ref := reg.Ref("infisical-secrets-provider", "0.1.0")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--annotation", "org.opencontainers.image.version=0.1.0", ref, file},
		&stdout, &stderr, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	r, _ := name.ParseReference(ref)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("pull back: %v", err)
	}
	if got, want := strings.TrimSpace(stdout.String()), ref+"@"+desc.Digest.String(); got != want {
		t.Errorf("stdout = %q; want %q", got, want)
	}
	raw, _ := os.ReadFile(file)
	want, _ := ociartifact.Manifest(raw, map[string]string{"org.opencontainers.image.version": "0.1.0"})
	if !bytes.Equal(desc.Manifest, want) {
		t.Errorf("manifest %s; want %s", desc.Manifest, want)
	}
}

func TestPushUsesWashCredentials(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var sawAuth bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "robot" || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sawAuth = true
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/p:1.0.0"
	file := writePAR(t)

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{ref, file}, &stdout, &stderr, func(string) string { return "" }); code != 1 {
		t.Errorf("without credentials: exit %d; want 1 (%s)", code, stderr.String())
	}
	env := map[string]string{"WASH_REG_USER": "robot", "WASH_REG_PASSWORD": "s3cret"}
	stderr.Reset()
	if code := run(context.Background(), []string{ref, file}, &stdout, &stderr, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("with WASH_REG_USER/WASH_REG_PASSWORD: exit %d: %s", code, stderr.String())
	}
	if !sawAuth {
		t.Error("the registry never saw the credentials")
	}
	if strings.Contains(stderr.String(), "s3cret") {
		t.Errorf("stderr leaks the password: %s", stderr.String())
	}
}

func TestPushUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no args", nil, 2, "usage: push"},
		{"missing file", []string{"127.0.0.1:1/p:1.0.0", filepath.Join(t.TempDir(), "none.par.gz")}, 1, "make par"},
		{"bad annotation", []string{"--annotation", "novalue", "127.0.0.1:1/p:1.0.0", "x"}, 2, "KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr, func(string) string { return "" })
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.want)
			}
		})
	}
}
