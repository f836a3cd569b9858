package rig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// BuildResponder builds the responder command (provider/internal/cmd/load/responder) the way the release binary is
// built (CGO_ENABLED=0 -trimpath -ldflags='-s -w') into dir and returns its path.
func BuildResponder(ctx context.Context, dir string) (string, error) {
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	bin := filepath.Join(dir, "responder")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./provider/internal/cmd/load/responder")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build responder: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// Procs is the backend (`serve`) and the baseline responder, each in a process of its own started from the responder
// binary, on an embedded NATS server with a fake Infisical in this process. Unlike Rig, each side's CPU time and peak
// resident set can be read, and each serves pprof on loopback.
type Procs struct {
	world
	Backend, Baseline  *Proc
	dir                string
	backendLog         *os.File
	backendLogFileName string
}

// StartProcs starts NATS, the fake Infisical and both responder processes from bin, and waits until both answer
// server_xkey. The backend logs at its default level (INFO: one line per get) to a file, as in production a log
// collector reads it; backendEnv adds settings to its environment.
func StartProcs(bin string, backendEnv map[string]string) (p *Procs, err error) {
	p = &Procs{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.dir, err = os.MkdirTemp("", "load-procs-"); err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	backendSeed, err := curveSeed()
	if err != nil {
		return nil, err
	}
	baselineSeed, err := curveSeed()
	if err != nil {
		return nil, err
	}
	p.backendLogFileName = filepath.Join(p.dir, "backend.log")
	if p.backendLog, err = os.Create(p.backendLogFileName); err != nil {
		return nil, err
	}
	env := p.backendEnv(backendSeed)
	maps.Copy(env, backendEnv)
	if p.Backend, err = startProc(bin, p.dir, "serve", p.backendLog, env); err != nil {
		return nil, err
	}
	if p.Baseline, err = startProc(bin, p.dir, "baseline", nil, map[string]string{
		"NATS_URL":         p.URL,
		"SERVER_XKEY_SEED": baselineSeed,
		"BACKEND_NAME":     Baseline,
	}); err != nil {
		return nil, err
	}
	exited := func() error {
		for _, proc := range []*Proc{p.Backend, p.Baseline} {
			select {
			case err := <-proc.exited:
				proc.exited <- err
				return fmt.Errorf("%s %w: %v", proc.Name, errExited, err)
			default:
			}
		}
		return nil
	}
	if err := waitReady(p.URL, 20*time.Second, exited); err != nil {
		return nil, fmt.Errorf("%w (backend log: %s)", err, p.backendLogFileName)
	}
	return p, nil
}

// NewClient connects a new simulated host that can ask both responders.
func (p *Procs) NewClient() (*Client, error) { return connect(p.URL, p.Entity) }

// Close stops both processes and everything else; it is safe on a partly started Procs.
func (p *Procs) Close() {
	for _, proc := range []*Proc{p.Backend, p.Baseline} {
		if proc != nil {
			proc.stop()
		}
	}
	if p.backendLog != nil {
		p.backendLog.Close()
	}
	p.close()
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

func curveSeed() (string, error) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return "", fmt.Errorf("server xkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("server xkey: %w", err)
	}
	return string(seed), nil
}

// Proc is one responder process.
type Proc struct {
	Name      string
	DebugAddr string // where it serves pprof
	cmd       *exec.Cmd
	exited    chan error
}

func startProc(bin, dir, mode string, logs *os.File, env map[string]string) (*Proc, error) {
	addrFile := filepath.Join(dir, mode+".debug")
	cmd := exec.Command(bin, "-debug", "127.0.0.1:0", "-debug-file", addrFile, mode)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if logs != nil {
		cmd.Stdout, cmd.Stderr = logs, logs
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", mode, err)
	}
	p := &Proc{Name: mode, cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if addr, err := os.ReadFile(addrFile); err == nil && len(addr) > 0 {
			p.DebugAddr = string(addr)
			return p, nil
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return nil, fmt.Errorf("%s exited at start: %v", mode, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s wrote no debug address within 10s", mode)
		}
	}
}

func (p *Proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat; it is 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// CPU is the user and system CPU time the process has used so far, from /proc/PID/stat (10 ms resolution).
func (p *Proc) CPU() (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s CPU time: %w", p.Name, err)
	}
	d, err := statCPU(stat)
	if err != nil {
		return 0, fmt.Errorf("%s CPU time: %w", p.Name, err)
	}
	return d, nil
}

// statCPU reads utime + stime (fields 14 and 15) from a /proc/PID/stat line.
func statCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) may contain spaces and parentheses; the fields after its last ')' are fixed.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no command name")
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command name", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// PeakRSS is the high-water mark of the process's resident set (VmHWM), in bytes.
func (p *Proc) PeakRSS() (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s peak RSS: %w", p.Name, err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s peak RSS: %w", p.Name, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s peak RSS: no VmHWM in /proc status", p.Name)
}

// Profile fetches a pprof profile or trace from the process: kind is "profile" (CPU), "trace", or a named profile such
// as "allocs" (the difference over the period); it takes d.
func (p *Proc) Profile(ctx context.Context, kind string, d time.Duration, w io.Writer) error {
	url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", p.DebugAddr, kind, max(1, int(d.Round(time.Second)/time.Second)))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", p.Name, kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", p.Name, kind, resp.Status, strings.TrimSpace(string(msg)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("%s %s: %w", p.Name, kind, err)
	}
	return nil
}

// errExited is returned by waitReady when a responder process ends before it answers.
var errExited = errors.New("exited before it answered")
