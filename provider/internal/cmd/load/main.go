// Command load measures the backend under load in one run: it starts an embedded NATS server and a fake Infisical, and
// in processes of their own the backend (`serve`) and a baseline responder that does only the protocol's mandatory
// work (both from provider/internal/cmd/load/responder); it warms the cache and then, for each number of concurrent
// clients, alternates between the two for the same time. It prints a markdown table of throughput, CPU time per get
// (read from each process's /proc stat, so Linux only) and latency, each process's peak RSS, the size of the release
// binary, and whether the backend meets the goals against the baseline. -benchout writes every round in Go benchmark
// format for benchstat; -profile takes CPU and allocation profiles and execution traces of both processes.
//
// With -storm it measures a deployment storm instead: hosts × components × secrets in folders, several replicas,
// Infisical rate-limited like its free plan, on a cold cache and then a warm one, with folder prefetch and the
// shared cache off (the behaviour before them) and on. With -charts DIR it runs both and also draws them as SVG charts
// in DIR (`make charts` writes docs/performance). It is not part of the shipped binary; `make bench` runs both.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
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

func main() { os.Exit(load()) }

// load runs the tool and returns the exit code, so that deferred calls run before the exit.
func load() int {
	duration := flag.Duration("duration", 3*time.Second, "time per target and concurrency level, split into alternating rounds")
	clients := flag.String("clients", "1,8,64", "comma-separated numbers of concurrent clients")
	rounds := flag.Int("rounds", 4, "alternating rounds per target and level, to even out drift")
	warmup := flag.Int("warmup", 200, "gets per target before measuring")
	build := flag.Bool("build", true, "build the release binary to report its size")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (NATS server, fake Infisical, clients) to this file")
	benchOut := flag.String("benchout", "", "also write every round in Go benchmark format (for benchstat) to this file")
	profileDir := flag.String("profile", "", "after measuring, take CPU and allocation profiles and traces of both processes at each level into this directory")
	profileFor := flag.Duration("profile-duration", 3*time.Second, "length of each CPU and allocation profile")
	jwtCache := flag.Bool("jwt-cache", true, "the backend's JWT_CACHE: remember verified JWTs (the baseline verifies both every time)")
	withOTel := flag.Bool("otel", false, "switch the backend's telemetry on, exporting traces and metrics to a local OTLP sink")
	backendEnv := flag.String("backend-env", "", "more environment for the backend process, comma-separated K=V (e.g. LOG_LEVEL=warn,GOGC=200), to measure what a setting costs")
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
	extraEnv, envErr := parseEnv(*backendEnv)
	if err == nil {
		err = envErr
	}
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
	measured, err := run(os.Stdout, options{levels: levels, duration: *duration, rounds: *rounds, warmup: *warmup,
		build: *build, benchOut: *benchOut, profile: *profileDir, profileDuration: *profileFor, jwtCache: *jwtCache, backendEnv: extraEnv, otel: *withOTel})
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

func formatEnv(env map[string]string) string {
	var kvs []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		kvs = append(kvs, k+"="+env[k])
	}
	return strings.Join(kvs, " ")
}

func parseEnv(s string) (map[string]string, error) {
	env := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-backend-env: %q is not K=V", kv)
		}
		env[k] = v
	}
	return env, nil
}

// result is one target's measurements at one concurrency level.
type result struct {
	gets, errors int
	elapsed      time.Duration
	cpu          time.Duration // CPU time of the target's process, when measured
	latencies    []time.Duration
	firstErr     error
}

