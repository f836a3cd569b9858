package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func TestReplicasShareOneQueueGroup(t *testing.T) {
	h := newHarness(t)
	const replicas, gets = 3, 300
	logs := startReplicas(t, h.env, replicas)

	errs := make(chan error, gets)
	var wg sync.WaitGroup
	for range gets {
		wg.Go(func() {
			s, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD"})
			switch {
			case err != nil:
				errs <- err
			case s.StringSecret == nil || *s.StringSecret != "v2-password":
				errs <- errUnexpected(s)
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 5 {
			t.Errorf("get: %v", err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent gets failed", failed, gets)
	}

	answered, total := 0, 0
	per := make([]int, replicas)
	for i, l := range logs {
		out := l.String()
		per[i] = strings.Count(out, `msg="secrets get"`)
		total += per[i]
		if per[i] > 0 {
			answered++
		}
		if strings.Contains(out, "level=ERROR") {
			t.Errorf("replica %d logged an ERROR although every replica has the same seed", i)
		}
	}
	t.Logf("gets answered per replica: %v", per)
	if total != gets {
		t.Errorf("replicas logged %d gets; want exactly %d (each answered once)", total, gets)
	}
	if answered < 2 {
		t.Errorf("%d replica(s) answered; want at least 2 sharing the queue group", answered)
	}
}

func TestReplicaWithAnotherXKeyIsAnError(t *testing.T) {
	h := newHarness(t)
	h.start()
	first, err := h.host.Secrets.ServerXKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		seed      string // "" leaves SERVER_XKEY_SEED unset
		wantError bool
	}{
		{name: "same seed", seed: h.env["SERVER_XKEY_SEED"], wantError: false},
		{name: "no seed", seed: "", wantError: true},
		{name: "another seed", seed: testkeys.CurveSeed(t), wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range h.env {
				env[k] = v
			}
			delete(env, "SERVER_XKEY_SEED")
			if tt.seed != "" {
				env["SERVER_XKEY_SEED"] = tt.seed
			}
			logs := &syncBuffer{}
			startServe(t, env, logs, logged(logs, servingLine))
			out := logs.String()
			var errLine string
			for line := range strings.Lines(out) {
				if strings.Contains(line, "level=ERROR") && strings.Contains(line, "different server xkey") {
					errLine = line
				}
			}
			if got := errLine != ""; got != tt.wantError {
				t.Fatalf("ERROR about another replica's key logged = %v; want %v\n%s", got, tt.wantError, out)
			}
			if tt.wantError && !strings.Contains(errLine, "their_xkey="+first) {
				t.Errorf("the ERROR does not name the running replica's key %s: %s", first, errLine)
			}
		})
	}
}

// replyCounter publishes gets with a distinct reply subject each and counts the replies to every one.
type replyCounter struct {
	nc     *nats.Conn
	inbox  string
	sub    *nats.Subscription
	mu     sync.Mutex
	counts map[int]int
	sent   atomic.Int64
}

func newReplyCounter(t *testing.T, nc *nats.Conn) *replyCounter {
	t.Helper()
	rc := &replyCounter{nc: nc, inbox: nats.NewInbox(), counts: map[int]int{}}
	sub, err := nc.Subscribe(rc.inbox+".*", func(m *nats.Msg) {
		i, err := strconv.Atoi(m.Subject[len(rc.inbox)+1:])
		if err != nil {
			return
		}
		rc.mu.Lock()
		rc.counts[i]++
		rc.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	rc.sub = sub
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return rc
}

// publish sends one request; a failure to publish (while the client reconnects) is not an error here.
func (rc *replyCounter) publish(subject string, hdr nats.Header, data []byte) {
	i := int(rc.sent.Add(1))
	_ = rc.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: rc.inbox + "." + strconv.Itoa(i), Header: hdr, Data: data})
}

// tally returns how many requests got one reply, and which got more.
func (rc *replyCounter) tally() (once int, twice []int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, n := range rc.counts {
		switch {
		case n == 1:
			once++
		case n > 1:
			twice = append(twice, i)
		}
	}
	return once, twice
}

// sealedGet is a valid get for ref, sealed to serverKey with a fresh host key.
func sealedGet(t *testing.T, host *hostsim.Host, e *hostsim.Entity, ref hostsim.Ref, serverKey string) (nats.Header, []byte) {
	t.Helper()
	hk, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	hkPub, _ := hk.PublicKey()
	raw, err := json.Marshal(host.Request(e, ref))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := hk.Seal(raw, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	return nats.Header{secrets.HostXkeyHeader: []string{hkPub}}, sealed
}

func TestSlow_ClusterNodeLossRecoversWithinFiveSeconds(t *testing.T) {
	nodes := natstest.StartCluster(t, 3)
	nodeA, nodeB := nodes[0], nodes[1]
	h := newHarness(t)
	h.env["NATS_URL"] = nodeA.ClientURL() // the others are learnt from the cluster
	hostNC := natstest.Connect(t, nodeB.ClientURL())
	host, err := hostsim.NewHost(hostNC, prefix, backend)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	startServe(t, h.env, logs, logged(logs, servingLine))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backend logs:\n%s", logs.String())
		}
	})
	fetch := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := host.Fetch(ctx, h.comp, hostsim.Ref{Key: "DB_PASSWORD"})
		if err == nil && (s.StringSecret == nil || *s.StringSecret != "v2-password") {
			err = errUnexpected(s)
		}
		return err
	}
	// Interest crosses the routes asynchronously, so the first gets from node B may find no responder yet.
	eventually.True(t, "a get through node B before the loss", func() bool { return fetch() == nil })

	serverKey, err := host.Secrets.ServerXKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hdr, data := sealedGet(t, host, h.comp, hostsim.Ref{Key: "DB_PASSWORD"}, serverKey)
	rc := newReplyCounter(t, hostNC)
	ctx, stopTraffic := context.WithCancel(context.Background())
	defer stopTraffic()
	traffic := make(chan struct{})
	go func() {
		defer close(traffic)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				rc.publish(prefix+".v1alpha1."+backend+".get", hdr, data)
			}
		}
	}()
	// Some requests in flight on node A when it goes.
	eventually.True(t, "the traffic to be answered before the loss", func() bool { once, _ := rc.tally(); return once >= 20 })

	nodeA.Shutdown()
	killed := time.Now()
	// The five seconds are the claim under test, not a bound on a wait.
	eventually.Within(5*time.Second).NoError(t, "a successful get after losing node A", fetch)
	t.Logf("gets succeed again %s after node A went down", time.Since(killed).Round(time.Millisecond))

	// Traffic after the recovery, too.
	recovered, _ := rc.tally()
	eventually.True(t, "the traffic to be answered after the recovery", func() bool { once, _ := rc.tally(); return once >= recovered+20 })
	stopTraffic()
	<-traffic
	if err := hostNC.Flush(); err != nil {
		t.Fatal(err)
	}
	// Not a synchronisation: the window in which a request answered twice would show its second reply. Nothing
	// else marks the end of the replies to requests that may have been answered once already.
	time.Sleep(500 * time.Millisecond)
	once, twice := rc.tally()
	sent := int(rc.sent.Load())
	t.Logf("requests during the loss: %d sent, %d answered once, %d dropped", sent, once, sent-once-len(twice))
	if len(twice) > 0 {
		t.Errorf("%d requests were answered more than once, e.g. #%d", len(twice), twice[0])
	}
	if once == 0 {
		t.Error("no request of the traffic was answered")
	}

	out := logs.String()
	if n := strings.Count(out, "NATS disconnected"); n != 1 {
		t.Errorf("logged the disconnect %d times; want once", n)
	}
	if n := strings.Count(out, "NATS reconnected"); n != 1 {
		t.Errorf("logged the reconnect %d times; want once", n)
	}
}

