// Package ociartifact pushes a provider archive (PAR) to an OCI registry exactly as `wash push` does, so that a
// release needs no wash and a wasmCloud host can start the provider from the reference.
//
// The layout is read from wash 0.43.0 (src/lib/registry.rs, push_oci_artifact and parse_provider_archive) and the
// oci-client 0.15 it pushes with (OciImageManifest::build, Client::push_manifest): an OCI image manifest whose JSON
// has no mediaType or artifactType field, sent with Content-Type application/vnd.oci.image.manifest.v1+json; a config
// blob "{}" of type application/vnd.wasmcloud.provider.archive.config; one layer, the .par.gz file byte for byte, of
// type application/vnd.wasmcloud.provider.archive.layer.v1+par. The manifest is serialized as oci-client's
// canonical JSON (sorted keys, no insignificant space), so for the same archive and annotations the digest is the
// one wash would push. The host (wasmcloud-core 0.21 src/oci.rs, fetch_provider) accepts the PAR layer type or the
// plain OCI tar layer type, and lowercases a reference before pulling it; wash lowercases it before pushing too.
package ociartifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

// Media types of a provider archive in a registry, as wash writes them and the host accepts them.
const (
	ManifestMediaType = "application/vnd.oci.image.manifest.v1+json" // Content-Type only; absent from the JSON
	ConfigMediaType   = "application/vnd.wasmcloud.provider.archive.config"
	LayerMediaType    = "application/vnd.wasmcloud.provider.archive.layer.v1+par"
)

// blankConfig is the config wash pushes when `wash push` is given no --config.
var blankConfig = []byte("{}")

// Options tune a push; the zero value pushes anonymously (or with the docker credential helpers' login) over HTTPS,
// or plain HTTP to a loopback or private-address registry.
type Options struct {
	// Insecure uses plain HTTP for any registry (wash push --insecure).
	Insecure bool
	// Auth logs in to the registry; nil uses authn.DefaultKeychain (docker login's config and helpers).
	Auth authn.Authenticator
	// Annotations go into the manifest (wash push --annotation k=v).
	Annotations map[string]string
	// Transport replaces the HTTP transport, e.g. to trust a private CA.
	Transport http.RoundTripper
}

// Result is what a push left in the registry.
type Result struct {
	Ref      string // the reference pushed, lowercased as wash and the host do
	Digest   string // sha256:... of the manifest; Ref's repository @ Digest pins this exact push
	Manifest []byte // the manifest as pushed
}

// Push verifies that parBytes is a signed provider archive whose binaries match its claims (wash refuses anything
// else), then uploads the config and the archive and tags the manifest as ref. ref must name a registry and a tag
// other than latest, which the host refuses to pull unless told to.
func Push(ctx context.Context, ref string, parBytes []byte, opts Options) (Result, error) {
	tag, err := parseRef(ref, opts.Insecure)
	if err != nil {
		return Result{}, err
	}
	if _, err := par.Verify(bytes.NewReader(parBytes)); err != nil {
		return Result{}, fmt.Errorf("push %s: not a valid provider archive: %w", tag, err)
	}
	manifest, err := Manifest(parBytes, opts.Annotations)
	if err != nil {
		return Result{}, fmt.Errorf("push %s: %w", tag, err)
	}

	ropts := []remote.Option{remote.WithContext(ctx)}
	if opts.Auth != nil {
		ropts = append(ropts, remote.WithAuth(opts.Auth))
	} else {
		ropts = append(ropts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	for _, blob := range []v1.Layer{
		static.NewLayer(blankConfig, ConfigMediaType),
		static.NewLayer(parBytes, LayerMediaType),
	} {
		if err := remote.WriteLayer(tag.Context(), blob, ropts...); err != nil {
			return Result{}, fmt.Errorf("push %s: upload blob to %s: %w", tag, tag.RegistryStr(), ctxErr(ctx, err))
		}
	}
	if err := remote.Put(tag, rawManifest(manifest), ropts...); err != nil {
		return Result{}, fmt.Errorf("push %s: put manifest to %s: %w", tag, tag.RegistryStr(), ctxErr(ctx, err))
	}
	h, _, err := v1.SHA256(bytes.NewReader(manifest))
	if err != nil {
		return Result{}, fmt.Errorf("push %s: digest: %w", tag, err)
	}
	return Result{Ref: tag.String(), Digest: h.String(), Manifest: manifest}, nil
}

// Manifest returns the manifest wash pushes for parBytes, byte for byte: oci-client's canonical JSON of
// OciImageManifest::build(layers, config, annotations) with no media type set.
func Manifest(parBytes []byte, annotations map[string]string) ([]byte, error) {
	// Fields in sorted order, as the canonical formatter writes them.
	type descriptor struct {
		Digest    string `json:"digest"`
		MediaType string `json:"mediaType"`
		Size      int    `json:"size"`
	}
	type manifest struct {
		Annotations   map[string]string `json:"annotations,omitempty"` // a BTreeMap: sorted, as Go writes maps
		Config        descriptor        `json:"config"`
		Layers        []descriptor      `json:"layers"`
		SchemaVersion int               `json:"schemaVersion"`
	}
	digest := func(b []byte) string {
		h, _, _ := v1.SHA256(bytes.NewReader(b))
		return h.String()
	}
	m := manifest{
		Annotations:   annotations,
		Config:        descriptor{Digest: digest(blankConfig), MediaType: ConfigMediaType, Size: len(blankConfig)},
		Layers:        []descriptor{{Digest: digest(parBytes), MediaType: LayerMediaType, Size: len(parBytes)}},
		SchemaVersion: 2,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // canonical JSON escapes only what JSON requires
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// parseRef lowercases ref as wash and the host do and requires what the host needs to pull it: a registry and a
// tag other than latest.
func parseRef(ref string, insecure bool) (name.Tag, error) {
	lower := strings.ToLower(strings.TrimSpace(ref))
	if strings.Contains(lower, "@") {
		return name.Tag{}, fmt.Errorf("reference %q: push to a tag (registry/repo:tag), not a digest", ref)
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(lower, opts...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("reference %q: want registry/repo:tag, e.g. ghcr.io/org/repo:0.1.0 or localhost:5000/repo:0.1.0: %w", ref, err)
	}
	if tag.TagStr() == "latest" {
		return name.Tag{}, fmt.Errorf("reference %q: wasmCloud hosts refuse to pull tag latest (and wash to push it); use a version", ref)
	}
	return tag, nil
}

// rawManifest is a manifest to put as is, with the Content-Type oci-client sends for it.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return ManifestMediaType, nil }

// ctxErr prefers the context's own error, so callers can tell a cancelled push from a failing registry.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