func (r *result) add(o result) {
	r.gets += o.gets
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.latencies = append(r.latencies, o.latencies...)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

func (r *result) rate() float64 { return float64(r.gets) / r.elapsed.Seconds() }

// cpuPerGet is the target process's CPU time per successful get.
func (r *result) cpuPerGet() time.Duration { return r.cpu / time.Duration(max(1, r.gets)) }

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

// Goals of issue 15, checked after every run: the backend's throughput at least throughputGoal of the baseline's at
// every level, its CPU per get at most cpuGoal of the baseline's, its p99 at the highest level no worse, and its peak
// resident set at most rssGoal.
const (
	throughputGoal = 0.97
	cpuGoal        = 1.05
	rssGoal        = 30 << 20
)

// options are run's flags.
type options struct {
	levels            []int
	duration          time.Duration
	rounds, warmup    int
	build             bool
	benchOut, profile string
	profileDuration   time.Duration
	jwtCache          bool
	backendEnv        map[string]string
	otel              bool
}

func run(out io.Writer, o options) ([]level, error) {
	dir, err := os.MkdirTemp("", "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bin, err := rig.BuildResponder(ctx, dir)
	cancel()
	if err != nil {
		return nil, err
	}
	env := map[string]string{"JWT_CACHE": strconv.FormatBool(o.jwtCache)}
	if o.otel {
		sink := rig.StartOTLPSink()
		defer func() {
			fmt.Fprintf(out, "OTLP exports received: %d\n", sink.Exports.Load())
			sink.Close()
		}()
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.URL
	}
	maps.Copy(env, o.backendEnv)
	p, err := rig.StartProcs(bin, env)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	procs := map[string]*rig.Proc{rig.Backend: p.Backend, rig.Baseline: p.Baseline}

	pool := make([]*rig.Client, slices.Max(o.levels))
	for i := range pool {
		if pool[i], err = p.NewClient(); err != nil {
			return nil, err
		}
		defer pool[i].Close()
	}
	for _, target := range []string{rig.Backend, rig.Baseline} {
		if res := measure(pool[:1], target, 0, o.warmup); res.errors > 0 {
			return nil, fmt.Errorf("warm-up of %s: %d errors, first: %w", target, res.errors, res.firstErr)
		}
	}
	idle, err := idleCPU(procs, 3*time.Second)
	if err != nil {
		return nil, err
	}
	var bench bytes.Buffer
	fmt.Fprintf(&bench, "goos: %s\ngoarch: %s\npkg: load\ncpu-count: %d\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())

	fmt.Fprintf(out, "Cache-hit get: the backend (`serve`) and the protocol-only baseline, each in its own process, same embedded "+
		"NATS, %s per cell in %d alternating rounds, backend JWT_CACHE=%t telemetry %s %s, %s, %d CPUs\n\n", o.duration, o.rounds, o.jwtCache,
		map[bool]string{true: "on", false: "off"}[o.otel], formatEnv(o.backendEnv), runtime.Version(), runtime.NumCPU())
	fmt.Fprintln(out, "| clients | backend req/s | baseline req/s | ratio | backend CPU/get | baseline CPU/get | CPU ratio | backend p50 | backend p99 | baseline p50 | baseline p99 |")
	fmt.Fprintln(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	failed := 0
	var measured []level
	var verdicts []string
	for _, n := range o.levels {
		var l = level{clients: n}
		for range o.rounds {
			for _, t := range []struct {
				name string
				res  *result
			}{{rig.Backend, &l.backend}, {rig.Baseline, &l.baseline}} {
				round, err := measureCPU(pool[:n], t.name, procs[t.name], o.duration/time.Duration(o.rounds))
				if err != nil {
					return nil, err
				}
				t.res.add(round)
				fmt.Fprintf(&bench, "BenchmarkCachedGet/clients=%d/target=%s %d %.0f ns/op %.0f cpu-ns/op\n",
					n, t.name, round.gets, float64(round.elapsed)/float64(max(1, round.gets)), float64(round.cpuPerGet()))
			}
		}
		for _, res := range []*result{&l.backend, &l.baseline} {
			slices.Sort(res.latencies)
			failed += res.errors
			if res.errors > 0 {
				fmt.Fprintf(os.Stderr, "load: %d clients: %d errors, first: %v\n", n, res.errors, res.firstErr)
			}
		}
		measured = append(measured, l)
		ratio := l.backend.rate() / l.baseline.rate()
		cpuRatio := float64(l.backend.cpuPerGet()) / float64(l.baseline.cpuPerGet())
		fmt.Fprintf(out, "| %d | %.0f | %.0f | %.3f | %s | %s | %.3f | %s | %s | %s | %s |\n", n, l.backend.rate(), l.baseline.rate(), ratio,
			us(l.backend.cpuPerGet()), us(l.baseline.cpuPerGet()), cpuRatio,
			ms(l.backend.percentile(0.5)), ms(l.backend.percentile(0.99)), ms(l.baseline.percentile(0.5)), ms(l.baseline.percentile(0.99)))
		verdicts = append(verdicts,
			verdict(ratio >= throughputGoal, fmt.Sprintf("%d clients: throughput %.3f of the baseline's (goal ≥ %.2f)", n, ratio, throughputGoal)),
			verdict(cpuRatio <= cpuGoal, fmt.Sprintf("%d clients: CPU per get %.3f of the baseline's (goal ≤ %.2f)", n, cpuRatio, cpuGoal)))
	}
	last := measured[len(measured)-1]
	verdicts = append(verdicts, verdict(last.backend.percentile(0.99) <= last.baseline.percentile(0.99),
		fmt.Sprintf("%d clients: p99 %s against the baseline's %s (goal: no worse)", last.clients,
			ms(last.backend.percentile(0.99)), ms(last.baseline.percentile(0.99)))))
	fmt.Fprintln(out)
	fmt.Fprintf(out, "CPU without load: backend %s, baseline %s (counted in CPU per get above)\n", idle[rig.Backend], idle[rig.Baseline])
	for _, name := range []string{rig.Backend, rig.Baseline} {
		rss, err := procs[name].PeakRSS()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "peak RSS of the %s process: %s\n", name, mib(rss))
		if name == rig.Backend {
			verdicts = append(verdicts, verdict(rss <= rssGoal, fmt.Sprintf("backend peak RSS %s (goal ≤ %s)", mib(rss), mib(rssGoal))))
		}
	}
	if o.build {
		fmt.Fprintf(out, "binary size (CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'): %s\n", binarySize())
	}
	fmt.Fprintln(out)
	for _, v := range verdicts {
		fmt.Fprintln(out, v)
	}
	if o.benchOut != "" {
		if err := os.WriteFile(o.benchOut, bench.Bytes(), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "\nwrote %s (benchstat format: one line per round; compare targets with `benchstat -col /target %s`)\n", o.benchOut, o.benchOut)
	}
	if o.profile != "" {
		if err := profile(out, pool, procs, o.levels, o.profileDuration, o.profile); err != nil {
			return nil, err
		}
	}
	if failed > 0 {
		return nil, fmt.Errorf("%d gets failed", failed)
	}
	return measured, nil
}

// idleCPU is the CPU time each process spends per second without load (timers, tickers, the NATS client's pings).
func idleCPU(procs map[string]*rig.Proc, d time.Duration) (map[string]string, error) {
	before := map[string]time.Duration{}
	for name, p := range procs {
		t, err := p.CPU()
		if err != nil {
			return nil, err
		}
		before[name] = t
	}
	time.Sleep(d)
	out := map[string]string{}
	for name, p := range procs {
		t, err := p.CPU()
		if err != nil {
			return nil, err
		}
		out[name] = fmt.Sprintf("%.1f ms/s", float64(t-before[name])/float64(time.Millisecond)/d.Seconds())
	}
	return out, nil
}

func verdict(ok bool, what string) string {
	if ok {
		return "meets: " + what
	}
	return "BELOW: " + what
}

// measureCPU is measure for a duration, with the CPU time the target's process spent meanwhile.
func measureCPU(clients []*rig.Client, target string, proc *rig.Proc, d time.Duration) (result, error) {
	before, err := proc.CPU()
	if err != nil {
		return result{}, err
	}
	res := measure(clients, target, d, 0)
	after, err := proc.CPU()
	if err != nil {
		return result{}, err
	}
	res.cpu = after - before
	return res, nil
}

// profile takes, for each level and each side, a CPU profile, an allocation profile and an execution trace under the
// same load, into dir.
func profile(out io.Writer, pool []*rig.Client, procs map[string]*rig.Proc, levels []int, d time.Duration, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range levels {
		for _, target := range []string{rig.Backend, rig.Baseline} {
			for _, kind := range []struct{ name, file string }{
				{"profile", "cpu.pprof"}, {"allocs", "allocs.pprof"}, {"trace", "trace.out"},
			} {
				length := d
				if kind.name == "trace" {
					length = time.Second // traces grow fast; a second shows the hand-offs
				}
				path := filepath.Join(dir, fmt.Sprintf("%s-%d-%s", target, n, kind.file))
				f, err := os.Create(path)
				if err != nil {
					return err
				}
				done := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), length+30*time.Second)
					defer cancel()
					done <- procs[target].Profile(ctx, kind.name, length, f)
				}()
				// Keep the load on a little longer than the profile, so that it covers load only.
				measure(pool[:n], target, length+300*time.Millisecond, 0)
				err = <-done
				f.Close()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s\n", path)
			}
		}
	}
	return nil
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

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func mib(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

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
