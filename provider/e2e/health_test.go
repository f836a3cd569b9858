package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
)

// healthURL is where serve says its health listener is (HEALTH_ADDR=127.0.0.1:0 picks a free port); the line is
// logged before serve subscribes, so it is there once start has returned.
func (h *harness) healthURL() string {
	h.t.Helper()
	m := regexp.MustCompile(`msg="health endpoints listening" addr=(\S+)`).FindStringSubmatch(h.logs.String())
	if m == nil {
		h.t.Fatalf("serve logged no health listener address:\n%s", h.logs.String())
	}
	return "http://" + m[1]
}

func probe(t *testing.T, method, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func TestSlow_ServeHealthEndpointsReportWhatTheHostWouldSee(t *testing.T) {
	h := newHarness(t)
	h.env["HEALTH_ADDR"] = "127.0.0.1:0"
	h.start()
	base := h.healthURL()

	if code, body := probe(t, http.MethodGet, base+"/livez"); code != http.StatusOK || body != "ok" {
		t.Errorf("/livez = %d %q; want 200 ok", code, body)
	}
	if code, body := probe(t, http.MethodGet, base+"/readyz"); code != http.StatusOK || body != "healthy" {
		t.Errorf("/readyz = %d %q; want 200 healthy", code, body)
	}
	if code, _ := probe(t, http.MethodPost, base+"/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d; want 405", code)
	}
	if code, _ := probe(t, http.MethodGet, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics = %d; want 404", code)
	}

	// NATS gone: not ready (the client reconnects by itself), but alive, so that Kubernetes does not restart it.
	h.nats.Shutdown()
	eventually.NoError(t, "/readyz to report the NATS disconnection", func() error {
		code, body := probe(t, http.MethodGet, base+"/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "NATS disconnected") {
			return nil
		}
		return fmt.Errorf("/readyz = %d %q; want 503 naming the NATS disconnection", code, body)
	})
	if code, _ := probe(t, http.MethodGet, base+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d with NATS down; want 200", code)
	}

	// Stopping serve closes the listener.
	h.stop()
	addr := strings.TrimPrefix(base, "http://")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("health listener %s still accepts connections after serve stopped", addr)
	}
}

func TestServeNotReadyWithoutTrustedIssuers(t *testing.T) {
	h := newHarness(t)
	h.env["HEALTH_ADDR"] = "127.0.0.1:0"
	delete(h.env, "TRUSTED_ISSUERS")
	h.start()
	base := h.healthURL()
	if code, body := probe(t, http.MethodGet, base+"/readyz"); code != http.StatusServiceUnavailable ||
		body != "no trusted issuers: set TRUSTED_ISSUERS" {
		t.Errorf("/readyz = %d %q; want 503 with the reason the managed provider gives its host", code, body)
	}
	if code, _ := probe(t, http.MethodGet, base+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d; want 200", code)
	}
}

func TestServeRefusesAHealthAddressInUse(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := h.env
	env["HEALTH_ADDR"] = ln.Addr().String()
	code, _, errOut := runCommand(t, env, "serve")
	if code != 1 || !strings.Contains(errOut, "HEALTH_ADDR") || !strings.Contains(errOut, ln.Addr().String()) {
		t.Errorf("serve with HEALTH_ADDR in use: exit %d, log:\n%s\nwant exit 1 naming HEALTH_ADDR and the address", code, errOut)
	}
}
