package backend

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// A tenant link may bring its own identity and its own INFISICAL_BASE_URL (the allow-list permits both), so whoever
// deploys a manifest chooses a server the shared provider talks to. That server answers the login, then streams a
// secrets listing that never ends. The read is given up after UPSTREAM_TIMEOUT, but the SDK call cannot be cancelled
// and its HTTP client has neither a timeout nor a body limit: the abandoned goroutine keeps reading the body into
// memory for as long as the server sends. One request from the attacker's own application grows the provider's heap
// without bound (every tenant and the provider's own identity share that process); a listing that does end is read
// and cached whatever its size (1 000 listings are kept).
func TestAttack_HostileTenantServerGrowsMemoryWithoutBound(t *testing.T) {
	const stopAt = 96 << 20 // the test's own safety stop; an attacker never stops
	var written atomic.Int64
	var streaming atomic.Int32 // listings being sent: each ends when the provider closes its connection
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasSuffix(r.URL.Path, "/login"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"accessToken":"tok","expiresIn":7200,"accessTokenMaxTTL":7200,"tokenType":"Bearer"}`)
		case strings.HasPrefix(r.URL.Path, "/api/v3/secrets/raw"):
			w.Header().Set("Content-Type", "application/json")
			streaming.Add(1)
			defer streaming.Add(-1)
			_, _ = io.WriteString(w, `{"secrets":[{"secretKey":"K","environment":"prod","secretPath":"/","secretValue":"`)
			chunk := []byte(strings.Repeat("A", 64<<10))
			for written.Load() < stopAt {
				select {
				case <-stop:
					return
				case <-r.Context().Done():
					return
				default:
				}
				n, err := w.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })

	s, err := settings.Load(settings.Maps(map[string]string{
		"INFISICAL_PROJECT_ID": "prov", "INFISICAL_CLIENT_ID": "provider-client", "TRUSTED_ISSUERS": "*",
		"UPSTREAM_TIMEOUT": "1s",
	}, map[string]string{"INFISICAL_CLIENT_SECRET": "provider-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Settings: s, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	// Exactly what a link may set.
	tenant, err := settings.LoadTenant(settings.Maps(map[string]string{
		"INFISICAL_BASE_URL": srv.URL, "INFISICAL_PROJECT_ID": "evil", "INFISICAL_ENVIRONMENT": "prod",
		"INFISICAL_CLIENT_ID": "evil-client"}, map[string]string{"INFISICAL_CLIENT_SECRET": "x"}), s)
	if err != nil {
		t.Fatalf("the link is refused: %v", err)
	}
	if err := b.SetTenant("evil", tenant.Infisical); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	_, err = b.Get(ctx, &secrets.Verified{Request: &secrets.Request{Key: "K"}, Application: "evil",
		Entity: &wascap.Claims{Issuer: "AISSUER", Subject: "MSUBJECT", Name: "x"}})
	t.Logf("the request ended with: %v (after %d MiB)", err, written.Load()>>20)

	// The request is over; see whether the provider keeps swallowing the body, or lets go of every listing (an
	// abandoned exchange ends UPSTREAM_TIMEOUT plus a grace after it started).
	eventually.Within(30*time.Second).True(t, "the provider to close the hostile listings", func() bool {
		return streaming.Load() == 0 || written.Load() >= 64<<20
	})
	if n := written.Load(); n >= 64<<20 {
		t.Fatalf("the provider read %d MiB of one hostile Infisical answer (and was still reading after the request "+
			"ended): responses are not bounded, so a tenant's server can exhaust the shared provider's memory", n>>20)
	}
}
