// Package backend is the glue between the secrets protocol and Infisical: it maps a verified request to an identity,
// project, environment, folder, name and version, asks the access policy, reads through the cache, and turns every
// failure into exactly one wire error. It is the only package that knows both vocabularies.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/access"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/sharedcache"
)

// Upstream is one identity's Infisical client, as the backend uses it. *infisical.Client is the real one; one that
// also lists folders (Lister) serves prefetch.
type Upstream interface {
	GetSecret(ctx context.Context, ref infisical.SecretRef) (infisical.Secret, error)
	// Login logs in now unless a usable token is at hand (Warmup, so bad credentials show at start).
	Login(ctx context.Context) error
	// Healthy returns the last login's error: nil when it succeeded or none was tried yet (Health).
	Healthy() error
	// Retire stops the background work of a client that another one replaces; reads running on it go on.
	Retire()
	// Close releases the client once no read uses it any more.
	Close()
}

var (
	_ Upstream = (*infisical.Client)(nil)
	_ Lister   = (*infisical.Client)(nil)
)

// Dialer makes the upstream client for one identity's settings.
type Dialer func(settings.Infisical) (Upstream, error)

// replyMargin is kept free at the end of a request's budget to serve a stale value or an error instead of letting
// the protocol layer time the request out.
const replyMargin = 400 * time.Millisecond

// Config is what New needs.
type Config struct {
	Settings *settings.Settings
	Dial     Dialer // nil = real Infisical clients (NewClient) that share one rate-limit budget
	Logger   *slog.Logger
	Now      func() time.Time
	// Shared is the cache tier replicas share (JetStream); nil keeps the cache in this process.
	Shared *sharedcache.Tier
}

// identity is one Infisical login: the provider's own or one tenant's.
type identity struct {
	label    string // "default" or the tenant's application name
	appKey   string // ApplicationKey of a tenant's application name; "" for the provider's identity
	settings settings.Infisical
	timeout  time.Duration // UPSTREAM_TIMEOUT its client was made with
	id       string        // non-secret hash naming the credentials, part of every cache key
	upstream Upstream
	refused  string // set (and upstream nil) for an application whose tenant link was refused: it fails closed
}

// cacheKey names one raw read (references unexpanded: the backend expands them itself).
type cacheKey struct {
	identity, project, environment, folder, name string
	version                                      int
	imports                                      bool
}

// Backend serves secrets.Handler.
type Backend struct {
	log    *slog.Logger
	dial   Dialer // nil: real Infisical clients with the UPSTREAM_TIMEOUT in force
	now    func() time.Time
	tel    instruments
	shared *sharedcache.Tier     // nil: no shared tier
	limits *infisical.RateLimits // one rate-limit budget for every identity: Infisical counts per client IP

	// changing serializes Reconfigure, SetTenant, RefuseTenant and RemoveTenant, which each read, dial and swap.
	changing sync.Mutex

	mu        sync.RWMutex
	settings  *settings.Settings
	policy    *access.Policy
	overrides []string // policy properties a request may set to other than the identity's default
	defaults  *identity
	tenants   map[string]*identity // by exact application name, as requests carry it
	caches    *caches
	// retired are replaced clients waiting for the fetches that may still use them to end, so that Close can close
	// them too; closed makes later retirements close at once.
	retired map[*retiredClient]struct{}
	closed  bool
}

// retiredClient is a replaced client and the timer that closes it.
type retiredClient struct {
	upstream Upstream
	timer    *time.Timer
}

// New validates the settings and prepares the provider-level identity (no network call yet: logins are lazy).
func New(cfg Config) (*Backend, error) {
	if cfg.Settings == nil {
		return nil, errors.New("backend: settings are required")
	}
	b := &Backend{log: cfg.Logger, dial: cfg.Dial, now: cfg.Now, tenants: map[string]*identity{}, tel: newInstruments(),
		shared: cfg.Shared, retired: map[*retiredClient]struct{}{}}
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
	if b.isClosed() {
		return errClosed
	}
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
	b.settings, b.policy, b.defaults, b.overrides = s, policy, def, s.AllowedOverrides()
	if b.caches == nil || prev == nil || cacheSettingsChanged(prev, s) {
		b.caches = newCaches(s, b.now, b.shared)
	}
	b.mu.Unlock()
	if def != old && old != nil {
		b.retire(old.upstream)
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

// errClosed refuses changes to a closed backend, which would make clients nobody closes.
var errClosed = errors.New("backend: closed")

func (b *Backend) isClosed() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed
}

// retireAfter outlasts any fetch still running on a replaced client (fetchBudget is at most 7 s).
const retireAfter = 10 * time.Second

// retire stops a replaced client's background work at once and closes it once the fetches that may still use it
// are over, or when the backend closes, whichever comes first.
func (b *Backend) retire(u Upstream) {
	u.Retire()
	r := &retiredClient{upstream: u}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		u.Close()
		return
	}
	b.retired[r] = struct{}{}
	r.timer = time.AfterFunc(retireAfter, func() {
		b.mu.Lock()
		_, waiting := b.retired[r]
		delete(b.retired, r)
		b.mu.Unlock()
		if waiting { // else Close took it
			u.Close()
		}
	})
	b.mu.Unlock()
}