// countingLog discards log lines but counts them and keeps the first few and every ERROR line, so that a flood of
// requests is logged as usual without the log itself growing the heap.
type countingLog struct {
	mu     sync.Mutex
	lines  int
	kept   bytes.Buffer
	errors []string
}

func (c *countingLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines++
	if c.lines <= 64 {
		c.kept.Write(p)
	}
	if bytes.Contains(p, []byte("level=ERROR")) && len(c.errors) < 64 {
		c.errors = append(c.errors, string(p))
	}
	return len(p), nil
}

func (c *countingLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kept.String() + strings.Join(c.errors, "")
}

func (c *countingLog) counts() (lines int, errors []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, append([]string(nil), c.errors...)
}

// floodMsg is one malformed request of the flood's mix.
type floodMsg struct {
	name    string
	subject string
	hdr     nats.Header
	data    []byte
}

// floodMix is the hostile traffic: every way to get a request wrong before the handler, oversize ones rarely.
func floodMix(t *testing.T, h *harness, serverKey string) (common, rare []floodMsg) {
	t.Helper()
	getSubject := prefix + ".v1alpha1." + backend + ".get"
	hk, _ := nkeys.CreateCurveKeys()
	hkPub, _ := hk.PublicKey()
	hdr := nats.Header{secrets.HostXkeyHeader: []string{hkPub}}
	seal := func(raw []byte) []byte {
		sealed, err := hk.Seal(raw, serverKey)
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}
	request := func(mut func(r *secrets.Request)) []byte {
		r := h.host.Request(h.comp, hostsim.Ref{Key: "DB_PASSWORD"})
		mut(r)
		raw, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return seal(raw)
	}
	garbage := bytes.Repeat([]byte{0x5a, 0xa5, 0x00, 0xff}, 64)
	common = []floodMsg{
		{name: "no headers", subject: getSubject, data: request(func(*secrets.Request) {})},
		{name: "bad xkey", subject: getSubject, hdr: nats.Header{secrets.HostXkeyHeader: []string{"XNOTAKEY"}}, data: garbage},
		{name: "garbage sealed payload", subject: getSubject, hdr: hdr, data: garbage},
		{name: "sealed garbage", subject: getSubject, hdr: hdr, data: seal(garbage)},
		{name: "empty payload", subject: getSubject, hdr: hdr},
		{name: "bad entity JWT", subject: getSubject, hdr: hdr, data: request(func(r *secrets.Request) { r.Context.EntityJWT = "a.b.c" })},
		{name: "unknown op", subject: prefix + ".v1alpha1." + backend + ".delete", hdr: hdr, data: garbage},
	}
	rare = []floodMsg{
		{name: "oversize payload", subject: getSubject, hdr: hdr, data: bytes.Repeat([]byte{1}, secrets.MaxPayload+1)},
		{name: "oversize JWT", subject: getSubject, hdr: hdr, data: request(func(r *secrets.Request) {
			r.Context.EntityJWT = strings.Repeat("e", 20*1024) + ".x.y"
		})},
	}
	return common, rare
}

