package par

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

var fixedTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// testKeys makes fresh signing keys.
func testKeys(t *testing.T) (nkeys.KeyPair, *ServiceKey) {
	t.Helper()
	iss, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := NewServiceKey()
	if err != nil {
		t.Fatal(err)
	}
	return iss, sub
}

func testOptions(t *testing.T) BuildOptions {
	t.Helper()
	iss, sub := testKeys(t)
	return BuildOptions{
		Name:     "Infisical Secrets Provider",
		Vendor:   "infisical-secrets-provider",
		Version:  "0.1.0",
		Revision: 2,
		Binaries: map[string][]byte{
			"x86_64-linux":  []byte("\x7fELF fake amd64 binary"),
			"aarch64-linux": []byte("\x7fELF fake arm64 binary"),
		},
		World:   []byte("\x00asm fake world"),
		Issuer:  iss,
		Subject: sub.PublicKey(),
		Time:    fixedTime,
	}
}

func build(t *testing.T, opts BuildOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Build(&buf, opts); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes()
}

type entry struct {
	name     string
	data     []byte
	mode     int64
	typeflag byte
	format   tar.Format
}

// readEntries lists a gzipped tar's entries as written.
func readEntries(t *testing.T, archive []byte) []entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{name: hdr.Name, data: data, mode: hdr.Mode, typeflag: hdr.Typeflag, format: hdr.Format})
	}
}

