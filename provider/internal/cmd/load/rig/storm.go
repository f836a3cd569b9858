package rig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// StormConfig describes a deployment storm: Hosts hosts each start Components components at once, each component
// fetching its Secrets secrets one after another, as a wasmCloud host does; the secrets live in Folders folders of
// one project, and Replicas backends share the requests in their queue group.
type StormConfig struct {
	Hosts, Components, Secrets, Folders, Replicas int
	RateLimit                                     int  // Infisical's secret requests per minute (the free plan: 120); 0 = none
	Prefetch, Shared                              bool // CACHE_PREFETCH and SHARED_CACHE
}

// StormPass is what one pass of the storm measured.
type StormPass struct {
	Gets, Failed int
	FirstErr     error
	Latencies    []time.Duration // of the gets that succeeded, sorted
	Elapsed      time.Duration
	Lists, Reads int // Infisical calls during the pass
	RateLimited  int // of them, answered 429
}

// Percentile of the pass's latencies, p in [0,1].
func (p StormPass) Percentile(q float64) time.Duration {
	if len(p.Latencies) == 0 {
		return 0
	}
	return p.Latencies[int(float64(len(p.Latencies)-1)*q+0.5)]
}

// Storm starts a fresh fleet (NATS with JetStream, a fake Infisical with the rate limit, the replicas, the hosts)
// and runs the storm on a cold cache, then at once again (three times, summed) on the warm one. Everything stops
// before it returns.
func Storm(cfg StormConfig) (cold, warm StormPass, err error) {
	if cfg.Hosts < 1 || cfg.Components < 1 || cfg.Secrets < 1 || cfg.Folders < 1 || cfg.Replicas < 1 {
		return cold, warm, errors.New("storm: hosts, components, secrets, folders and replicas must be positive")
	}
	dir, err := os.MkdirTemp("", "storm-jetstream-")
	if err != nil {
		return cold, warm, err
	}
	defer os.RemoveAll(dir)
	ns, err := natstest.Run(&server.Options{JetStream: true, StoreDir: dir})
	if err != nil {
		return cold, warm, err
	}
	defer ns.Shutdown()
	var opts []fakeinfisical.Option
	if cfg.RateLimit > 0 {
		opts = append(opts, fakeinfisical.WithRateLimit(cfg.RateLimit, time.Minute))
	}
	fake, err := fakeinfisical.Start(opts...)
	if err != nil {
		return cold, warm, err
	}
	defer fake.Close()
	fake.AddIdentity(clientID, secret, project)

	issuer := hostsim.NewIssuer()
	comps := make([]*hostsim.Entity, cfg.Components)
	for c := range comps {
		if comps[c], err = hostsim.Component(issuer, "comp"+strconv.Itoa(c)); err != nil {
			return cold, warm, err
		}
		for s := range cfg.Secrets {
			fake.SetSecret(project, "prod", stormFolder(cfg, c), stormName(c, s), stormValue(c, s))
		}
	}

	stop, err := startFleet(ns.ClientURL(), fake.URL, issuer, cfg)
	if err != nil {
		return cold, warm, err
	}
	defer stop()

	hosts := make([]*hostsim.Host, cfg.Hosts)
	for h := range hosts {
		nc, err := nats.Connect(ns.ClientURL(), nats.Name("host"+strconv.Itoa(h)))
		if err != nil {
			return cold, warm, fmt.Errorf("host NATS connection: %w", err)
		}
		defer nc.Close()
		if hosts[h], err = hostsim.NewHost(nc, secrets.DefaultPrefix, Backend); err != nil {
			return cold, warm, err
		}
	}
	cold = stormPass(cfg, fake, hosts, comps)
	// Latency on a warm cache is the sum of three passes: one is short enough for a busy machine to skew it.
	for range warmPasses {
		warm.add(stormPass(cfg, fake, hosts, comps))
	}
	slices.Sort(warm.Latencies)
	return cold, warm, nil
}

// warmPasses is how many times the storm runs again on the warm cache.
const warmPasses = 3

func (p *StormPass) add(o StormPass) {
	p.Gets += o.Gets
	p.Failed += o.Failed
	if p.FirstErr == nil {
		p.FirstErr = o.FirstErr
	}
	p.Latencies = append(p.Latencies, o.Latencies...)
	p.Elapsed += o.Elapsed
	p.Lists += o.Lists
	p.Reads += o.Reads
	p.RateLimited += o.RateLimited
}