// Settings returns the settings in force.
func (b *Backend) Settings() *settings.Settings {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.settings
}

// SetTenant makes requests from the application named exactly app use their own Infisical settings. Names are
// matched exactly, not normalized: shop-x and shop_x are two applications. A later call for the same name replaces
// the tenant.
func (b *Backend) SetTenant(app string, s settings.Infisical) error {
	if app == "" {
		return errors.New("tenant needs an application name")
	}
	b.changing.Lock()
	defer b.changing.Unlock()
	if b.isClosed() {
		return errClosed
	}
	timeout := b.Settings().UpstreamTimeout
	b.mu.RLock()
	same := b.tenants[app]
	b.mu.RUnlock()
	if same != nil && same.refused == "" && same.settings == s && same.timeout == timeout {
		// Links are put again (one per component of an app, or by wadm): keep the client, its token and its
		// login back-off, so repeats cost Infisical nothing.
		return nil
	}
	id, err := b.newIdentity("tenant "+app, s, timeout)
	if err != nil {
		return err
	}
	id.label, id.appKey = app, ApplicationKey(app)
	b.swapTenant(app, id)
	b.log.Info("tenant set", "application", app, "project", s.ProjectID, "environment", s.Environment)
	return nil
}

// RefuseTenant makes requests from the application named exactly app fail, with reason, instead of being served by
// the provider's identity or a previous tenant's: its tenant link was refused, and it fails closed.
func (b *Backend) RefuseTenant(app, reason string) {
	b.changing.Lock()
	defer b.changing.Unlock()
	if b.isClosed() {
		return
	}
	b.swapTenant(app, &identity{label: app, appKey: ApplicationKey(app), refused: reason})
	b.log.Warn("tenant refused: the application's requests fail until its link is fixed or deleted", "application", app,
		"reason", reason)
}

// RemoveTenant drops a tenant and its cached values; its application falls back to the provider's settings.
func (b *Backend) RemoveTenant(app string) {
	b.changing.Lock()
	defer b.changing.Unlock()
	if b.isClosed() {
		return
	}
	if b.swapTenant(app, nil) {
		b.log.Info("tenant removed", "application", app)
	}
}

// tenantAlike returns the name of a tenant's application that normalizes like app (another name: app has no
// tenant), or "". Callers hold b.mu.
func (b *Backend) tenantAlike(app string) string {
	if len(b.tenants) == 0 {
		return ""
	}
	key := ApplicationKey(app)
	for name, t := range b.tenants {
		if t.appKey == key {
			return name
		}
	}
	return ""
}

// swapTenant installs next (nil removes the tenant) and retires the one it replaces, dropping its cached values
// unless an identity still in use reads as the same one: the provider's own (a link that keeps the provider's
// identity has its id), next, or another application's tenant. Cache entries are keyed by identity id, not by
// application, so forgetting an id in use would wipe what those still serve. It reports whether there was a
// tenant. Callers hold b.changing.
func (b *Backend) swapTenant(app string, next *identity) bool {
	b.mu.Lock()
	old := b.tenants[app]
	if next == nil {
		delete(b.tenants, app)
	} else {
		b.tenants[app] = next
	}
	c := b.caches
	inUse := old != nil && b.identityInUse(old.id)
	b.mu.Unlock()
	if old == nil || old.upstream == nil {
		return old != nil
	}
	if !inUse {
		c.forget(old.id)
	}
	b.retire(old.upstream)
	return true
}

// identityInUse reports whether the provider's identity or a live tenant reads as id. Callers hold b.mu.
func (b *Backend) identityInUse(id string) bool {
	if b.defaults != nil && b.defaults.id == id {
		return true
	}
	for _, t := range b.tenants {
		if t.upstream != nil && t.id == id {
			return true
		}
	}
	return false
}

// Close releases every upstream client: the ones in use and the retired ones still waiting to be closed.
// Once closed, the backend makes no more clients: Reconfigure and SetTenant fail, and a second Close does nothing.
func (b *Backend) Close() {
	b.changing.Lock() // no Reconfigure or tenant change is halfway through making or replacing a client
	defer b.changing.Unlock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	var clients []Upstream
	if b.defaults != nil {
		clients = append(clients, b.defaults.upstream)
	}
	for _, t := range b.tenants {
		if t.upstream != nil {
			clients = append(clients, t.upstream)
		}
	}
	for r := range b.retired {
		r.timer.Stop()
		clients = append(clients, r.upstream)
	}
	clear(b.retired)
	b.mu.Unlock()
	for _, u := range clients {
		u.Close()
	}
}

// Warmup logs the provider's own identity in to Infisical, so that bad credentials show at start (in the logs and
// in health) rather than on the first request a host makes. Failure is logged, not fatal: Infisical may come later.
func (b *Backend) Warmup(ctx context.Context) {
	b.mu.RLock()
	def := b.defaults
	b.mu.RUnlock()
	if err := def.upstream.Login(ctx); err != nil {
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
	if err := def.upstream.Healthy(); err != nil && c.len() == 0 {
		return false, "Infisical is failing and nothing is cached: " + err.Error()
	}
	return true, "healthy"
}
