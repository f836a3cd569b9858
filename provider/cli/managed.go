package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/tenants"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wasmbus"
)

// serverShutdownShare is the part of the host's 300 ms shutdown grace that in-flight requests may use.
const serverShutdownShare = 120 * time.Millisecond

// hostDataTimeout is how long the host may take to write HostData; it writes it right after spawning us.
const hostDataTimeout = 5 * time.Second

// runManaged runs under a wasmCloud host: HostData on stdin, settings from the provider's named config and secrets,
// tenants from links, and the host protocol (health, links, config update, shutdown) on the lattice connection.
func runManaged(ctx context.Context, e *env) int {
	if stdinIsTerminal(e.stdin) {
		fmt.Fprintln(e.stderr, "infisical-secrets-provider: no arguments means managed mode, where a wasmCloud host writes "+
			"host data on stdin. To run standalone use `infisical-secrets-provider serve`; see --help.")
		return exitUsage
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
	tel := startManagedTelemetry(ctx, hd, log)

	lattice, secretsConn, err := connectManaged(hd, src, s, log)
	if err != nil {
		return exitFailure // connectManaged logged which connection failed
	}
	defer closeManaged(lattice, secretsConn)

	rt, err := startBackend(ctx, log, s, secretsConn)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFailure
	}
	m := &managed{log: log, rt: rt, secrets: secretValues, secretsConn: secretsConn, lattice: lattice, tel: tel,
		tenants: tenants.New(s, rt.backend, log)}
	return m.serveHost(ctx, hd)
}

// stdinIsTerminal tells a person who ran the binary without arguments from a host that started it.
func stdinIsTerminal(stdin io.Reader) bool {
	f, ok := stdin.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startManagedTelemetry exports as the host's OpenTelemetry settings say; nil when that fails (logged), and the
// provider runs on without.
func startManagedTelemetry(ctx context.Context, hd *wasmbus.HostData, log *slog.Logger) *telemetry.Telemetry {
	oc := hd.OtelConfig
	tcfg := telemetry.FromHostOtel(oc.EnableObservability, oc.EnableTraces, oc.EnableMetrics,
		oc.ObservabilityEndpoint, oc.TracesEndpoint, oc.MetricsEndpoint, oc.Protocol)
	tcfg.ServiceName, tcfg.ServiceInstanceID, tcfg.HostID, tcfg.ServiceVersion, tcfg.Logger =
		hd.ProviderKey, hd.InstanceID, hd.HostID, Version, log
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		log.Error("telemetry setup failed; continuing without it", "error", err)
	}
	return tel
}

// connectManaged connects to the lattice, and for secrets requests to NATS_URL's server when it is another one or
// the secrets connection has a NATS user of its own (else secretsConn is the lattice connection). It logs what
// failed.
func connectManaged(hd *wasmbus.HostData, src settings.Source, s *settings.Settings, log *slog.Logger) (lattice, secretsConn *nats.Conn, err error) {
	lattice, err = nats.Connect(hd.LatticeRPCURL, wasmbus.NATSOptions(hd, log)...)
	if err != nil {
		log.Error("NATS connection to the lattice failed", "url", settings.RedactURLs(hd.LatticeRPCURL), "error", err)
		return nil, nil, err
	}
	// Hosts send secrets requests on their control connection, usually the lattice server; NATS_URL in the
	// provider's config points elsewhere when the two are split. NATS_CREDS (or NATS_TLS_CA) gives the secrets
	// connection a NATS user of its own even on the lattice server, so that NATS permissions can let only this
	// provider subscribe to the secrets subjects (docs/security.md). s.NATSURL holds a default: ask whether it is set.
	url, _ := src.Lookup("NATS_URL")
	if url == "" {
		url = hd.LatticeRPCURL
	}
	if url == hd.LatticeRPCURL && s.NATSCreds == "" && s.NATSTLSCA == "" {
		return lattice, lattice, nil
	}
	secretsConn, err = nats.Connect(url, natsOptions(log, s)...)
	if err != nil {
		log.Error("NATS connection for secrets requests failed (NATS_URL, NATS_CREDS, NATS_TLS_CA in the provider config)",
			"url", settings.RedactURLs(url), "error", err)
		lattice.Close()
		return nil, nil, err
	}
	return lattice, secretsConn, nil
}

// closeManaged closes the connections connectManaged made.
func closeManaged(lattice, secretsConn *nats.Conn) {
	if secretsConn != lattice {
		secretsConn.Close()
	}
	lattice.Close()
}

