package e2e

import (
	"fmt"
	"sync"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
)

// Replicas of `serve` on a NATS account with JetStream share their Infisical reads: a fleet starting cold asks
// Infisical once per folder, whichever replica each request reaches.
func TestReplicasShareInfisicalReadsThroughJetStream(t *testing.T) {
	url, _ := natstest.StartJetStream(t)
	h := newHarnessOn(t, url)
	const replicas, folders, keys = 3, 3, 4
	for f := range folders {
		for k := range keys {
			h.fake.SetSecret(project, "prod", fmt.Sprintf("/app%d", f), fmt.Sprintf("K%d", k), fmt.Sprintf("v%d-%d", f, k))
		}
	}
	logs := startReplicas(t, h.env, replicas)
	for i, l := range logs {
		if capture.CountLines(l.String(), "shared cache on") != 1 {
			t.Fatalf("replica %d does not say the shared cache is on", i)
		}
	}

	var wg sync.WaitGroup
	for host := range 4 {
		for f := range folders {
			wg.Go(func() {
				for k := range keys {
					want := fmt.Sprintf("v%d-%d", f, k)
					s, err := h.fetch(hostsim.Ref{Key: fmt.Sprintf("/app%d/K%d", f, k)})
					if err != nil || s.StringSecret == nil || *s.StringSecret != want {
						t.Errorf("host %d /app%d/K%d: %v, %v; want %s", host, f, k, s, err, want)
					}
				}
			})
		}
	}
	wg.Wait()
	if n, r := h.fake.Lists(), h.fake.Reads(); n > folders || r != 0 {
		t.Fatalf("Infisical saw %d lists and %d reads from %d replicas; want at most one list per folder (%d)", n, r, replicas, folders)
	}
}

// Without JetStream the cache stays in each replica's memory, and the log says why, once.
func TestServeWithoutJetStreamSaysWhyOnce(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.mustString(hostsim.Ref{Key: "DB_PASSWORD"})
	if n := capture.CountLines(h.logs.String(), "shared cache off", "no JetStream"); n != 1 {
		t.Fatalf("%d lines say why the shared cache is off; want 1:\n%s", n, h.logs.String())
	}
}
