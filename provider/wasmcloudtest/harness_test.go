//go:build wasmcloud

// Package wasmcloudtest runs the provider against the real wasmCloud 1.x tools: the host (crate wasmcloud-host
// 0.27) and wadm (crate wadm 0.21) through provider/internal/lattice, wash 0.43.0 and secrets-nats-kv 0.2.0, all
// built from registry crates by `make wasmcloud-tools`. Only Infisical is faked. Run with `make test-wasmcloud`;
// without the tools every test fails, naming the variable that is missing.
package wasmcloudtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

// Environment variables naming the real tools; `make test-wasmcloud` sets them.
const (
	envWash          = "ISP_WASH"
	envLattice       = "ISP_LATTICE"
	envSecretsNatsKV = "ISP_SECRETS_NATS_KV"
)

type tools struct{ wash, lattice, natsKV string }

// needTools returns the tools' paths or fails the test: a run without the real tools must not pass.
func needTools(t *testing.T) tools {
	t.Helper()
	var tl tools
	for _, v := range []struct {
		env  string
		dest *string
	}{{envWash, &tl.wash}, {envLattice, &tl.lattice}, {envSecretsNatsKV, &tl.natsKV}} {
		path := os.Getenv(v.env)
		if path == "" {
			t.Fatalf("%s is not set: run these tests with `make test-wasmcloud`, which builds the real wasmCloud tools", v.env)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("%s=%s is not an executable (%v): run `make wasmcloud-tools`", v.env, path, err)
		}
		*v.dest = path
	}
	return tl
}

// proc is a tool running for one test, its output kept for assertions and shown when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *capture.Buffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &capture.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, tail(p.out.String(), 12000))
		}
	})
	return p
}

