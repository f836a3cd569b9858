// Package backend is the glue between the secrets protocol and Infisical: it maps a verified request to an identity,
// project, environment, folder, name and version, asks the access policy, reads through the cache, and turns every
// failure into exactly one wire error. It is the only package that knows both vocabularies.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/access"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/sharedcache"
)

// Upstream is what the backend needs from Infisical.
type Upstream interface {
	GetSecret(ctx context.Context, ref infisical.SecretRef) (infisical.Secret, error)
}

// Dialer makes the upstream client for one identity's settings.
type Dialer func(settings.Infisical) (Upstream, error)

// replyMargin is kept free at the end of a request's budget to serve a stale value or an error instead of letting
// the protocol layer time the request out.
const replyMargin = 400 * time.Millisecond

// Config is what New needs.
type Config struct {
	Settings *settings.Settings
	Dial     Dialer // defaults to Dial(Settings.UpstreamTimeout, Logger)
	Logger   *slog.Logger
	Now      func() time.Time
	// Shared is the cache tier replicas share (JetStream); nil keeps the cache in this process.
	Shared *sharedcache.Tier
}

// identity is one Infisical login: the provider's own or one tenant's.
type identity struct {
	label    string // "default" or the tenant's application key
	settings settings.Infisical
	timeout  time.Duration // UPSTREAM_TIMEOUT its client was made with
	id       string        // non-secret hash naming the credentials, part of every cache key
	upstream Upstream
}

type cacheKey struct {
	identity, project, environment, folder, name string
	version                                      int
	expand, imports                              bool
}

// Backend serves secrets.Handler.
type Backend struct {
	log    *slog.Logger
	dial   Dialer // nil: real Infisical clients with the UPSTREAM_TIMEOUT in force
	now    func() time.Time
	tel    instruments
	shared *sharedcache.Tier     // nil: no shared tier
	limits *infisical.RateLimits // one rate-limit budget for every identity: Infisical counts per client IP

	// changing serializes Reconfigure, SetTenant and RemoveTenant, which each read, dial and swap.
	changing sync.Mutex

	mu       sync.RWMutex
	settings *settings.Settings
	policy   *access.Policy
	defaults *identity
	tenants  map[string]*identity
	caches   *caches
}

// New validates the settings and prepares the provider-level identity (no network call yet: logins are lazy).
func New(cfg Config) (*Backend, error) {
	if cfg.Settings == nil {
		return nil, errors.New("backend: settings are required")
	}
	b := &Backend{log: cfg.Logger, dial: cfg.Dial, now: cfg.Now, tenants: map[string]*identity{}, tel: newInstruments(),
		shared: cfg.Shared}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.now == nil {
		b.now = time.Now
	}
	b.limits = infisical.NewRateLimits(b.now)
	if err := b.Reconfigure(cfg.Settings); err != nil {
		return nil, err
	}
	return b, nil
}

// Reconfigure applies new settings to later requests. On error nothing changes.
func (b *Backend) Reconfigure(s *settings.Settings) error {
	b.changing.Lock()
	defer b.changing.Unlock()
	policy, err := access.New(s.TrustedIssuers, s.AccessRules)
	if err != nil {
		return fmt.Errorf("access settings: %w", err)
	}
	b.mu.RLock()
	old := b.defaults
	b.mu.RUnlock()
	def := old
	if old == nil || old.settings != s.Infisical || old.timeout != s.UpstreamTimeout {
		def, err = b.newIdentity("default", s.Infisical, s.UpstreamTimeout)
		if err != nil {
			return err
		}
	}
	b.mu.Lock()
	prev := b.settings
	b.settings, b.policy, b.defaults = s, policy, def
	if b.caches == nil || prev == nil || cacheSettingsChanged(prev, s) {
		b.caches = newCaches(s, b.now, b.shared)
	}
	b.mu.Unlock()
	if def != old && old != nil {
		retire(old.upstream)
	}
	if policy.TrustsNobody() {
		b.log.Error("no trusted issuers: every get is answered Unauthorized; set TRUSTED_ISSUERS to the account " +
			"public keys (A...) that sign your components and providers (wash inspect shows them), or * to trust any issuer")
	}
	return nil
}

// cacheSettingsChanged reports whether the memory tier must be rebuilt for s.
func cacheSettingsChanged(prev, s *settings.Settings) bool {
	return prev.CacheTTL != s.CacheTTL || prev.StaleIfError != s.StaleIfError || prev.UpstreamTimeout != s.UpstreamTimeout ||
		prev.NotFoundTTL != s.NotFoundTTL || prev.CachePrefetch != s.CachePrefetch
}

// fetchBudget bounds one shared upstream fetch, retries included: up to infisical.MaxAttempts attempts, and never
// more than fits in the host's 10 s with the request's other work. Callers wait at most their own budget.
func fetchBudget(attempt time.Duration) time.Duration {
	return min(infisical.MaxAttempts*attempt, 7*time.Second)
}

