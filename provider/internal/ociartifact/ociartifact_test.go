package ociartifact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociartifact"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/registrytest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

// testPAR builds a small signed provider archive, as make par would with fake binaries.
func testPAR(t *testing.T) []byte {
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
	err = par.Build(&buf, par.BuildOptions{
		Name: "Infisical Secrets Provider", Vendor: "infisical-secrets-provider", Version: "0.1.0",
		Binaries: map[string][]byte{"x86_64-linux": []byte("\x7fELF fake amd64 binary")},
		Issuer:   iss, Subject: sub.PublicKey(), Time: time.Now().Add(-time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// The manifest wash 0.43.0 writes for a PAR (wash src/lib/registry.rs push_oci_artifact with oci-client 0.15's
// OciImageManifest::build, serialized by its canonical JSON formatter): no mediaType or artifactType field, a "{}"
// config of the PAR config type, one layer holding the archive as is.
func washManifest(parBytes []byte) string {
	return `{"config":{"digest":"` + sha([]byte("{}")) + `","mediaType":"application/vnd.wasmcloud.provider.archive.config","size":2},` +
		`"layers":[{"digest":"` + sha(parBytes) + `","mediaType":"application/vnd.wasmcloud.provider.archive.layer.v1+par","size":` +
		fmt.Sprint(len(parBytes)) + `}],"schemaVersion":2}`
}

func TestPushWritesWhatWashPushes(t *testing.T) {
	reg := registrytest.Start(t)
	parBytes := testPAR(t)
	ref := reg.Ref("infisical-secrets-provider", "0.1.0")

	res, err := ociartifact.Push(context.Background(), ref, parBytes, ociartifact.Options{})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if res.Ref != ref {
		t.Errorf("Ref = %q; want %q", res.Ref, ref)
	}

	// Pull it back as a host does: the manifest first, then the layers.
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithContext(context.Background()))
	if err != nil {
		t.Fatalf("pull manifest: %v", err)
	}
	if desc.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type = %q; want the OCI image manifest type oci-client pushes with", desc.MediaType)
	}
	if got, want := string(desc.Manifest), washManifest(parBytes); got != want {
		t.Errorf("manifest differs from wash's:\n got %s\nwant %s", got, want)
	}
	if got := desc.Digest.String(); got != res.Digest || got != sha(desc.Manifest) {
		t.Errorf("digest: registry %s, Push returned %s, manifest hashes to %s", got, res.Digest, sha(desc.Manifest))
	}

	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatalf("config blob: %v", err)
	}
	if string(cfg) != "{}" {
		t.Errorf("config blob = %q; want {} (wash's blank config)", cfg)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want exactly one", len(layers), err)
	}
	mt, _ := layers[0].MediaType()
	// The host's fetch_provider accepts only the PAR layer type and the plain OCI tar layer type.
	if mt != ociartifact.LayerMediaType {
		t.Errorf("layer media type = %q; want %q", mt, ociartifact.LayerMediaType)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pulled, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read layer: %v", err)
	}
	if !bytes.Equal(pulled, parBytes) {
		t.Errorf("pulled layer (%d bytes, %s) is not the PAR (%d bytes, %s)", len(pulled), sha(pulled), len(parBytes), sha(parBytes))
	}
	if _, err := par.Verify(bytes.NewReader(pulled)); err != nil {
		t.Errorf("the pulled PAR does not verify: %v", err)
	}

	// Pushing the same archive again is a no-op that reports the same digest.
	again, err := ociartifact.Push(context.Background(), ref, parBytes, ociartifact.Options{})
	if err != nil || again.Digest != res.Digest {
		t.Errorf("second push: %+v, %v; want digest %s", again, err, res.Digest)
	}
}

func TestPushAnnotationsAsWash(t *testing.T) {
	reg := registrytest.Start(t)
	parBytes := testPAR(t)
	ref := reg.Ref("acme/provider", "1.2.3")
	ann := map[string]string{"org.opencontainers.image.version": "1.2.3", "a&b": "<x>"}
	if _, err := ociartifact.Push(context.Background(), ref, parBytes, ociartifact.Options{Annotations: ann}); err != nil {
		t.Fatalf("Push: %v", err)
	}
	r, _ := name.ParseReference(ref)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	// Canonical JSON: keys sorted, no HTML escaping.
	want := `{"annotations":{"a&b":"<x>","org.opencontainers.image.version":"1.2.3"},` + strings.TrimPrefix(washManifest(parBytes), "{")
	if string(desc.Manifest) != want {
		t.Errorf("manifest:\n got %s\nwant %s", desc.Manifest, want)
	}
}

func TestPushLowercasesLikeWashAndTheHost(t *testing.T) {
	reg := registrytest.Start(t)
	res, err := ociartifact.Push(context.Background(), reg.Host+"/Acme/Provider:V1", testPAR(t), ociartifact.Options{})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if want := reg.Host + "/acme/provider:v1"; res.Ref != want {
		t.Errorf("Ref = %q; want %q (the host lowercases references before pulling)", res.Ref, want)
	}
}

func TestPushRefusesWhatWashRefuses(t *testing.T) {
	reg := registrytest.Start(t)
	good := testPAR(t)
	for _, tc := range []struct {
		name, ref string
		par       []byte
		want      string
	}{
		{"not a PAR", reg.Ref("p", "1.0.0"), []byte("\x00asm not an archive"), "not a valid provider archive"},
		{"latest", reg.Ref("p", "latest"), good, "latest"},
		{"no tag", reg.Host + "/p", good, "tag"},
		{"no registry", "p:1.0.0", good, "registry"},
		{"digest", reg.Host + "/p@" + sha(good), good, "tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ociartifact.Push(context.Background(), tc.ref, tc.par, ociartifact.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Push(%q) = %v; want an error containing %q", tc.ref, err, tc.want)
			}
		})
	}
	// Nothing reached the registry.
	repo, _ := name.NewRepository(reg.Host + "/p")
	if tags, err := remote.List(repo); err == nil && len(tags) > 0 {
		t.Errorf("tags after refused pushes: %v", tags)
	}
}

func TestPushStopsWithItsContext(t *testing.T) {
	reg := registrytest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ociartifact.Push(ctx, reg.Ref("p", "1.0.0"), testPAR(t), ociartifact.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Push with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestPushNamesTheRegistryItCannotReach(t *testing.T) {
	// Port 1 on loopback: nothing listens there (tcpmux is long gone), so the connection is refused at once.
	ref := "127.0.0.1:1/p:1.0.0"
	_, err := ociartifact.Push(context.Background(), ref, testPAR(t), ociartifact.Options{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Push to %s = %v; want an error naming the registry", ref, err)
	}
}