// writeArchive writes entries as a tar, gzipped when zip is set.
func writeArchive(t *testing.T, entries []entry, zip bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if zip {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		typ := e.typeflag
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Format: tar.FormatGNU, ModTime: fixedTime}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	opts := testOptions(t)
	raw := build(t, opts)

	if raw[0] != 0x1f || raw[1] != 0x8b || raw[8] != 2 { // XFL 2: "maximum compression"
		t.Errorf("not gzip at best compression: header % x", raw[:10])
	}
	var names []string
	for _, e := range readEntries(t, raw) {
		names = append(names, e.name)
		wantMode := int64(0o644)
		if strings.HasSuffix(e.name, ".bin") {
			wantMode = 0o755
		}
		if e.mode != wantMode || e.typeflag != tar.TypeReg || e.format != tar.FormatGNU {
			t.Errorf("entry %s: mode %o type %q format %v, want mode %o, regular, GNU", e.name, e.mode, e.typeflag, e.format, wantMode)
		}
	}
	if got, want := strings.Join(names, ","), "claims.jwt,world.wasm,aarch64-linux.bin,x86_64-linux.bin"; got != want {
		t.Errorf("entries %s, want %s", got, want)
	}

	a, err := Open(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := a.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got, want := strings.Split(a.Token, ".")[0], b64.EncodeToString([]byte(`{"typ":"jwt","alg":"Ed25519"}`)); got != want {
		t.Errorf("JWT header %s, want %s", got, want)
	}
	iss, _ := opts.Issuer.PublicKey()
	c := a.Claims
	if c.Issuer != iss || c.Subject != opts.Subject || c.WascapRevision != 3 || c.IssuedAt != fixedTime.Unix() || c.JTI == "" {
		t.Errorf("claims %+v: want iss %s, sub %s, wascap_revision 3, iat %d, a jti", c, iss, opts.Subject, fixedTime.Unix())
	}
	m := c.Wascap
	if m.Name != opts.Name || m.Vendor != opts.Vendor || m.Ver != opts.Version || m.Rev != opts.Revision {
		t.Errorf("wascap %+v, want name/vendor/ver/rev from %+v", m, opts)
	}
	for target, bin := range opts.Binaries {
		if !bytes.Equal(a.Binaries[target], bin) {
			t.Errorf("binary %s not round-tripped", target)
		}
		if h := m.TargetHashes[target]; h != Hash(bin) || h != strings.ToUpper(h) || len(h) != 64 {
			t.Errorf("target hash %s = %q, want uppercase hex SHA-256 %s", target, h, Hash(bin))
		}
	}
	if m.TargetHashes[WorldHashKey] != Hash(opts.World) || !bytes.Equal(a.World, opts.World) {
		t.Errorf("world.wasm not round-tripped with its hash")
	}
	if len(m.TargetHashes) != 3 {
		t.Errorf("target_hashes %v, want 2 binaries + world", m.TargetHashes)
	}
	if got := a.Targets(); strings.Join(got, ",") != "aarch64-linux,x86_64-linux" {
		t.Errorf("Targets() = %v", got)
	}

	// Open reads plain tar too, as the host does.
	plain := writeArchive(t, readEntries(t, raw), false)
	if _, err := Verify(bytes.NewReader(plain)); err != nil {
		t.Errorf("plain tar: %v", err)
	}
}

func TestExtract(t *testing.T) {
	a, err := Verify(bytes.NewReader(build(t, testOptions(t))))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, err := a.Extract(dir, "x86_64-linux")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 || filepath.Base(path) != "x86_64-linux.bin" {
		t.Errorf("extracted %s mode %v, want x86_64-linux.bin 0755", path, st.Mode())
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, a.Binaries["x86_64-linux"]) {
		t.Error("extracted bytes differ")
	}
	if _, err := a.Extract(dir, "x86_64-windows"); err == nil || !strings.Contains(err.Error(), "target `x86_64-windows` not found") {
		t.Errorf("missing target: %v", err)
	}
}

func TestReproducibleAndStableSubject(t *testing.T) {
	dir := t.TempDir()
	noEnv := func(string) string { return "" }
	load := func() *Keys {
		t.Helper()
		k, err := LoadOrCreateKeys(dir, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	opts := testOptions(t)
	k1 := load()
	opts.Issuer, opts.Subject = k1.Issuer, k1.Subject.PublicKey()
	first := build(t, opts)

	k2 := load()
	opts.Issuer, opts.Subject = k2.Issuer, k2.Subject.PublicKey()
	second := build(t, opts)
	if !bytes.Equal(first, second) {
		t.Error("same inputs, keys and time: archives differ")
	}

	opts.Time = fixedTime.Add(time.Hour)
	opts.Binaries = map[string][]byte{"x86_64-linux": []byte("a new build")}
	third := build(t, opts)
	var subs, isss []string
	for _, raw := range [][]byte{first, third} {
		a, err := Verify(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		subs, isss = append(subs, a.Claims.Subject), append(isss, a.Claims.Issuer)
	}
	if subs[0] != subs[1] || isss[0] != isss[1] {
		t.Errorf("subjects %v issuers %v: want one of each across builds", subs, isss)
	}
	if bytes.Equal(first, third) {
		t.Error("different binaries gave the same archive")
	}
}

// resign rebuilds an archive's claims with edit applied, signed by signer.
func resign(t *testing.T, raw []byte, signer nkeys.KeyPair, edit func(c *Claims)) []entry {
	t.Helper()
	entries := readEntries(t, raw)
	c, err := decodeToken(string(entries[0].data))
	if err != nil {
		t.Fatal(err)
	}
	edit(c)
	tok, err := sign(c, signer)
	if err != nil {
		t.Fatal(err)
	}
	entries[0].data = []byte(tok)
	return entries
}

func TestTamperedArchiveRejected(t *testing.T) {
	opts := testOptions(t)
	raw := build(t, opts)
	good := readEntries(t, raw)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	// with returns a copy of the good entries changed by f.
	with := func(f func(es []entry) []entry) []entry {
		es := make([]entry, len(good))
		for i, e := range good {
			e.data = bytes.Clone(e.data)
			es[i] = e
		}
		return f(es)
	}
	tokenParts := strings.Split(string(good[0].data), ".")

	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{"flipped byte in a binary", with(func(es []entry) []entry { es[3].data[0] ^= 1; return es }), "x86_64-linux: hash"},
		{"flipped byte in world", with(func(es []entry) []entry { es[1].data[0] ^= 1; return es }), "world.wasm: hash"},
		{"claims payload changed", with(func(es []entry) []entry {
			c, _ := decodeToken(string(es[0].data))
			c.Wascap.Name = "Evil Provider"
			body, _ := json.Marshal(c)
			es[0].data = []byte(tokenParts[0] + "." + b64.EncodeToString(body) + "." + tokenParts[2])
			return es
		}), "signature is not valid"},
		{"signature changed", with(func(es []entry) []entry {
			sig, _ := b64.DecodeString(tokenParts[2])
			sig[0] ^= 1
			es[0].data = []byte(tokenParts[0] + "." + tokenParts[1] + "." + b64.EncodeToString(sig))
			return es
		}), "signature is not valid"},
		{"wrong algorithm", with(func(es []entry) []entry {
			es[0].data = []byte(b64.EncodeToString([]byte(`{"typ":"jwt","alg":"HS256"}`)) + "." + tokenParts[1] + "." + tokenParts[2])
			return es
		}), "only supports Ed25519"},
		{"two segments", with(func(es []entry) []entry { es[0].data = []byte(tokenParts[0] + "." + tokenParts[1]); return es }), "expected 3 segments, found 2"},
		{"extra unknown entry", with(func(es []entry) []entry { return append(es, entry{name: "README.md", data: []byte("hi")}) }), `unknown entry "README.md"`},
		{"nested path", with(func(es []entry) []entry { return append(es, entry{name: "bin/x86_64-linux.bin", data: []byte("x")}) }), "invalid target"},
		{"directory entry", with(func(es []entry) []entry { return append(es, entry{name: "x86_64-macos.bin/", typeflag: tar.TypeDir}) }), "not a regular file"},
		{"symlink entry", with(func(es []entry) []entry {
			return append(es, entry{name: "x86_64-macos.bin", typeflag: tar.TypeSymlink})
		}), "not a regular file"},
		{"duplicate binary", with(func(es []entry) []entry { return append(es, entry{name: "x86_64-linux.bin", data: []byte("other")}) }), `duplicate entry "x86_64-linux.bin"`},
		{"missing claims", with(func(es []entry) []entry { return es[1:] }), "no claims.jwt"},
		{"no binaries", with(func(es []entry) []entry { return es[:2] }), "no {target}.bin"},
		{"oversize claims", with(func(es []entry) []entry { es[0].data = bytes.Repeat([]byte("a"), MaxClaimsSize+1); return es }), "limit"},
		{"binary without target hash", with(func(es []entry) []entry {
			return append(es, entry{name: "x86_64-macos.bin", data: []byte("mac")})
		}), "x86_64-macos has no target hash"},
		{"target hash without binary", with(func(es []entry) []entry { return append(es[:3:3], es[4:]...) }), "no x86_64-linux.bin"},
		{"world hash without world", with(func(es []entry) []entry { return append(es[:1:1], es[2:]...) }), "lacks"},
		{"world without world hash", resign(t, raw, opts.Issuer, func(c *Claims) { delete(c.Wascap.TargetHashes, WorldHashKey) }), "world.wasm has no target hash"},
		{"subject with bad checksum", resign(t, raw, opts.Issuer, func(c *Claims) {
			b := []byte(c.Subject)
			b[10] = map[bool]byte{true: 'B', false: 'A'}[b[10] == 'A']
			c.Subject = string(b)
		}), "service key"},
		{"subject is not a service key", resign(t, raw, opts.Issuer, func(c *Claims) { c.Subject = c.Issuer }), `prefix "A"`},
		{"issuer is a user key", resign(t, raw, user, func(c *Claims) { c.Issuer, _ = user.PublicKey() }), "not an account public key"},
		{"issuer swapped", resign(t, raw, opts.Issuer, func(c *Claims) {
			other, _ := nkeys.CreateAccount()
			c.Issuer, _ = other.PublicKey()
		}), "signature is not valid"},
		{"expired", resign(t, raw, opts.Issuer, func(c *Claims) { c.Expires = fixedTime.Unix() }), "token expired at"},
		{"not yet valid", resign(t, raw, opts.Issuer, func(c *Claims) { c.NotBefore = time.Now().Add(time.Hour).Unix() }), "cannot be used before"},
		{"no vendor", resign(t, raw, opts.Issuer, func(c *Claims) { c.Wascap.Vendor = "" }), "vendor"},
		{"re-signed hash mismatch", resign(t, raw, opts.Issuer, func(c *Claims) { c.Wascap.TargetHashes["aarch64-linux"] = Hash([]byte("x")) }), "aarch64-linux: hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(writeArchive(t, tt.entries, true)))
			if err == nil {
				t.Fatal("accepted a tampered archive")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestOpenRejectsGarbage(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not a tar", bytes.Repeat([]byte("nope"), 200)},
		{"truncated gzip", build(t, testOptions(t))[:100]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(bytes.NewReader(tt.data)); err == nil {
				t.Error("Open accepted it")
			}
		})
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(o *BuildOptions)
		want string
	}{
		{"no vendor", func(o *BuildOptions) { o.Vendor = "" }, "vendor is empty"},
		{"no name", func(o *BuildOptions) { o.Name = "" }, "name is empty"},
		{"no binaries", func(o *BuildOptions) { o.Binaries = nil }, "no binaries"},
		{"bad target", func(o *BuildOptions) { o.Binaries = map[string][]byte{"linux/amd64": []byte("x")} }, "invalid target"},
		{"empty binary", func(o *BuildOptions) { o.Binaries = map[string][]byte{"x86_64-linux": nil} }, "want 1.."},
		{"no issuer", func(o *BuildOptions) { o.Issuer = nil }, "no issuer key"},
		{"user issuer", func(o *BuildOptions) { o.Issuer = user }, "not an account public key"},
		{"account subject", func(o *BuildOptions) { o.Subject, _ = o.Issuer.PublicKey() }, `prefix "A"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			tt.edit(&opts)
			err := Build(io.Discard, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestTarget(t *testing.T) {
	tests := []struct{ goos, goarch, want string }{
		{"linux", "amd64", "x86_64-linux"},
		{"linux", "arm64", "aarch64-linux"},
		{"darwin", "amd64", "x86_64-macos"},
		{"darwin", "arm64", "aarch64-macos"},
		{"windows", "amd64", "x86_64-windows"},
		{"linux", "riscv64", "riscv64-linux"},
		{"linux", "386", "x86-linux"},
	}
	for _, tt := range tests {
		t.Run(tt.goos+"/"+tt.goarch, func(t *testing.T) {
			if got := Target(tt.goos, tt.goarch); got != tt.want {
				t.Errorf("Target = %q, want %q", got, tt.want)
			}
			if err := checkTarget(Target(tt.goos, tt.goarch)); err != nil {
				t.Error(err)
			}
		})
	}
}