// flood sends n requests of the mix, at most window unanswered at a time, and requires each to be answered exactly
// once with an error. It returns the answers by error kind.
func flood(t *testing.T, nc *nats.Conn, common, rare []floodMsg, n, window int) map[string]int {
	t.Helper()
	inbox := nats.NewInbox()
	counts := make([]uint8, n)
	kinds := map[string]int{}
	var mu sync.Mutex
	var received atomic.Int64
	slots := make(chan struct{}, window)
	sub, err := nc.Subscribe(inbox+".*", func(m *nats.Msg) {
		i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= n {
			return
		}
		kind := "not an error reply"
		if rest, ok := bytes.CutPrefix(m.Data, []byte(`{"error":`)); ok {
			kind, _, _ = strings.Cut(strings.Trim(string(rest), `{}"`), `"`)
		}
		mu.Lock()
		counts[i]++
		kinds[kind]++
		mu.Unlock()
		received.Add(1)
		<-slots
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		select {
		case slots <- struct{}{}:
		default:
			select {
			case slots <- struct{}{}:
			case <-time.After(10 * time.Second):
				t.Fatalf("request %d: %d earlier requests unanswered for 10s", i, window)
			}
		}
		fm := common[i%len(common)]
		if i%500 == 250 {
			fm = rare[(i/500)%len(rare)]
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: fm.subject, Reply: inbox + "." + strconv.Itoa(i), Header: fm.hdr, Data: fm.data}); err != nil {
			t.Fatalf("publish %s: %v", fm.name, err)
		}
	}
	eventually.True(t, "every flood request to be answered", func() bool { return received.Load() >= int64(n) })
	// Not a synchronisation: the window in which a request answered twice would show its second reply.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, c := range counts {
		if c != 1 {
			t.Fatalf("request %d answered %d times; want once", i, c)
		}
	}
	if kinds["not an error reply"] > 0 {
		t.Fatalf("%d malformed requests were not answered with an error", kinds["not an error reply"])
	}
	return kinds
}