// staleWait is how long a request with a stale value to fall back on waits for a refresh before serving the stale
// value; the refresh goes on in the background and fills the cache for later requests. The host fetches secrets one
// after another, so during an outage every secret would otherwise cost the whole fetch budget.
const staleWait = 1500 * time.Millisecond

func (b *Backend) newIdentity(label string, s settings.Infisical, timeout time.Duration) (*identity, error) {
	dial := b.dial
	if dial == nil {
		dial = dialer(timeout, b.log, b.limits)
	}
	up, err := dial(s)
	if err != nil {
		return nil, fmt.Errorf("infisical client for %s: %w", label, err)
	}
	return &identity{label: label, settings: s, timeout: timeout, id: IdentityID(s), upstream: up}, nil
}

// retireAfter outlasts any fetch still running on a replaced client (fetchBudget is at most 7 s).
const retireAfter = 10 * time.Second

// retire stops a replaced client's background work at once and closes it once the fetches that may still use it
// are over.
func retire(u Upstream) {
	if r, ok := u.(interface{ Retire() }); ok {
		r.Retire()
	}
	time.AfterFunc(retireAfter, func() { closeUpstream(u) })
}

// Settings returns the settings in force.
func (b *Backend) Settings() *settings.Settings {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.settings
}

// SetTenant makes requests from the application whose key is appKey (see ApplicationKey) use their own Infisical
// settings. A later call for the same key replaces the tenant.
func (b *Backend) SetTenant(appKey string, s settings.Infisical) error {
	if appKey == "" {
		return errors.New("tenant needs an application name")
	}
	b.changing.Lock()
	defer b.changing.Unlock()
	timeout := b.Settings().UpstreamTimeout
	b.mu.RLock()
	same := b.tenants[appKey]
	b.mu.RUnlock()
	if same != nil && same.settings == s && same.timeout == timeout {
		// Links are put again (one per component of an app, or by wadm): keep the client, its token and its
		// login back-off, so repeats cost Infisical nothing.
		return nil
	}
	id, err := b.newIdentity("tenant "+appKey, s, timeout)
	if err != nil {
		return err
	}
	id.label = appKey
	b.mu.Lock()
	old := b.tenants[appKey]
	b.tenants[appKey] = id
	b.mu.Unlock()
	if old != nil {
		retire(old.upstream)
	}
	b.log.Info("tenant set", "application", appKey, "project", s.ProjectID, "environment", s.Environment)
	return nil
}

// RemoveTenant drops a tenant and its cached values; its application falls back to the provider's settings.
func (b *Backend) RemoveTenant(appKey string) {
	b.changing.Lock()
	defer b.changing.Unlock()
	b.mu.Lock()
	old := b.tenants[appKey]
	delete(b.tenants, appKey)
	c := b.caches
	b.mu.Unlock()
	if old == nil {
		return
	}
	c.forget(old.id)
	retire(old.upstream)
	b.log.Info("tenant removed", "application", appKey)
}

// Close releases every upstream client.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.defaults != nil {
		closeUpstream(b.defaults.upstream)
	}
	for _, t := range b.tenants {
		closeUpstream(t.upstream)
	}
}

func closeUpstream(u Upstream) {
	if c, ok := u.(interface{ Close() }); ok {
		c.Close()
	}
}

// Warmup logs the provider's own identity in to Infisical, so that bad credentials show at start (in the logs and
// in health) rather than on the first request a host makes. Failure is logged, not fatal: Infisical may come later.
func (b *Backend) Warmup(ctx context.Context) {
	b.mu.RLock()
	def := b.defaults
	b.mu.RUnlock()
	l, ok := def.upstream.(interface{ Login(context.Context) error })
	if !ok {
		return
	}
	if err := l.Login(ctx); err != nil {
		b.log.Error("Infisical login failed at start; requests will fail until it succeeds (check the INFISICAL_* settings, "+
			"or run `infisical-secrets-provider check`)", "error", err.Error())
		return
	}
	b.log.Info("logged in to Infisical", "url", def.settings.BaseURL)
}

// Health says whether the backend can serve: it cannot when nobody is trusted, or when Infisical logins fail and
// nothing is cached to fall back on.
func (b *Backend) Health(ctx context.Context) (bool, string) {
	b.mu.RLock()
	policy, def, c := b.policy, b.defaults, b.caches
	b.mu.RUnlock()
	if policy.TrustsNobody() {
		return false, "no trusted issuers: set TRUSTED_ISSUERS"
	}
	if h, ok := def.upstream.(interface{ Healthy() error }); ok {
		if err := h.Healthy(); err != nil && c.len() == 0 {
			return false, "Infisical is failing and nothing is cached: " + err.Error()
		}
	}
	return true, "healthy"
}