// stop sends SIGTERM to the process group (the host's providers run in it too), then kills what is left.
func (p *proc) stop(grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// lattice is one NATS server with JetStream, wadm, a wasmCloud host and the nats-kv secrets backend.
type lattice struct {
	t       *testing.T
	tools   tools
	natsURL string
	nc      *nats.Conn
	home    string // HOME and wash's directories, so nothing of the user's wash set-up is read
	host    *proc
	hostID  string
	wadm    *proc
	natsKV  *proc
	kvSeeds struct{ encryption, transit string }
}

type latticeOptions struct {
	noWadm bool
	// hostArgs are added to `isp-lattice host`.
	hostArgs []string
}

func startLattice(t *testing.T, o latticeOptions) *lattice {
	t.Helper()
	tl := needTools(t)
	srv, err := natstest.Run(&server.Options{JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start NATS with JetStream: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	l := &lattice{t: t, tools: tl, natsURL: srv.ClientURL(), home: t.TempDir()}
	l.nc = natstest.Connect(t, l.natsURL)

	// secrets-nats-kv first: the host asks it for the bootstrap secrets of whatever wadm deploys.
	l.kvSeeds.encryption, l.kvSeeds.transit = testkeys.CurveSeed(t), testkeys.CurveSeed(t)
	l.natsKV = startProc(t, "secrets-nats-kv", l.kvEnv(), tl.natsKV, l.kvArgs("run")...)
	l.waitSubject("wasmcloud.secrets.v1alpha1.nats-kv.server_xkey", 30*time.Second)

	// wadm before the host, or it misses host_started and only sees the host at its first heartbeat.
	if !o.noWadm {
		l.wadm = startProc(t, "wadm", nil, tl.lattice, "wadm", "--nats", hostPort(t, l.natsURL), "--memory")
		l.waitSubject("wadm.api.default.model.list", 60*time.Second)
	}

	hostSeed, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := hostSeed.Seed()
	l.hostID, _ = hostSeed.PublicKey()
	args := append([]string{"host", "--nats", l.natsURL, "--secrets-topic", "wasmcloud.secrets", "--allow-file-load",
		"--host-seed", string(seed), "--heartbeat-secs", "5"}, o.hostArgs...)
	l.host = startProc(t, "host", []string{"TMPDIR=" + t.TempDir()}, tl.lattice, args...)
	l.eventually("the host answers `wash get hosts`", 60*time.Second, func() (bool, string) {
		out, err := l.washJSON("get", "hosts")
		return err == nil && strings.Contains(string(out), l.hostID), string(out)
	})
	return l
}

func (l *lattice) kvEnv() []string {
	return []string{
		"ENCRYPTION_XKEY_SEED=" + l.kvSeeds.encryption,
		"TRANSIT_XKEY_SEED=" + l.kvSeeds.transit,
	}
}

// kvArgs connect secrets-nats-kv's subcommands to this lattice's NATS.
func (l *lattice) kvArgs(args ...string) []string {
	return append(args, "--nats-address", hostPort(l.t, l.natsURL))
}

// putSecret stores a string secret in nats-kv and lets the entity with public key `entity` read it.
func (l *lattice) putSecret(entity, name, value string) {
	l.t.Helper()
	l.runKV([]string{"SECRET_STRING_VALUE=" + value}, l.kvArgs("put", name)...)
	l.runKV(nil, l.kvArgs("add-mapping", entity, "--secret", name)...)
}

func (l *lattice) runKV(env []string, args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.tools.natsKV, args...)
	cmd.Env = append(append(os.Environ(), l.kvEnv()...), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("secrets-nats-kv %s: %v\n%s", args[0], err, out)
	}
}

func hostPort(t *testing.T, natsURL string) string {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// washEnv points wash at this lattice's NATS and keeps it away from the user's home and the network.
func (l *lattice) washEnv() []string {
	host, port, err := net.SplitHostPort(hostPort(l.t, l.natsURL))
	if err != nil {
		l.t.Fatal(err)
	}
	return []string{
		"HOME=" + l.home,
		"WASH_CONFIG_DIR=" + filepath.Join(l.home, "config"),
		"WASH_DATA_DIR=" + filepath.Join(l.home, "data"),
		"WASH_CACHE_DIR=" + filepath.Join(l.home, "cache"),
		"WASH_KEYS=" + filepath.Join(l.home, "keys"),
		"WASH_DOWNLOADS_DIR=" + filepath.Join(l.home, "downloads"),
		"WASH_DISABLE_PLUGINS=true",
		"WASMCLOUD_CTL_HOST=" + host,
		"WASMCLOUD_CTL_PORT=" + port,
		"WASMCLOUD_LATTICE=default",
		"WASMCLOUD_CTL_TIMEOUT_MS=10000",
	}
}

// wash runs wash with -o json and returns stdout; err carries wash's JSON error from stderr.
func (l *lattice) washJSON(args ...string) ([]byte, error) {
	return runWash(l.tools.wash, l.washEnv(), "", append(args, "-o", "json")...)
}

func runWash(bin string, env []string, dir string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("wash %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// mustWash runs wash -o json, fails the test on error, and decodes the output into a map.
func (l *lattice) mustWash(args ...string) map[string]any {
	l.t.Helper()
	out, err := l.washJSON(args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return decodeJSON(l.t, out)
}

func decodeJSON(t *testing.T, out []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out), &m); err != nil {
		t.Fatalf("wash output is not JSON: %v\n%s", err, out)
	}
	if m["success"] != true {
		t.Fatalf("wash reports no success: %s", out)
	}
	return m
}

// waitSubject waits until something answers requests on subject (or a JetStream/micro service replies at all).
func (l *lattice) waitSubject(subject string, within time.Duration) {
	l.t.Helper()
	l.eventually("a responder on "+subject, within, func() (bool, string) {
		_, err := l.nc.Request(subject, nil, time.Second)
		return err == nil, fmt.Sprint(err)
	})
}

// eventually is waitFor on the lattice's test.
func (l *lattice) eventually(what string, within time.Duration, cond func() (bool, string)) {
	l.t.Helper()
	waitFor(l.t, what, within, cond)
}

// events records the lattice's wasmbus events (provider_started, health_check_passed, …) from now on.
type events struct {
	mu   sync.Mutex
	list []event
}

type event struct {
	Type string
	Data map[string]any
}

func (l *lattice) recordEvents() *events {
	l.t.Helper()
	ev := &events{}
	sub, err := l.nc.Subscribe("wasmbus.evt.default.>", func(m *nats.Msg) {
		var ce struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(m.Data, &ce) != nil {
			return
		}
		ev.mu.Lock()
		ev.list = append(ev.list, event{Type: strings.TrimPrefix(ce.Type, "com.wasmcloud.lattice."), Data: ce.Data})
		ev.mu.Unlock()
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := l.nc.Flush(); err != nil {
		l.t.Fatal(err)
	}
	return ev
}

// find returns the first event of type typ whose data field key equals value.
func (ev *events) find(typ, key, value string) (event, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, e := range ev.list {
		if e.Type == typ && fmt.Sprint(e.Data[key]) == value {
			return e, true
		}
	}
	return event{}, false
}

func (ev *events) String() string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var b strings.Builder
	for _, e := range ev.list {
		d, _ := json.Marshal(e.Data)
		fmt.Fprintf(&b, "%s %s\n", e.Type, tail(string(d), 400))
	}
	return b.String()
}

// waitEvent waits for an event of type typ whose data[key] is value.
func (l *lattice) waitEvent(ev *events, typ, key, value string, within time.Duration) event {
	l.t.Helper()
	var found event
	l.eventually(fmt.Sprintf("event %s with %s=%s", typ, key, value), within, func() (bool, string) {
		e, ok := ev.find(typ, key, value)
		found = e
		return ok, ev.String()
	})
	return found
}

// appStatus is `wash app status NAME`'s .status.status.type and message.
func (l *lattice) appStatus(name string) (string, string) {
	l.t.Helper()
	out, err := l.washJSON("app", "status", name)
	if err != nil {
		return "error", err.Error()
	}
	var m struct {
		Status struct {
			Status struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"status"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &m); err != nil {
		return "undecodable", string(out)
	}
	return m.Status.Status.Type, string(out)
}

func (l *lattice) waitAppStatus(name, want string, within time.Duration) string {
	l.t.Helper()
	var raw string
	l.eventually(fmt.Sprintf("app %s to be %s", name, want), within, func() (bool, string) {
		got, out := l.appStatus(name)
		raw = out
		return got == want, out
	})
	return raw
}

// inventory is `wash get inventory` for this lattice's host.
func (l *lattice) inventoryProviders() []map[string]any {
	l.t.Helper()
	m := l.mustWash("get", "inventory", l.hostID)
	var providers []map[string]any
	invs, _ := m["inventories"].([]any)
	for _, inv := range invs {
		im, _ := inv.(map[string]any)
		ps, _ := im["providers"].([]any)
		for _, p := range ps {
			if pm, ok := p.(map[string]any); ok {
				providers = append(providers, pm)
			}
		}
	}
	return providers
}

func (l *lattice) hasProvider(id string) bool {
	for _, p := range l.inventoryProviders() {
		if p["id"] == id {
			return true
		}
	}
	return false
}

// probe asks the probe provider what the host delivered to it.
type probeReport struct {
	ProviderKey string            `json:"provider_key"`
	Config      map[string]string `json:"config"`
	Secrets     map[string]string `json:"secrets"`
}

func (l *lattice) probe(subject string, within time.Duration) probeReport {
	l.t.Helper()
	var r probeReport
	l.eventually("the probe provider to answer on "+subject, within, func() (bool, string) {
		msg, err := l.nc.Request(subject, nil, time.Second)
		if err != nil {
			return false, err.Error()
		}
		return json.Unmarshal(msg.Data, &r) == nil, string(msg.Data)
	})
	return r
}