func stormFolder(cfg StormConfig, c int) string { return "/apps/f" + strconv.Itoa(c%cfg.Folders) }
func stormName(c, s int) string                 { return fmt.Sprintf("C%d_S%d", c, s) }
func stormValue(c, s int) string                { return fmt.Sprintf("value-%d-%d", c, s) }

// startFleet runs the replicas (`serve`, in-process) and waits until each has subscribed.
func startFleet(natsURL, infisicalURL string, issuer nkeys.KeyPair, cfg StormConfig) (stop func(), err error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	issuerKey, err := issuer.PublicKey()
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"INFISICAL_BASE_URL":      infisicalURL,
		"INFISICAL_CLIENT_ID":     clientID,
		"INFISICAL_CLIENT_SECRET": secret,
		"INFISICAL_PROJECT_ID":    project,
		"NATS_URL":                natsURL,
		"SERVER_XKEY_SEED":        string(seed),
		"TRUSTED_ISSUERS":         issuerKey,
		"BACKEND_NAME":            Backend,
		"CACHE_PREFETCH":          strconv.FormatBool(cfg.Prefetch),
		"SHARED_CACHE":            strconv.FormatBool(cfg.Shared),
		// Longer than the whole run on a busy machine, so that the warm passes find everything still fresh.
		"CACHE_TTL": "5m",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logs := make([]*startLog, cfg.Replicas)
	exited := make(chan int, cfg.Replicas)
	for i := range logs {
		logs[i] = &startLog{}
		wg.Go(func() {
			exited <- cli.Run(ctx, []string{"serve"}, strings.NewReader(""), logs[i], logs[i], func(k string) (string, bool) {
				v, ok := env[k]
				return v, ok
			})
		})
	}
	stop = func() {
		cancel()
		wg.Wait()
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < len(logs); {
		select {
		case code := <-exited:
			stop()
			return nil, fmt.Errorf("a replica exited with %d", code)
		default:
		}
		if logs[i].ready.Load() {
			i++
			continue
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("replica %d not serving after 30s:\n%s", i, logs[i].String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return stop, nil
}

// startLog is a replica's log output: it keeps the start (for an error message) and notes when the replica says it
// serves; the rest (a line per get, as in production) is dropped.
type startLog struct {
	head  capture.Buffer
	size  atomic.Int64
	ready atomic.Bool
}

func (l *startLog) Write(p []byte) (int, error) {
	if !l.ready.Load() && bytes.Contains(p, []byte("serving secrets")) {
		l.ready.Store(true)
	}
	if l.size.Add(int64(len(p))) < 64<<10 {
		_, _ = l.head.Write(p)
	}
	return len(p), nil
}

func (l *startLog) String() string { return l.head.String() }

// stormPass starts every component on every host at once; each fetches its secrets one after another.
func stormPass(cfg StormConfig, fake *fakeinfisical.Server, hosts []*hostsim.Host, comps []*hostsim.Entity) StormPass {
	lists, reads, limited := fake.Lists(), fake.Reads(), fake.Answered(http.StatusTooManyRequests)
	var (
		mu   sync.Mutex
		pass StormPass
		wg   sync.WaitGroup
	)
	start := time.Now()
	for _, h := range hosts {
		for c, e := range comps {
			wg.Go(func() {
				for s := range cfg.Secrets {
					t0 := time.Now()
					sec, err := h.Fetch(context.Background(), e, hostsim.Ref{Key: stormFolder(cfg, c) + "/" + stormName(c, s)})
					lat := time.Since(t0)
					if err == nil && (sec.StringSecret == nil || *sec.StringSecret != stormValue(c, s)) {
						err = errors.New("unexpected value")
					}
					mu.Lock()
					pass.Gets++
					if err != nil {
						pass.Failed++
						if pass.FirstErr == nil {
							pass.FirstErr = err
						}
					} else {
						pass.Latencies = append(pass.Latencies, lat)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	pass.Elapsed = time.Since(start)
	slices.Sort(pass.Latencies)
	pass.Lists, pass.Reads = fake.Lists()-lists, fake.Reads()-reads
	pass.RateLimited = fake.Answered(http.StatusTooManyRequests) - limited
	return pass
}
