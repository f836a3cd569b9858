package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/rig"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/svgchart"
)

// The charts -charts writes, by file name.
const (
	chartThroughput = "throughput.svg"
	chartLatency    = "latency-p99.svg"
	chartStorm      = "storm-infisical-calls.svg"
)

// charts turns the measurements into the charts the performance docs show.
func charts(levels []level, storms []stormRun, sc rig.StormConfig) map[string]svgchart.Chart {
	machine := fmt.Sprintf("%s, %d CPUs", runtime.Version(), runtime.GOMAXPROCS(0))
	clients := make([]string, len(levels))
	rates := [2][]float64{}
	p99s := [2][]float64{}
	for i, l := range levels {
		clients[i] = strconv.Itoa(l.clients)
		for j, r := range []*result{&l.backend, &l.baseline} {
			rates[j] = append(rates[j], r.rate())
			p99s[j] = append(p99s[j], float64(r.percentile(0.99))/float64(time.Millisecond))
		}
	}
	names := []string{"backend (serve)", "baseline (protocol only)"}
	both := func(values [2][]float64) []svgchart.Series {
		return []svgchart.Series{{Name: names[0], Values: values[0]}, {Name: names[1], Values: values[1]}}
	}
	out := map[string]svgchart.Chart{
		chartThroughput: {
			Kind: svgchart.Lines, Title: "Cache-hit gets: throughput against concurrent clients",
			Subtitle: "the backend beside a responder doing only the protocol's mandatory work, same NATS; " + machine,
			XLabel:   "concurrent clients", YLabel: "gets per second", Categories: clients, Series: both(rates),
		},
		chartLatency: {
			Kind: svgchart.Lines, Title: "Cache-hit gets: p99 latency against concurrent clients",
			Subtitle: "the backend beside a responder doing only the protocol's mandatory work, same NATS; " + machine,
			XLabel:   "concurrent clients", YLabel: "p99 latency (ms)", Categories: clients, Series: both(p99s),
		},
	}
	limit := "no rate limit"
	if sc.RateLimit > 0 {
		limit = fmt.Sprintf("Infisical limited to %d requests a minute", sc.RateLimit)
	}
	storm := svgchart.Chart{
		Kind: svgchart.Bars, Title: "Infisical calls in a deployment storm, before and after prefetch and sharing",
		Subtitle: fmt.Sprintf("%d gets (%d hosts × %d components × %d secrets) in %d folders, %d replicas, %s; %s",
			sc.Hosts*sc.Components*sc.Secrets, sc.Hosts, sc.Components, sc.Secrets, sc.Folders, sc.Replicas, limit, machine),
		XLabel: "one storm on a cold cache", YLabel: "count",
		Categories: []string{"Infisical calls (lists + gets)", "429 answers", "failed gets"},
	}
	onOff := map[bool]string{false: "off", true: "on"}
	for _, s := range storms {
		name := "prefetch " + onOff[s.prefetch] + ", shared cache " + onOff[s.shared]
		switch {
		case !s.prefetch && !s.shared:
			name += " (before)"
		case s.prefetch && s.shared:
			name += " (default)"
		}
		storm.Series = append(storm.Series, svgchart.Series{Name: name,
			Values: []float64{float64(s.cold.Lists + s.cold.Reads), float64(s.cold.RateLimited), float64(s.cold.Failed)}})
	}
	out[chartStorm] = storm
	return out
}

// writeCharts writes the charts into dir.
func writeCharts(dir string, levels []level, storms []stormRun, sc rig.StormConfig) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	all := charts(levels, storms, sc)
	for _, name := range slices.Sorted(maps.Keys(all)) {
		c := all[name]
		var b bytes.Buffer
		if err := c.WriteSVG(&b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", filepath.Join(dir, name))
	}
	return nil
}
