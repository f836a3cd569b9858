// Package registrytest runs an in-memory OCI registry (go-containerregistry's pkg/registry) on 127.0.0.1 for tests,
// so that pushing and pulling provider archives and images never leaves the machine. A wasmCloud host reaches it as
// an insecure (plain HTTP) registry: start the host with WASMCLOUD_OCI_ALLOWED_INSECURE set to Registry.Host, and
// push to it with `wash push --insecure`. Where go-containerregistry's registry leaves out the Location header the
// distribution spec requires on a 201 (which wash's oci-client needs), this package adds it.
package registrytest

import (
	"io"
	"log"
	"net/http"
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
	srv := httptest.NewServer(withLocation(registry.New(registry.Logger(log.New(w, "registry: ", 0)))))
	tb.Cleanup(srv.Close)
	return &Registry{Host: strings.TrimPrefix(srv.URL, "http://")}
}

// Ref is the reference of repo:tag in this registry, e.g. 127.0.0.1:PORT/infisical-secrets-provider:0.1.0.
func (r *Registry) Ref(repo, tag string) string {
	return r.Host + "/" + repo + ":" + tag
}

// withLocation adds the Location of the content to 201 answers of finished blob uploads and manifest puts that lack
// one: /v2/<name>/blobs/<digest> and /v2/<name>/manifests/<digest>.
func withLocation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&locationWriter{ResponseWriter: w, req: r}, r)
	})
}

type locationWriter struct {
	http.ResponseWriter
	req *http.Request
}

func (lw *locationWriter) WriteHeader(code int) {
	h := lw.Header()
	if code == http.StatusCreated && h.Get("Location") == "" {
		p := lw.req.URL.Path
		if name, _, ok := strings.Cut(p, "/blobs/uploads/"); ok {
			if d := lw.req.URL.Query().Get("digest"); d != "" {
				h.Set("Location", name+"/blobs/"+d)
			}
		} else if name, _, ok := strings.Cut(p, "/manifests/"); ok {
			if d := h.Get("Docker-Content-Digest"); d != "" {
				h.Set("Location", name+"/manifests/"+d)
			}
		}
	}
	lw.ResponseWriter.WriteHeader(code)
}
