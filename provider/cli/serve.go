package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/sharedcache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

const serviceName = "infisical-secrets-provider"

func runServe(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: infisical-secrets-provider serve")
		fmt.Fprintln(e.stderr, "\nRuns the standalone backend. Settings come from environment variables:")
		printSettings(e.stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "serve takes no arguments, got %q\n", fs.Args())
		return exitUsage
	}
	s, err := settings.Load(e)
	if err != nil {
		fmt.Fprintf(e.stderr, "configuration error: %v\n", err)
		return exitUsage
	}
	log := newLogger(e.stderr, s.LogLevel, s.LogFormat == "json")
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// FromEnv names the service itself, leaving the name empty when OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES
	// names it, so that the operator's name wins.
	tcfg := telemetry.FromEnv(e.getenv)
	tcfg.ServiceVersion, tcfg.Logger = Version, log
	tel, err := telemetry.Setup(ctx, tcfg)
	if err != nil {
		log.Error("telemetry setup failed; continuing without it", "error", err)
	}

	// The health listener binds first: a busy HEALTH_ADDR stops the start, and probes see "starting" meanwhile.
	var health *healthServer
	if s.HealthAddr != "" {
		if health, err = listenHealth(ctx, log, s.HealthAddr); err != nil {
			log.Error("cannot start", "error", err)
			return exitFailure
		}
	}

	nc, err := nats.Connect(s.NATSURL, natsOptions(log, s)...)
	if err != nil {
		log.Error("NATS connection failed: check that a NATS server runs at NATS_URL and that NATS_CREDS / NATS_TLS_CA fit it",
			"url", settings.RedactURLs(s.NATSURL), "error", err)
		return exitFailure
	}
	defer nc.Close()

	rt, err := startBackend(ctx, log, s, nc)
	if err != nil {
		log.Error("cannot start", "error", err)
		return exitFailure
	}
	if health != nil {
		health.ready(func(ctx context.Context) (bool, string) { return rt.health(ctx, nc) })
	}
	<-ctx.Done()
	log.Info("signal received, shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if health != nil {
		if err := health.shutdown(sctx); err != nil {
			log.Warn("health listener shutdown", "error", err)
		}
	}
	rt.shutdown(sctx)
	if tel != nil {
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry flush failed", "error", err)
		}
	}
	if err := nc.Drain(); err != nil {
		log.Debug("nats drain", "error", err)
	}
	return exitOK
}

// verifiedTokens is the secrets server's VerifiedTokens for JWT_CACHE.
func verifiedTokens(s *settings.Settings) int {
	if s.JWTCache {
		return wascap.DefaultVerifiedTokens
	}
	return -1
}

// running is a started backend and its secrets server.
type running struct {
	log     *slog.Logger
	backend *backend.Backend
	server  *secrets.Server
}

// startBackend builds the backend from settings and starts serving the secrets protocol on nc.
func startBackend(ctx context.Context, log *slog.Logger, s *settings.Settings, nc *nats.Conn) (*running, error) {
	kp, err := serverXKey(log, s.ServerXKeySeed)
	if err != nil {
		return nil, err
	}
	// The shared cache tier lives on the connection that serves requests, whose account has the lattice's
	// JetStream; without JetStream or a seed it stays off and says why.
	shared := sharedcache.Open(ctx, nc, sharedcache.Config{Disabled: !s.SharedCache, Bucket: s.SharedCacheBucket,
		Seed: s.ServerXKeySeed, Logger: log})
	b, err := backend.New(backend.Config{Settings: s, Logger: log, Shared: shared})
	if err != nil {
		return nil, err
	}
	warnIfOtherReplicaKey(ctx, log, nc, s, kp)
	srv, err := secrets.NewServer(nc, secrets.ServerConfig{
		Prefix: s.SubjectPrefix, APIVersion: s.APIVersion, Backend: s.BackendName,
		XKey: kp, Handler: b, Logger: log, VerifiedTokens: verifiedTokens(s),
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("secrets server: %w", err)
	}
	if err := srv.Start(); err != nil {
		b.Close()
		return nil, fmt.Errorf("subscribe to the secrets subjects: %w", err)
	}
	go func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		b.Warmup(wctx)
	}()
	log.Info("serving secrets", "subject", srv.Subject(),
		"server_xkey", srv.PublicXKey(), "infisical", s.Infisical.BaseURL, "project", s.Infisical.ProjectID,
		"environment", s.Infisical.Environment)
	return &running{log: log, backend: b, server: srv}, nil
}

