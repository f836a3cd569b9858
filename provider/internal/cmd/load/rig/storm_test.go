package rig

import "testing"

// The storm docs/performance.md's table comes from, small: the counts it reports are what the fleet did.
func TestStormCounts(t *testing.T) {
	tests := []struct {
		name                    string
		prefetch, shared        bool
		rate                    int
		maxCalls, wantLimited   int // wantLimited < 0: some
		wantFailed, wantWarmOps int
	}{
		{name: "prefetch and sharing", prefetch: true, shared: true, rate: 120, maxCalls: 2},
		{name: "neither, over the rate limit", rate: 5, maxCalls: 2 * 3 * 2 * 2, wantLimited: -1, wantFailed: -1, wantWarmOps: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cold, warm, err := Storm(StormConfig{Hosts: 2, Components: 3, Secrets: 2, Folders: 2, Replicas: 2,
				RateLimit: tt.rate, Prefetch: tt.prefetch, Shared: tt.shared})
			if err != nil {
				t.Fatal(err)
			}
			if cold.Gets != 12 || warm.Gets != 12*warmPasses {
				t.Fatalf("%d and %d gets; want 12 in each pass", cold.Gets, warm.Gets)
			}
			if calls := cold.Lists + cold.Reads; calls > tt.maxCalls || calls == 0 {
				t.Fatalf("%d Infisical calls; want 1 to %d", calls, tt.maxCalls)
			}
			if (tt.wantLimited < 0) != (cold.RateLimited > 0) {
				t.Fatalf("%d 429s", cold.RateLimited)
			}
			if tt.wantFailed == 0 && (cold.Failed > 0 || warm.Failed > 0) {
				t.Fatalf("%d and %d gets failed; first: %v", cold.Failed, warm.Failed, cold.FirstErr)
			}
			if tt.wantFailed < 0 && cold.Failed == 0 {
				t.Fatal("no get failed past the rate limit")
			}
			if tt.wantWarmOps == 0 && warm.Lists+warm.Reads != 0 {
				t.Fatalf("the warm pass made %d Infisical calls", warm.Lists+warm.Reads)
			}
		})
	}
}
