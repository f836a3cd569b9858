// Command push uploads a provider archive to an OCI registry as `wash push` does, for `make push`, so releasing the
// PAR needs no wash (see package ociartifact for the layout).
//
//	push [--insecure] [--annotation KEY=VALUE ...] [--timeout 10m] REF FILE
//
// REF is registry/repo:tag, e.g. ghcr.io/acme/infisical-secrets-provider:0.1.0. Credentials are wash's
// WASH_REG_USER and WASH_REG_PASSWORD when both are set, else docker login's (~/.docker/config.json and its
// credential helpers). On success it prints REF@DIGEST on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociartifact"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// annotations collects repeatable --annotation KEY=VALUE.
type annotations map[string]string

func (a annotations) String() string { return fmt.Sprint(map[string]string(a)) }

func (a annotations) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE")
	}
	a[k] = val
	return nil
}

// run returns the exit code: 0 pushed, 1 failed, 2 usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	fl := flag.NewFlagSet("push", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		insecure = fl.Bool("insecure", false, "plain HTTP to the registry (loopback and private addresses use it anyway)")
		timeout  = fl.Duration("timeout", 10*time.Minute, "give up after this long")
		ann      = annotations{}
	)
	fl.Var(ann, "annotation", "KEY=VALUE manifest annotation (repeatable), as wash push --annotation")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: push [--insecure] [--annotation KEY=VALUE ...] REF FILE")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return 2
	}
	ref, file := fl.Arg(0), fl.Arg(1)

	raw, err := readPAR(file)
	if err != nil {
		fmt.Fprintf(stderr, "push: %v\n", err)
		return 1
	}
	opts := ociartifact.Options{Insecure: *insecure, Annotations: ann}
	if user, pass := env("WASH_REG_USER"), env("WASH_REG_PASSWORD"); user != "" && pass != "" {
		opts.Auth = &authn.Basic{Username: user, Password: pass}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := ociartifact.Push(ctx, ref, raw, opts)
	if err != nil {
		fmt.Fprintf(stderr, "push: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "push: pushed %s (%d bytes) as %s, digest %s\n", file, len(raw), res.Ref, res.Digest)
	fmt.Fprintf(stdout, "%s@%s\n", res.Ref, res.Digest)
	return 0
}

// readPAR reads the archive, bounded by what a PAR may hold, and says how to make it when it is missing.
func readPAR(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: build it first with `make par`", path)
	}
	if err != nil {
		return nil, err
	}
	if st.Size() > par.MaxTotalSize {
		return nil, fmt.Errorf("%s is %d bytes, more than a provider archive may hold (%d)", path, st.Size(), par.MaxTotalSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read provider archive: %w", err)
	}
	return b, nil
}