// health is what the managed provider reports to its host's health checks and `serve` to probes (HEALTH_ADDR):
// every NATS connection up, the secrets subscriptions live, and the backend able to serve (issuers trusted;
// Infisical logins working or a cache to fall back on). It reads state only.
func (r *running) health(ctx context.Context, conns ...*nats.Conn) (bool, string) {
	for _, nc := range conns {
		if !nc.IsConnected() {
			return false, "NATS disconnected; reconnecting"
		}
	}
	if err := r.server.Receiving(); err != nil {
		return false, err.Error()
	}
	return r.backend.Health(ctx)
}

func (r *running) shutdown(ctx context.Context) {
	if err := r.server.Shutdown(ctx); err != nil {
		r.log.Warn("secrets server shutdown", "error", err)
	}
	r.backend.Close()
}

// serverXKey loads the server's curve key, or makes a throwaway one with a loud warning: hosts cache the key for
// their lifetime, so a new key after a restart breaks every host until it restarts too.
func serverXKey(log *slog.Logger, seed string) (nkeys.KeyPair, error) {
	if seed != "" {
		kp, err := nkeys.FromCurveSeed([]byte(seed))
		if err != nil {
			return nil, fmt.Errorf("SERVER_XKEY_SEED is not a curve seed (SX...): %w", err)
		}
		return kp, nil
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("generate server xkey: %w", err)
	}
	log.Warn("SERVER_XKEY_SEED is not set: using a generated server xkey. wasmCloud hosts cache this key, so they will " +
		"fail to decrypt after this process restarts, and replicas cannot share it. Generate a seed with " +
		"`infisical-secrets-provider xkey` and set SERVER_XKEY_SEED.")
	return kp, nil
}

// warnIfOtherReplicaKey asks the server_xkey subject before we subscribe: a different answer means another replica
// serves with another key, and hosts would get DecryptionError from whichever replica did not give them theirs.
func warnIfOtherReplicaKey(ctx context.Context, log *slog.Logger, nc *nats.Conn, s *settings.Settings, kp nkeys.KeyPair) {
	ours, err := kp.PublicKey()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	subject := secrets.NewSubjects(s.SubjectPrefix, s.APIVersion, s.BackendName).ServerXKey()
	msg, err := nc.RequestWithContext(ctx, subject, nil)
	if err != nil {
		return // nobody else serves: the normal case
	}
	if theirs := string(msg.Data); theirs != ours {
		log.Error("another replica already serves this backend with a different server xkey: hosts will fail with "+
			"DecryptionError on requests that reach the replica whose key they did not cache. Give every replica the "+
			"same SERVER_XKEY_SEED.", "subject", subject, "their_xkey", theirs, "our_xkey", ours)
	}
}

func natsOptions(log *slog.Logger, s *settings.Settings) []nats.Option {
	opts := append(commonNATSOptions(log, serviceName),
		nats.Timeout(5*time.Second),
	)
	return append(opts, natsFileOptions(s.NATSCreds, s.NATSTLSCA)...)
}

// commonNATSOptions reconnect forever with jittered backoff and log each disconnect and reconnect once.
func commonNATSOptions(log *slog.Logger, name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || nc.IsDraining() {
				return // our own shutdown
			}
			log.Warn("NATS disconnected; reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS error", "subject", subject, "error", err)
		}),
	}
}

func newLogger(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func printSettings(w io.Writer) {
	for _, sp := range settings.Specs() {
		def := sp.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(w, "  %-32s %-28s %s\n", sp.Name, def, sp.Help)
	}
}

func runSettings(_ context.Context, e *env, args []string) int {
	if code, done := noArgs(e, "settings", "Prints every setting with its default and meaning.", args); done {
		return code
	}
	printSettings(e.stdout)
	return exitOK
}

// noArgs handles --help and stray arguments for commands that take none; done reports that the caller should exit.
func noArgs(e *env, name, summary string, args []string) (code int, done bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: infisical-secrets-provider %s\n\n%s\n", name, summary)
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err), true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "%s takes no arguments, got %q\n", name, fs.Args())
		return exitUsage, true
	}
	return exitOK, false
}