// heapAndGoroutines settles the runtime and reads the live heap and the goroutine count.
func heapAndGoroutines() (heap uint64, goroutines int) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

func TestSlow_HostileFloodLeavesGoroutinesAndHeapFlat(t *testing.T) {
	const (
		warmup, requests = 1_000, 20_000
		window           = 1024
		goroutineSlack   = 50 // a goroutine left behind per request would show thousands
		// The heap may grow by this much per request of the flood: 6.7 MB in all, well above the noise (the heap
		// moves by about 0.1 MiB), well below what a leaked buffer or span per request would add.
		heapSlackPerRequest = 335
		heapSlack           = requests * heapSlackPerRequest
	)
	h := newHarness(t)
	h.env["LOG_LEVEL"] = "info"
	logs := &countingLog{}
	startServe(t, h.env, logs, answersXKey(h.nc))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("backend logs (first lines and errors):\n%s", logs.String())
		}
	})
	serverKey, err := h.host.Secrets.ServerXKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("before the flood: %q", got)
	}
	common, rare := floodMix(t, h, serverKey)
	flood(t, h.nc, common, rare, warmup, window)
	baseHeap, baseG := heapAndGoroutines()

	start := time.Now()
	kinds := flood(t, h.nc, common, rare, requests, window)
	t.Logf("%d malformed requests answered in %s: %v", requests, time.Since(start).Round(time.Millisecond), kinds)
	for _, want := range []string{"InvalidHeaders", "InvalidXKey", "DecryptionError", "InvalidPayload", "InvalidEntityJWT", "InvalidRequest"} {
		if kinds[want] == 0 {
			t.Errorf("no request of the mix was answered %s: %v", want, kinds)
		}
	}

	// Goroutines of the last requests may still be ending: wait for the counts to settle back.
	var heap uint64
	var g int
	eventually.NoError(t, "goroutines and heap to settle after the flood", func() error {
		heap, g = heapAndGoroutines()
		if g > baseG+goroutineSlack || heap > baseHeap+heapSlack {
			return fmt.Errorf("goroutines grew from %d to %d, heap from %d to %d bytes", baseG, g, baseHeap, heap)
		}
		return nil
	})
	t.Logf("goroutines %d -> %d, heap %.1f MiB -> %.1f MiB", baseG, g, float64(baseHeap)/(1<<20), float64(heap)/(1<<20))
	lines, errs := logs.counts()
	if len(errs) > 0 {
		t.Errorf("the flood caused ERROR logs, e.g. %s", errs[0])
	}
	if lines < requests {
		t.Errorf("%d log lines for %d malformed requests; want each logged", lines, requests)
	}
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after the flood: %q", got)
	}
}
