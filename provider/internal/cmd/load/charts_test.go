package main

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/rig"
)

// The charts show one series per target (backend, baseline) and per storm mode, with a value per client level or
// per storm count.
func TestCharts(t *testing.T) {
	res := func(gets int, p99 time.Duration) result {
		return result{gets: gets, elapsed: time.Second, latencies: []time.Duration{time.Millisecond, p99}}
	}
	levels := []level{
		{clients: 1, backend: res(900, 2*time.Millisecond), baseline: res(1000, time.Millisecond)},
		{clients: 64, backend: res(2000, 60*time.Millisecond), baseline: res(2200, 50*time.Millisecond)},
	}
	var storms []stormRun
	for _, m := range []struct{ prefetch, shared bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		storms = append(storms, stormRun{prefetch: m.prefetch, shared: m.shared,
			cold: rig.StormPass{Lists: 3, Reads: 4, RateLimited: 1, Failed: 2}})
	}
	all := charts(levels, storms, rig.StormConfig{Hosts: 2, Components: 3, Secrets: 4, Folders: 2, Replicas: 3, RateLimit: 120})
	if got := strings.Join(slices.Sorted(maps.Keys(all)), " "); got != "latency-p99.svg storm-infisical-calls.svg throughput.svg" {
		t.Fatalf("charts %s", got)
	}
	for name, want := range map[string][]float64{chartThroughput: {900, 2000}, chartLatency: {2, 60}} {
		c := all[name]
		if !slices.Equal(c.Categories, []string{"1", "64"}) || len(c.Series) != 2 ||
			c.Series[0].Name != "backend (serve)" || !slices.Equal(c.Series[0].Values, want) {
			t.Errorf("%s: %+v", name, c)
		}
	}
	storm := all[chartStorm]
	var modes []string
	for _, s := range storm.Series {
		modes = append(modes, s.Name)
		if !slices.Equal(s.Values, []float64{7, 1, 2}) {
			t.Errorf("storm %s: %v, want calls, 429s and failed gets", s.Name, s.Values)
		}
	}
	if len(modes) != 4 || !strings.HasSuffix(modes[0], "(before)") || !strings.HasSuffix(modes[3], "(default)") {
		t.Errorf("storm modes %q", modes)
	}
	for name, c := range all {
		if err := c.WriteSVG(&bytes.Buffer{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
