package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wasmbus"
)

// hostDataTimeout is how long the host may take to write HostData; it writes it right after spawning us.
const hostDataTimeout = 5 * time.Second

// runManaged runs under a wasmCloud host: HostData on stdin, settings from the provider's named config and secrets,
// tenants from links, and the host protocol (health, links, config update, shutdown) on the lattice connection.
func runManaged(ctx context.Context, e *env) int {
	if f, ok := e.stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(e.stderr, "infisical-secrets-provider: no arguments means managed mode, where a wasmCloud host writes "+
				"host data on stdin. To run standalone use `infisical-secrets-provider serve`; see --help.")
			return exitUsage
		}
	}
	hd, err := wasmbus.ReadHostData(ctx, e.stdin, hostDataTimeout)
	if err != nil {
		fmt.Fprintf(e.stderr, "infisical-secrets-provider: cannot read host data from stdin: %v\n"+
			"(no arguments means managed mode under a wasmCloud host; use `serve` to run standalone)\n", err)
		return exitUsage
	}
	log := newLogger(e.stderr, wasmbus.LevelFromHostData(hd), hd.StructuredLogging).With("provider", hd.ProviderKey)

	secretValues := hostSecrets(hd.Secrets)
	src := settings.Maps(hd.Config, secretValues)
	s, err := settings.Load(src)
	if err != nil {
		log.Error("invalid provider configuration: fix the named config or secrets given to this provider", "error", err)
		return exitFailure
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	oc := hd.OtelConfig
	tcfg := telemetry.FromHostOtel(oc.EnableObservability, oc.EnableTraces, oc.EnableMetrics,
		oc.ObservabilityEndpoint, oc.TracesEndpoint, oc.MetricsEndpoint, oc.Protocol)
	tcfg.ServiceName, tcfg.ServiceInstanceID, tcfg.HostID, tcfg.ServiceVersion, tcfg.Logger =
		hd.ProviderKey, hd.InstanceID, hd.HostID, Version, log
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		log.Error("telemetry setup failed; continuing without it", "error", err)
	}

	slog.SetDefault(log) // wasmbus.NATSOptions logs connection events through the default logger
	lattice, err := nats.Connect(hd.LatticeRPCURL, wasmbus.NATSOptions(hd)...)
	if err != nil {
		log.Error("NATS connection to the lattice failed", "url", hd.LatticeRPCURL, "error", err)
		return exitFailure
	}
	defer lattice.Close()

	// Hosts send secrets requests on their control connection, usually the lattice server; NATS_URL in the
	// provider's config points elsewhere when the two are split.
	secretsConn := lattice
	if url, ok := src.Lookup("NATS_URL"); ok && url != "" && url != hd.LatticeRPCURL {
		secretsConn, err = nats.Connect(url, natsOptions(log, s)...)
		if err != nil {
			log.Error("NATS connection for secrets requests failed (NATS_URL in the provider config)", "url", url, "error", err)
			return exitFailure
		}
		defer secretsConn.Close()
	}

	rt, err := startBackend(ctx, log, s, secretsConn)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFailure
	}
	m := &managed{log: log, rt: rt, secrets: secretValues, secretsConn: secretsConn, lattice: lattice, tel: tel}
	p, err := wasmbus.New(lattice, hd, wasmbus.Handlers{
		LinkPut:      m.linkPut,
		LinkDel:      m.linkDel,
		ConfigUpdate: m.configUpdate,
		Health:       m.health,
		Shutdown:     m.shutdown,
	}, log)
	if err != nil {
		log.Error("host protocol", "error", err)
		rt.shutdown(ctx)
		return exitFailure
	}
	if err := p.Start(ctx); err != nil {
		log.Error("host protocol subscriptions", "error", err)
		rt.shutdown(ctx)
		return exitFailure
	}
	log.Info("provider started", "lattice", hd.LatticeRPCPrefix, "host", hd.HostID)

	select {
	case <-p.Done():
		// shutdown already drained, flushed and replied
		return exitOK
	case <-ctx.Done():
		log.Info("signal received, shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = m.shutdown(sctx)
		_ = p.Close()
		return exitOK
	}
}

