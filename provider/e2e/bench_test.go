package e2e

import (
	"context"
	"io"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/rig"
)

// BenchmarkGetCacheHit is one host's cache-hit get through real NATS and the backend (`serve`, in-process), logging
// at its default level. Allocations count the whole process, NATS server and client included.
func BenchmarkGetCacheHit(b *testing.B) { benchmarkGet(b, rig.Backend) }

// BenchmarkBaselineResponder is the same get against a responder that only opens the request, verifies the two
// JWTs and seals a fixed reply with a fresh key, on the same kind of NATS: the floor for BenchmarkGetCacheHit.
func BenchmarkBaselineResponder(b *testing.B) { benchmarkGet(b, rig.Baseline) }

func benchmarkGet(b *testing.B, target string) {
	r, err := rig.Start(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	c, err := r.NewClient()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.Get(ctx, target); err != nil { // fills the cache
		b.Fatal(err)
	}
	for b.Loop() {
		if err := c.Get(ctx, target); err != nil {
			b.Fatal(err)
		}
	}
}
