// Command load measures the backend under load in one run: it starts an embedded NATS server, a fake Infisical, the
// backend (`serve`, in-process) and a baseline responder that does only the protocol's mandatory work, warms the
// cache, and then, for each number of concurrent clients, alternates between the two for the same time. It prints a
// markdown table of throughput and latency, the throughput ratio to the baseline, the process's peak RSS and the
// size of the release binary.
//
// With -storm it measures a deployment storm instead: hosts × components × secrets in folders, several replicas,
// Infisical rate-limited like its free plan, on a cold cache and then a warm one, with folder prefetch and the
// shared cache off (the behaviour before them) and on. With -charts DIR it runs both and also draws them as SVG charts
// in DIR (`make charts` writes docs/performance). It is not part of the shipped binary; `make bench` runs both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/rig"
)

// goal is the throughput ratio to the baseline the backend should reach.
const goal = 0.9

func main() { os.Exit(load()) }

// load runs the tool and returns the exit code, so that deferred calls run before the exit.
func load() int {
	duration := flag.Duration("duration", 3*time.Second, "time per target and concurrency level, split into alternating rounds")
	clients := flag.String("clients", "1,8,64", "comma-separated numbers of concurrent clients")
	rounds := flag.Int("rounds", 4, "alternating rounds per target and level, to even out drift")
	warmup := flag.Int("warmup", 200, "gets per target before measuring")
	build := flag.Bool("build", true, "build the release binary to report its size")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	storm := flag.Bool("storm", false, "measure a deployment storm instead (see the -storm-* flags)")
	charts := flag.String("charts", "", "run the client levels and the storm, and draw both as SVG charts in this directory")
	var sc rig.StormConfig
	flag.IntVar(&sc.Hosts, "storm-hosts", 10, "storm: hosts")
	flag.IntVar(&sc.Components, "storm-components", 20, "storm: components started on every host")
	flag.IntVar(&sc.Secrets, "storm-secrets", 5, "storm: secrets each component fetches, one after another")
	flag.IntVar(&sc.Folders, "storm-folders", 10, "storm: folders the secrets live in")
	flag.IntVar(&sc.Replicas, "storm-replicas", 3, "storm: backend replicas")
	flag.IntVar(&sc.RateLimit, "storm-rate", 120, "storm: Infisical's secret requests per minute (free plan 120, Pro 300; 0 = none)")
	flag.Parse()
	if *storm && *charts == "" {
		if _, err := runStorm(os.Stdout, sc); err != nil {
			fmt.Fprintf(os.Stderr, "load: %v\n", err)
			return 1
		}
		return 0
	}
	levels, err := parseLevels(*clients)
	if err == nil && (*duration <= 0 || *rounds <= 0) {
		err = errors.New("-duration and -rounds must be positive")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "load: %v\n", err)
		return 2
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "load: %v\n", err)
			return 1
		}
		defer stop()
	}
	measured, err := run(os.Stdout, levels, *duration, *rounds, *warmup, *build)
	if err != nil {
		fmt.Fprintf(os.Stderr, "load: %v\n", err)
		return 1
	}
	if *charts != "" {
		fmt.Println()
		storms, err := runStorm(os.Stdout, sc)
		if err == nil {
			err = writeCharts(*charts, measured, storms, sc)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "load: %v\n", err)
			return 1
		}
	}
	return 0
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func parseLevels(s string) ([]int, error) {
	var levels []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-clients: %q is not a positive number", f)
		}
		levels = append(levels, n)
	}
	return levels, nil
}

// result is one target's measurements at one concurrency level.
type result struct {
	gets, errors int
	elapsed      time.Duration
	latencies    []time.Duration
	firstErr     error
}

func (r *result) add(o result) {
	r.gets += o.gets
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

func (r *result) rate() float64 { return float64(r.gets) / r.elapsed.Seconds() }

// percentile of the sorted latencies, p in [0,1].
func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(math.Round(p*float64(len(r.latencies)-1)))]
}

// level is what one concurrency level measured.
type level struct {
	clients           int
	backend, baseline result
}

