package registrytest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/registrytest"
)

func do(t *testing.T, method, url, contentType string, body []byte) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp
}

// wash push (oci-client) requires the Location header the distribution spec mandates on a 201 for a finished
// blob upload, which go-containerregistry's registry leaves out; the test registry adds it.
func TestFinishedUploadsSayWhereTheContentIs(t *testing.T) {
	reg := registrytest.Start(t)
	base := "http://" + reg.Host
	blob := []byte("{}")
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))

	start := do(t, http.MethodPost, base+"/v2/acme/p/blobs/uploads/", "", nil)
	upload := start.Header.Get("Location")
	if start.StatusCode != http.StatusAccepted || upload == "" {
		t.Fatalf("start upload: %d, Location %q", start.StatusCode, upload)
	}
	sep := "?"
	if strings.Contains(upload, "?") {
		sep = "&"
	}
	done := do(t, http.MethodPut, base+upload+sep+"digest="+digest, "application/octet-stream", blob)
	if done.StatusCode != http.StatusCreated || done.Header.Get("Location") != "/v2/acme/p/blobs/"+digest {
		t.Errorf("finish upload: %d, Location %q; want 201 and /v2/acme/p/blobs/%s", done.StatusCode, done.Header.Get("Location"), digest)
	}

	manifest := []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.wasmcloud.provider.archive.config","digest":"` +
		digest + `","size":2},"layers":[]}`)
	put := do(t, http.MethodPut, base+"/v2/acme/p/manifests/0.1.0", "application/vnd.oci.image.manifest.v1+json", manifest)
	want := fmt.Sprintf("/v2/acme/p/manifests/sha256:%x", sha256.Sum256(manifest))
	if put.StatusCode != http.StatusCreated || put.Header.Get("Location") != want {
		t.Errorf("put manifest: %d, Location %q; want 201 and %s", put.StatusCode, put.Header.Get("Location"), want)
	}
}