// Get implements secrets.Handler.
func (b *Backend) Get(ctx context.Context, v *secrets.Verified) (*secrets.Secret, error) {
	req := v.Request
	opts, err := parseOptions(v.Policy.Properties)
	if err != nil {
		return nil, err
	}
	if len(opts.ignored) > 0 {
		b.log.Debug("ignoring policy properties this backend does not use", "properties", opts.ignored)
	}
	version, err := parseVersion(req.Version)
	if err != nil {
		secrets.Annotate(ctx, slog.String("detail", err.Error()))
		return nil, secrets.NewError(secrets.KindInvalidRequest, "")
	}

	b.mu.RLock()
	policy, c := b.policy, b.caches
	id := b.defaults
	if t, ok := b.tenants[ApplicationKey(v.Application)]; ok && v.Application != "" {
		id = t
	}
	b.mu.RUnlock()

	inf := id.settings
	project, environment, base := inf.ProjectID, inf.Environment, inf.SecretPath
	if opts.projectID != "" {
		project = opts.projectID
	}
	if opts.environment != "" {
		environment = opts.environment
	}
	if opts.secretPath != "" {
		base = opts.secretPath
	}
	folder, name, err := resolveKey(base, req.Key)
	if err != nil {
		secrets.Annotate(ctx, slog.String("detail", err.Error()))
		return nil, secrets.NewError(secrets.KindInvalidRequest, "")
	}
	fullKey := joinKey(folder, name)
	secrets.Annotate(ctx, slog.String("identity", id.label), slog.String("project", project),
		slog.String("environment", environment), slog.String("path", fullKey))

	subject := access.Subject{
		Issuer: v.Entity.Issuer, Subject: v.Entity.Subject, Name: v.Entity.Name, Application: v.Application,
		Project: project, Environment: environment, Key: fullKey,
	}
	if err := b.authorize(ctx, policy, subject, v); err != nil {
		return nil, err
	}

	key := cacheKey{identity: id.id, project: project, environment: environment, folder: folder, name: name,
		version: version, expand: opts.expandReferences, imports: opts.includeImports}
	ref := infisical.SecretRef{ProjectID: project, Environment: environment, Path: folder, Name: name,
		Version: version, ExpandReferences: opts.expandReferences, IncludeImports: opts.includeImports}

	sec, result, age, err := b.lookup(ctx, c, id, key, ref)
	secrets.Annotate(ctx, slog.String("cache", string(result)))
	if err != nil {
		return nil, b.upstreamFailure(ctx, fullKey, err)
	}
	if result == cache.Stale {
		b.log.Warn("Infisical failing: serving a stale value", "key", fullKey, "identity", id.label,
			"stale_for", age.Round(time.Second).String())
	}
	// With include_imports Infisical may answer with a secret from an imported folder or environment: the rules
	// must allow where the value really comes from, not only the path that was asked for.
	if actual, moved := importedFrom(subject, sec); moved {
		secrets.Annotate(ctx, slog.String("imported_from", actual.Environment+":"+actual.Key))
		if err := b.authorize(ctx, policy, actual, v); err != nil {
			return nil, err
		}
	}

	value := sec.Value
	if req.Field != nil && *req.Field != "" {
		value, err = selectField(sec.Value, *req.Field)
		if err != nil {
			b.log.Info("secret field not found", "key", fullKey, "field", *req.Field, "reason", err.Error())
			return nil, secrets.NewError(secrets.KindSecretNotFound, "")
		}
	}
	return buildSecret(value, sec.Version, opts.base64)
}

// authorize asks the access policy and logs a denial; the error is the wire error to send.
func (b *Backend) authorize(ctx context.Context, policy *access.Policy, s access.Subject, v *secrets.Verified) error {
	ok, reason := b.checkAccess(ctx, policy, s)
	if !ok {
		secrets.Annotate(ctx, slog.String("decision", "denied"))
		b.log.Warn("access denied", "entity", v.Entity.Subject, "entity_name", v.Entity.Name, "issuer", v.Entity.Issuer,
			"application", v.Application, "environment", s.Environment, "key", s.Key, "reason", reason)
		return secrets.NewError(secrets.KindUnauthorized, "")
	}
	secrets.Annotate(ctx, slog.String("decision", "allowed"))
	return nil
}

// importedFrom reports the subject as it really is when Infisical answered from another folder or environment.
func importedFrom(asked access.Subject, sec infisical.Secret) (access.Subject, bool) {
	actual := asked
	if sec.Environment != "" {
		actual.Environment = sec.Environment
	}
	if sec.Path != "" {
		name := sec.Name
		if name == "" {
			_, name = path.Split(asked.Key)
		}
		actual.Key = joinKey(path.Clean("/"+sec.Path), name)
	}
	return actual, actual != asked
}

// upstreamFailure maps an error from the cache or Infisical to the one wire error the host sees.
func (b *Backend) upstreamFailure(ctx context.Context, key string, err error) error {
	if errors.Is(err, infisical.ErrNotFound) {
		secrets.Annotate(ctx, slog.String("detail", "not found in Infisical"))
		return secrets.NewError(secrets.KindSecretNotFound, "")
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		msg = "Infisical did not answer in time: " + msg
	}
	b.log.Warn("Infisical request failed", "key", key, "error", msg)
	return secrets.NewError(secrets.KindUpstreamError, msg)
}

func joinKey(folder, name string) string {
	if folder == "/" {
		return "/" + name
	}
	return folder + "/" + name
}
