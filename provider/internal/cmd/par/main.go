// Command par builds and verifies the provider archive (PAR) for `make par`, so packaging does not need wash.
//
//	par [build] --name N --vendor V --version X [--revision R] --out FILE [--keys-dir DIR]
//	    --bin TARGET=PATH [--bin ...] [--wit-world world.wasm]
//	par verify [--target TARGET] FILE
//
// TARGET is a host target such as x86_64-linux, or GOOS/GOARCH (linux/amd64). Signing keys come from
// WASH_ISSUER_KEY / WASH_SUBJECT_KEY (seed or file) or from --keys-dir, generated there on first use.
// SOURCE_DATE_EPOCH, when set, fixes the claims' iat and entry times, making the archive reproducible.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run returns the exit code: 0 ok, 1 failure, 2 usage.
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	if len(args) > 0 && args[0] == "verify" {
		return verify(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "build" {
		args = args[1:]
	}
	return build(args, stdout, stderr, env)
}

// binFlags collects repeatable --bin TARGET=PATH.
type binFlags map[string]string

func (b binFlags) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binFlags) Set(v string) error {
	target, path, ok := strings.Cut(v, "=")
	if !ok || target == "" || path == "" {
		return errors.New("want TARGET=PATH, e.g. x86_64-linux=build/bin/app or linux/amd64=build/bin/app")
	}
	if goos, goarch, ok := strings.Cut(target, "/"); ok {
		target = par.Target(goos, goarch)
	}
	if _, dup := b[target]; dup {
		return fmt.Errorf("target %s given twice", target)
	}
	b[target] = path
	return nil
}

func build(args []string, stdout, stderr io.Writer, env func(string) string) int {
	fs := flag.NewFlagSet("par", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts    par.BuildOptions
		out     = fs.String("out", "", "output file, e.g. build/infisical-secrets-provider.par.gz (required)")
		keysDir = fs.String("keys-dir", "build/keys", "directory of issuer.nk and subject.nk, created on first use")
		world   = fs.String("wit-world", "", "optional world.wasm (the WIT package encoded as wasm) to embed")
		bins    = binFlags{}
	)
	fs.StringVar(&opts.Name, "name", "", "provider name (required)")
	fs.StringVar(&opts.Vendor, "vendor", "", "provider vendor (required)")
	fs.StringVar(&opts.Version, "version", "", "provider version, e.g. 0.1.0 (required)")
	fs.IntVar(&opts.Revision, "revision", 0, "provider revision")
	fs.Var(bins, "bin", "TARGET=PATH of a platform binary (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || opts.Version == "" || len(bins) == 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "par: --out, --version and at least one --bin are required; no positional arguments")
		fs.Usage()
		return 2
	}
	if err := buildArchive(&opts, *out, *keysDir, *world, bins, stdout, stderr, env); err != nil {
		fmt.Fprintf(stderr, "par: %v\n", err)
		return 1
	}
	return 0
}

func buildArchive(opts *par.BuildOptions, out, keysDir, world string, bins binFlags, stdout, stderr io.Writer, env func(string) string) error {
	keys, err := par.LoadOrCreateKeys(keysDir, env)
	if err != nil {
		return err
	}
	for _, f := range keys.Created {
		fmt.Fprintf(stderr, "par: generated signing key %s (keep it out of git; it fixes the provider's identity)\n", f)
	}
	opts.Issuer, opts.Subject = keys.Issuer, keys.Subject.PublicKey()
	if epoch := env("SOURCE_DATE_EPOCH"); epoch != "" {
		secs, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
		opts.Time = time.Unix(secs, 0)
	}
	opts.Binaries = map[string][]byte{}
	for target, path := range bins {
		b, err := readBounded(path, par.MaxBinarySize)
		if err != nil {
			return fmt.Errorf("binary %s: %w", target, err)
		}
		opts.Binaries[target] = b
	}
	if world != "" {
		if opts.World, err = readBounded(world, par.MaxWorldSize); err != nil {
			return fmt.Errorf("world: %w", err)
		}
	}

	var buf bytes.Buffer
	if err := par.Build(&buf, *opts); err != nil {
		return err
	}
	// Check what was written before publishing it, so a broken archive never replaces a good one.
	a, err := par.Verify(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return fmt.Errorf("self-check: %w", err)
	}
	if err := writeAtomic(out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	printSummary(stdout, a)
	return nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, limit %d", path, st.Size(), limit)
	}
	return os.ReadFile(path)
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".par-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printSummary(w io.Writer, a *par.Archive) {
	fmt.Fprintf(w, "issuer:  %s\n", a.Claims.Issuer)
	fmt.Fprintf(w, "subject: %s\n", a.Claims.Subject)
	for _, t := range a.Targets() {
		fmt.Fprintf(w, "%-14s %s\n", t, a.Claims.Wascap.TargetHashes[t])
	}
	if a.World != nil {
		fmt.Fprintf(w, "%-14s %s\n", par.WorldHashKey, a.Claims.Wascap.TargetHashes[par.WorldHashKey])
	}
}

func verify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("par verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "also require this target's binary (e.g. x86_64-linux)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: par verify [--target TARGET] FILE")
		return 2
	}
	a, err := par.OpenFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "par: %v\n", err)
		return 1
	}
	// Claims are public (wash inspect prints them), so show them even when verification fails.
	claims, err := json.MarshalIndent(a.Claims, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "par: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", claims)
	printSummary(stdout, a)
	if err := a.Verify(); err != nil {
		fmt.Fprintf(stderr, "par: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	if *target != "" {
		if _, err := a.Binary(*target); err != nil {
			fmt.Fprintf(stderr, "par: %s: %v\n", fs.Arg(0), err)
			return 1
		}
	}
	fmt.Fprintln(stdout, "OK")
	return 0
}