// serveHost speaks the host protocol on the lattice until the host shuts the provider down or a signal arrives.
func (m *managed) serveHost(ctx context.Context, hd *wasmbus.HostData) int {
	p, err := wasmbus.New(m.lattice, hd, wasmbus.Handlers{
		LinkPut:        m.linkPut,
		LinkDel:        m.linkDel,
		LinkUnreadable: m.linkUnreadable,
		ConfigUpdate:   m.configUpdate,
		Health:         m.health,
		Shutdown:       m.shutdown,
	}, m.log)
	if err != nil {
		m.log.Error("host protocol", "error", err)
		m.rt.shutdown(ctx)
		return exitFailure
	}
	if err := p.Start(ctx); err != nil {
		m.log.Error("host protocol subscriptions", "error", err)
		m.rt.shutdown(ctx)
		return exitFailure
	}
	m.log.Info("provider started", "lattice", hd.LatticeRPCPrefix, "host", hd.HostID)

	select {
	case <-p.Done():
		// shutdown already drained, flushed and replied
		return exitOK
	case <-ctx.Done():
		m.log.Info("signal received, shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.shutdown(sctx); err != nil {
			m.log.Warn("shutdown", "error", err)
		}
		if err := p.Close(); err != nil {
			m.log.Warn("host protocol close", "error", err)
		}
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
	tenants     *tenants.Registry // links on the tenant interface: which application each serves, and how

	once sync.Once
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

func (m *managed) linkPut(_ context.Context, l wasmbus.Link) error {
	if !l.IsTarget {
		m.log.Debug("ignoring a link where this provider is the source", "target", l.Target)
		return nil
	}
	return m.tenants.Put(tenants.Link{ID: linkID(l), Source: l.SourceID, Config: l.Config, Secrets: hostSecrets(l.Secrets)})
}

// linkUnreadable fails closed for the application of a tenant link whose secrets cannot be decrypted.
func (m *managed) linkUnreadable(_ context.Context, l wasmbus.Link, err error) {
	if !l.IsTarget {
		return
	}
	// The registry logs the refusal; the host has nothing to hear, since this is no answer to a put.
	_ = m.tenants.Put(tenants.Link{ID: linkID(l), Source: l.SourceID, Config: l.Config,
		Unreadable: "its secrets could not be decrypted: " + err.Error()})
}

func (m *managed) linkDel(_ context.Context, l wasmbus.Link) error {
	m.tenants.Delete(linkID(l))
	return nil
}

// configUpdate applies the host's full merged config; an invalid one is rejected and the old settings stay.
func (m *managed) configUpdate(_ context.Context, cfg map[string]string) error {
	s, err := settings.Load(settings.Maps(cfg, m.secrets))
	if err != nil {
		m.log.Error("config update rejected, keeping the previous settings", "error", err)
		return err
	}
	prev := m.rt.backend.Settings()
	if err := m.rt.backend.Reconfigure(s); err != nil {
		m.log.Error("config update rejected, keeping the previous settings", "error", err)
		return err
	}
	m.log.Info("config updated", "project", s.Infisical.ProjectID, "environment", s.Infisical.Environment)
	if changed := needsRestart(prev, s); len(changed) > 0 {
		m.log.Warn("these settings changed but take effect only when the provider restarts", "settings", changed)
	}
	// Tenants inherit what their links leave unset from the provider's settings, which also say what links may do.
	m.tenants.Reconfigure(s)
	return nil
}

// needsRestart names the settings that a config update cannot apply to a running provider: its connections and
// subscriptions are made once. (The managed logger follows the host's log level, not LOG_LEVEL.)
func needsRestart(prev, next *settings.Settings) []string {
	var names []string
	check := func(name string, changed bool) {
		if changed {
			names = append(names, name)
		}
	}
	check("NATS_URL", prev.NATSURL != next.NATSURL)
	check("NATS_CREDS", prev.NATSCreds != next.NATSCreds)
	check("NATS_TLS_CA", prev.NATSTLSCA != next.NATSTLSCA)
	check("NATS_SUBJECT_PREFIX", prev.SubjectPrefix != next.SubjectPrefix)
	check("BACKEND_NAME", prev.BackendName != next.BackendName)
	check("API_VERSION", prev.APIVersion != next.APIVersion)
	check("SERVER_XKEY_SEED", prev.ServerXKeySeed != next.ServerXKeySeed)
	check("SHARED_CACHE", prev.SharedCache != next.SharedCache)
	check("SHARED_CACHE_BUCKET", prev.SharedCacheBucket != next.SharedCacheBucket)
	check("JWT_CACHE", prev.JWTCache != next.JWTCache) // the secrets server's verifier is made once
	return names
}

func (m *managed) health(ctx context.Context) (bool, string) {
	return m.rt.health(ctx, m.secretsConn, m.lattice)
}

// shutdown stops taking requests, lets in-flight ones finish, and flushes telemetry, within the host's 300 ms grace.
func (m *managed) shutdown(ctx context.Context) error {
	var err error
	m.once.Do(func() {
		// In-flight requests get most of the host's grace, but not all: telemetry must still be flushed, and the
		// server answers whatever is left unfinished when its share runs out.
		sctx, cancel := context.WithTimeout(ctx, serverShutdownShare)
		m.rt.shutdown(sctx)
		cancel()
		if m.tel != nil {
			if ferr := m.tel.Shutdown(ctx); ferr != nil {
				err = errors.Join(err, fmt.Errorf("flush telemetry: %w", ferr))
			}
		}
		if m.secretsConn != m.lattice {
			if derr := m.secretsConn.Drain(); derr != nil {
				err = errors.Join(err, fmt.Errorf("drain the secrets connection: %w", derr))
			}
		}
	})
	return err
}
