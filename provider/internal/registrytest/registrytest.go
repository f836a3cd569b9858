// Package registrytest runs an in-memory OCI registry (go-containerregistry's pkg/registry) on 127.0.0.1 for tests,
// so that pushing and pulling provider archives and images never leaves the machine. A wasmCloud host reaches it as
// an insecure (plain HTTP) registry: start the host with WASMCLOUD_OCI_ALLOWED_INSECURE set to Registry.Host.
package registrytest

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a running in-memory registry; its content is gone when the test ends.
type Registry struct {
	// Host is the registry's address, 127.0.0.1:PORT, as it appears in references.
	Host string
}

// Start runs a registry on a free loopback port until tb ends. Its request log is discarded unless verbose is
// wanted by the caller through StartWithLog.
func Start(tb testing.TB) *Registry {
	tb.Helper()
	return StartWithLog(tb, io.Discard)
}

// StartWithLog is Start with the registry's request log written to w (e.g. a capture buffer), one line per request.
func StartWithLog(tb testing.TB, w io.Writer) *Registry {
	tb.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(w, "registry: ", 0))))
	tb.Cleanup(srv.Close)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "http://")}
}

// Ref is the reference of repo:tag in this registry, e.g. 127.0.0.1:PORT/infisical-secrets-provider:0.1.0.
func (r *Registry) Ref(repo, tag string) string {
	return r.Host + "/" + repo + ":" + tag
}