// managed holds what the host-protocol callbacks act on.
type managed struct {
	log         *slog.Logger
	rt          *running
	secrets     map[string]string
	secretsConn *nats.Conn
	lattice     *nats.Conn
	tel         *telemetry.Telemetry

	mu      sync.Mutex
	current *settings.Settings
	tenants map[string]string // link id -> tenant application key
	once    sync.Once
}

func hostSecrets(in map[string]wasmbus.SecretValue) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v.Text()
	}
	return out
}

func linkID(l wasmbus.Link) string {
	return strings.Join([]string{l.SourceID, l.Target, l.Namespace, l.Package, l.Name}, "\x00")
}

// tenantKey is the application a tenant link serves: APPLICATION in its config, else the link source up to its
// first '-' (wadm names components {app}-{component}).
func tenantKey(l wasmbus.Link, app string) string {
	if app != "" {
		return backend.ApplicationKey(app)
	}
	src := l.SourceID
	if i := strings.IndexByte(src, '-'); i > 0 {
		src = src[:i]
	}
	return backend.ApplicationKey(src)
}

func (m *managed) linkPut(_ context.Context, l wasmbus.Link) error {
	if !l.IsTarget {
		m.log.Debug("ignoring a link where this provider is the source", "target", l.Target)
		return nil
	}
	secretsText := make(map[string]string, len(l.Secrets))
	for k, v := range l.Secrets {
		secretsText[k] = v.Text()
	}
	tenant, err := settings.LoadTenant(settings.Maps(l.Config, secretsText), m.settings().Infisical)
	if err != nil {
		m.log.Error("tenant link rejected: fix its target config or secrets", "source", l.SourceID, "error", err)
		return err
	}
	key := tenantKey(l, tenant.Application)
	if err := m.rt.backend.SetTenant(key, tenant.Infisical); err != nil {
		m.log.Error("tenant link rejected", "source", l.SourceID, "error", err)
		return err
	}
	m.mu.Lock()
	if m.tenants == nil {
		m.tenants = map[string]string{}
	}
	m.tenants[linkID(l)] = key
	m.mu.Unlock()
	return nil
}

func (m *managed) linkDel(_ context.Context, l wasmbus.Link) error {
	m.mu.Lock()
	key, ok := m.tenants[linkID(l)]
	delete(m.tenants, linkID(l))
	m.mu.Unlock()
	if ok {
		m.rt.backend.RemoveTenant(key)
	}
	return nil
}

func (m *managed) settings() *settings.Settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current == nil {
		return m.rt.backend.Settings()
	}
	return m.current
}

// configUpdate applies the host's full merged config; an invalid one is rejected and the old settings stay.
func (m *managed) configUpdate(_ context.Context, cfg map[string]string) error {
	s, err := settings.Load(settings.Maps(cfg, m.secrets))
	if err != nil {
		m.log.Error("config update rejected, keeping the previous settings", "error", err)
		return err
	}
	if err := m.rt.backend.Reconfigure(s); err != nil {
		m.log.Error("config update rejected, keeping the previous settings", "error", err)
		return err
	}
	m.mu.Lock()
	m.current = s
	m.mu.Unlock()
	m.log.Info("config updated", "project", s.Infisical.ProjectID, "environment", s.Infisical.Environment)
	return nil
}

func (m *managed) health(ctx context.Context) (bool, string) {
	if !m.secretsConn.IsConnected() || !m.lattice.IsConnected() {
		return false, "NATS disconnected; reconnecting"
	}
	return m.rt.backend.Health(ctx)
}

// shutdown stops taking requests, lets in-flight ones finish, and flushes telemetry, within the host's 300 ms grace.
func (m *managed) shutdown(ctx context.Context) error {
	var err error
	m.once.Do(func() {
		m.rt.shutdown(ctx)
		if m.tel != nil {
			if ferr := m.tel.Shutdown(ctx); ferr != nil {
				err = errors.Join(err, fmt.Errorf("flush telemetry: %w", ferr))
			}
		}
		if m.secretsConn != m.lattice {
			_ = m.secretsConn.Drain()
		}
	})
	return err
}