func run(out io.Writer, levels []int, duration time.Duration, rounds, warmup int, build bool) ([]level, error) {
	r, err := rig.Start(io.Discard)
	if err != nil {
		return nil, err
	}
	defer r.Close()

	pool := make([]*rig.Client, slices.Max(levels))
	for i := range pool {
		if pool[i], err = r.NewClient(); err != nil {
			return nil, err
		}
		defer pool[i].Close()
	}
	for _, target := range []string{rig.Backend, rig.Baseline} {
		if res := measure(pool[:1], target, 0, warmup); res.errors > 0 {
			return nil, fmt.Errorf("warm-up of %s: %d errors, first: %w", target, res.errors, res.firstErr)
		}
	}

	fmt.Fprintf(out, "Cache-hit get through the backend vs the protocol-only baseline, same embedded NATS, %s per cell, %s, %d CPUs\n\n",
		duration, runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Fprintln(out, "| clients | backend req/s | baseline req/s | ratio | backend p50 | backend p99 | baseline p50 | baseline p99 |")
	fmt.Fprintln(out, "|--:|--:|--:|--:|--:|--:|--:|--:|")
	logRatios, failed := 0.0, 0
	var measured []level
	for _, n := range levels {
		var backend, baseline result
		for range rounds {
			backend.add(measure(pool[:n], rig.Backend, duration/time.Duration(rounds), 0))
			baseline.add(measure(pool[:n], rig.Baseline, duration/time.Duration(rounds), 0))
		}
		for _, res := range []*result{&backend, &baseline} {
			slices.Sort(res.latencies)
			failed += res.errors
			if res.errors > 0 {
				fmt.Fprintf(os.Stderr, "load: %d clients: %d errors, first: %v\n", n, res.errors, res.firstErr)
			}
		}
		measured = append(measured, level{clients: n, backend: backend, baseline: baseline})
		ratio := backend.rate() / baseline.rate()
		logRatios += math.Log(ratio)
		fmt.Fprintf(out, "| %d | %.0f | %.0f | %.2f | %s | %s | %s | %s |\n", n, backend.rate(), baseline.rate(), ratio,
			ms(backend.percentile(0.5)), ms(backend.percentile(0.99)), ms(baseline.percentile(0.5)), ms(baseline.percentile(0.99)))
	}
	overall := math.Exp(logRatios / float64(len(levels)))
	verdict := "meets"
	if overall < goal {
		verdict = "BELOW"
	}
	fmt.Fprintf(out, "\nratio to baseline (geometric mean over the levels): %.2f (%s the goal of %.2f)\n", overall, verdict, goal)
	fmt.Fprintf(out, "peak RSS of this process (NATS server, fake Infisical, backend, baseline and clients): %s\n", peakRSS())
	if build {
		fmt.Fprintf(out, "binary size (CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'): %s\n", binarySize())
	}
	if failed > 0 {
		return nil, fmt.Errorf("%d gets failed", failed)
	}
	return measured, nil
}

// measure runs one goroutine per client against target until d has passed (or, with d == 0, n gets in all).
func measure(clients []*rig.Client, target string, d time.Duration, n int) result {
	results := make([]result, len(clients))
	start := time.Now()
	deadline := start.Add(d)
	var mu sync.Mutex
	remaining := n
	more := func() bool {
		if d > 0 {
			return time.Now().Before(deadline)
		}
		mu.Lock()
		defer mu.Unlock()
		remaining--
		return remaining >= 0
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			res := &results[i]
			for more() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := c.Get(ctx, target)
				lat := time.Since(t0)
				cancel()
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
					continue
				}
				res.gets++
				res.latencies = append(res.latencies, lat)
			}
		})
	}
	wg.Wait()
	total := result{}
	for _, r := range results {
		total.add(r)
	}
	total.elapsed = time.Since(start)
	return total
}

// stormRun is the storm with one combination of prefetch and sharing.
type stormRun struct {
	prefetch, shared bool
	cold, warm       rig.StormPass
}

// runStorm runs the storm with each combination of prefetch and sharing and prints one table row for each.
func runStorm(out io.Writer, sc rig.StormConfig) ([]stormRun, error) {
	limit := "no rate limit"
	if sc.RateLimit > 0 {
		limit = fmt.Sprintf("Infisical limited to %d secret requests a minute", sc.RateLimit)
	}
	fmt.Fprintf(out, "Deployment storm: %d hosts × %d components × %d secrets (%d gets) in %d folders, %d replicas, %s; "+
		"cold cache, then the same storm three times on the warm cache; %s, %d CPUs\n\n",
		sc.Hosts, sc.Components, sc.Secrets, sc.Hosts*sc.Components*sc.Secrets, sc.Folders, sc.Replicas, limit,
		runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Fprintln(out, "| prefetch | shared cache | Infisical calls (lists + gets) | 429s | failed gets (cold + warm) | cold p50 | cold p99 | warm p50 | warm p99 | warm calls |")
	fmt.Fprintln(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	onOff := map[bool]string{false: "off", true: "on"}
	var runs []stormRun
	for _, mode := range []struct{ prefetch, shared bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		sc.Prefetch, sc.Shared = mode.prefetch, mode.shared
		cold, warm, err := rig.Storm(sc)
		if err != nil {
			return nil, err
		}
		runs = append(runs, stormRun{prefetch: mode.prefetch, shared: mode.shared, cold: cold, warm: warm})
		fmt.Fprintf(out, "| %s | %s | %d + %d | %d | %d | %s | %s | %s | %s | %d |\n", onOff[mode.prefetch], onOff[mode.shared],
			cold.Lists, cold.Reads, cold.RateLimited, cold.Failed+warm.Failed, ms(cold.Percentile(0.5)), ms(cold.Percentile(0.99)),
			ms(warm.Percentile(0.5)), ms(warm.Percentile(0.99)), warm.Lists+warm.Reads)
		if cold.FirstErr != nil {
			fmt.Fprintf(os.Stderr, "load: storm (prefetch %s, shared %s): first failure: %v\n", onOff[mode.prefetch], onOff[mode.shared], cold.FirstErr)
		}
	}
	fmt.Fprintf(out, "\nLatencies are of the gets that succeeded. Goal: at most %d Infisical calls for the whole fleet (one per "+
		"folder), no 429, no slower warm p99.\n", sc.Folders)
	return runs, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func mib(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

// peakRSS reads the high-water mark of the resident set from /proc, or from getrusage where there is no /proc.
func peakRSS() string {
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(status)) {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					return mib(kb << 10)
				}
			}
		}
	}
	if b, ok := maxRSS(); ok {
		return mib(b)
	}
	return "unknown on " + runtime.GOOS
}

// binarySize builds the release binary into a temporary directory and returns its size.
func binarySize() string {
	dir, err := os.MkdirTemp("", "load-binary-")
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "unknown: go list -m: " + err.Error()
	}
	bin := filepath.Join(dir, "infisical-secrets-provider")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("unknown: go build: %v: %s", err, strings.TrimSpace(string(msg)))
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprintf("%s (%s/%s)", mib(fi.Size()), runtime.GOOS, runtime.GOARCH)
}
