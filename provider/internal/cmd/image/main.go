// Command image assembles the container image for standalone `serve` without Docker, for `make image` (see package
// ociimage for what is in it), and writes it as a tarball that `docker load` and `podman load` read.
//
//	image --binary FILE --tag REF --out FILE [--ca-bundle FILE] [--version V] [--revision SHA] [--vendor NAME]
//
// SOURCE_DATE_EPOCH, when set, fixes the creation time and file times; otherwise they are now.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/ociimage"
)

const defaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run returns the exit code: 0 written, 1 failed, 2 usage.
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		bin      = fl.String("binary", "", "static linux/amd64 provider binary (required)")
		ca       = fl.String("ca-bundle", defaultCABundle, "PEM CA bundle to install as "+ociimage.CABundlePath)
		tag      = fl.String("tag", "", "image reference to tag the tarball with, e.g. ghcr.io/org/repo:0.1.0 (required)")
		out      = fl.String("out", "", "tarball to write (required)")
		opts     ociimage.Options
		revision = fl.String("revision", "", "source commit, for org.opencontainers.image.revision")
	)
	fl.StringVar(&opts.Version, "version", "", "org.opencontainers.image.version")
	fl.StringVar(&opts.Vendor, "vendor", "", "org.opencontainers.image.vendor")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *bin == "" || *tag == "" || *out == "" || fl.NArg() != 0 {
		fmt.Fprintln(stderr, "image: --binary, --tag and --out are required; no positional arguments")
		fl.Usage()
		return 2
	}
	if _, err := name.NewTag(*tag, name.StrictValidation); err != nil {
		fmt.Fprintf(stderr, "image: --tag %q: want registry/repo:tag: %v\n", *tag, err)
		return 2
	}
	opts.Revision = *revision
	if epoch := env("SOURCE_DATE_EPOCH"); epoch != "" {
		secs, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "image: SOURCE_DATE_EPOCH %q: %v\n", epoch, err)
			return 2
		}
		opts.Created = time.Unix(secs, 0)
	} else {
		opts.Created = time.Now().Truncate(time.Second)
	}

	var err error
	if opts.CABundle, err = os.ReadFile(*ca); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "image: no CA bundle at %s: the image needs one to verify Infisical's TLS certificate. "+
				"install the ca-certificates package (Debian/Ubuntu: apt-get install ca-certificates; Alpine: apk add "+
				"ca-certificates) or pass another PEM bundle (make image CA_BUNDLE=path)\n", *ca)
		} else {
			fmt.Fprintf(stderr, "image: read CA bundle: %v\n", err)
		}
		return 1
	}
	if opts.Binary, err = os.ReadFile(*bin); err != nil {
		fmt.Fprintf(stderr, "image: read binary: %v\n", err)
		return 1
	}
	img, err := ociimage.Build(opts)
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	if err := ociimage.WriteTarball(*out, *tag, img); err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	id, err := img.ConfigName()
	if err != nil {
		fmt.Fprintf(stderr, "image: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\ntag:      %s\nimage id: %s (what docker load reports)\nload it with: docker load -i %s  (or podman load -i %s)\n",
		*out, *tag, id, *out, *out)
	return 0
}
