// Package infisical reads secrets from Infisical through the official go-sdk, and owns everything the SDK leaves
// to its caller: deadlines (the SDK takes no context), an HTTP transport that bounds every exchange and answer (the
// SDK's own has no timeout and reads any body whole; see transport.go), a bound on calls in flight, retries of 5xx,
// network errors and 429, the token lifecycle (lazy login, refresh before expiry, one re-login when a token is
// refused), login back-off that respects the Universal Auth lockout, and error values that say what failed.
//
// The SDK shares unsynchronised token state between logins and requests, so a Client never logs in on the SDK
// client that serves reads: every login uses a fresh SDK client, and each access token gets its own read-only SDK
// client, published atomically.
package infisical

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/infisical/go-sdk"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
)

// Defaults for Config.
const (
	DefaultBaseURL         = "https://app.infisical.com"
	DefaultUpstreamTimeout = 10 * time.Second
	DefaultMaxInFlight     = 64
	DefaultLockoutBackoff  = 5 * time.Minute // Infisical's default Universal Auth lockout duration
	// DefaultAuthBackoff is the first pause after Infisical rejects the credentials. Universal Auth locks an
	// identity out (for 5 minutes, on every replica using it) after 3 failed logins within 30 s; pauses of 15 s and
	// more keep a replica to at most 2 attempts in any 30 s.
	DefaultAuthBackoff = 15 * time.Second
	// DefaultLoginBackoff is the first pause after a login failed on the way (network, 5xx, timeout), which counts
	// toward no lockout.
	DefaultLoginBackoff = time.Second
)

// MaxAttempts bounds the calls one read makes: the first and two retries (of a 5xx, a network error, or a 429 whose
// named wait fits the deadline). docs/performance.md says so; a test holds both to it.
const MaxAttempts = 3

// Retry and back-off tuning.
const (
	retryBase       = 100 * time.Millisecond
	retryCap        = 2 * time.Second
	authBackoffCap  = 5 * time.Minute
	loginBackoffCap = time.Minute
)

// hiddenValue is what Infisical sends instead of a value the identity may see exists but not read.
const hiddenValue = "<hidden-by-infisical>"

// Config configures a Client.
type Config struct {
	BaseURL         string        // Infisical site URL; "" = DefaultBaseURL (the SDK appends /api)
	CACert          string        // PEM of extra CAs to trust (added to the system pool)
	Auth            Credentials   // how to log in
	UpstreamTimeout time.Duration // per attempt; 0 = DefaultUpstreamTimeout
	Logger          *slog.Logger  // nil = slog.Default()
	MaxInFlight     int           // SDK calls running at once, abandoned ones included; 0 = DefaultMaxInFlight
	LockoutBackoff  time.Duration // pause after Infisical reports a lockout; 0 = DefaultLockoutBackoff
	AuthBackoff     time.Duration // first pause after rejected credentials, doubling to 5m; 0 = DefaultAuthBackoff
	LoginBackoff    time.Duration // first pause after another login failure, doubling to 1m; 0 = DefaultLoginBackoff
	// RateLimits is shared by every client of the process, so that a 429 pauses all identities on one URL; nil = a
	// budget of this client's own, on this client's clock.
	RateLimits *RateLimits
	// Names names a Field in the terms of the client's users, such as the setting that sets it, in the errors and
	// hints that ask them to fix one; nil (or "") = this package's own names (Config.BaseURL).
	Names func(Field) string
	// Now and AfterFunc are the client's clock, for token expiry, the login back-off, the wait between attempts and
	// the token refresh; nil = the real clock. Tests move a manual one (internal/testclock) instead of sleeping.
	// Context deadlines stay in real time.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// realAfterFunc is time.AfterFunc in the shape of Config.AfterFunc.
func realAfterFunc(d time.Duration, f func()) (stop func() bool) { return time.AfterFunc(d, f).Stop }

// SecretRef names one secret to read.
type SecretRef struct {
	ProjectID, Environment string
	Path                   string // folder; "" = "/"
	Name                   string
	Version                int // 0 = latest
	ExpandReferences       bool
	IncludeImports         bool
}

// Secret is what Infisical returned for a SecretRef. Path and Environment are where Infisical says the value lives
// ("" when it did not say, as older versions do not): with IncludeImports, possibly an imported folder.
type Secret struct {
	Name, Value, Path, Environment string
	Version                        int
}

// session is one access token and the SDK client that reads with it.
type session struct {
	client    sdk.InfisicalClientInterface
	expiresAt time.Time // when to stop using it; zero = never
}

func (s *session) usable(now time.Time) bool { return s.expiresAt.IsZero() || now.Before(s.expiresAt) }

// Client reads secrets from Infisical as one identity. It is safe for concurrent use.
type Client struct {
	cfg     Config
	baseURL string
	names   namer
	log     *slog.Logger
	static  bool // a fixed access token: nothing to log in with
	slots   chan struct{}

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	current atomic.Pointer[session]
	flight  singleflight.Group

	mu          sync.Mutex
	failures    int         // logins failed in a row
	retryAt     time.Time   // no login before this
	lastErr     *Error      // last login failure; nil after a success
	stopRefresh func() bool // cancels the scheduled token refresh; nil before the first
	retired     bool        // no more background refreshes: a replacement client serves new requests

	limits *RateLimits
	tel    instruments

	// transport carries every SDK client's requests (bounded, see transport.go); idle is its connection pool.
	transport http.RoundTripper
	idle      *http.Transport
}

// New checks cfg and returns a Client. It does not contact Infisical: the first GetSecret (or Login) logs in.
func New(cfg Config) (*Client, error) {
	names := namer(cfg.Names)
	if err := cfg.Auth.check(names); err != nil {
		return nil, err
	}
	base, err := checkBaseURL(cfg.BaseURL, names)
	if err != nil {
		return nil, err
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	idle, transport, err := newTransport(cfg.CACert, cfg.UpstreamTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s %w", names.of(FieldCACert), err)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.LockoutBackoff <= 0 {
		cfg.LockoutBackoff = DefaultLockoutBackoff
	}
	if cfg.AuthBackoff <= 0 {
		cfg.AuthBackoff = DefaultAuthBackoff
	}
	if cfg.LoginBackoff <= 0 {
		cfg.LoginBackoff = DefaultLoginBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AfterFunc == nil {
		cfg.AfterFunc = realAfterFunc
	}
	if cfg.RateLimits == nil {
		cfg.RateLimits = NewRateLimits(cfg.Now)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:     cfg,
		baseURL: base,
		names:   names,
		log:     log.With("infisical_identity", cfg.Auth.Identity()),
		static:  cfg.Auth.method() == MethodToken,
		slots:   make(chan struct{}, cfg.MaxInFlight),
		ctx:     ctx,
		cancel:  cancel,
		limits:  cfg.RateLimits,
		tel:     newInstruments(),

		transport: transport,
		idle:      idle,
	}
	// Every login and session makes an SDK client the same way: one that cannot be bounded fails here, not later.
	probe, err := c.newSDK()
	if err != nil {
		cancel()
		return nil, err
	}
	if c.static {
		probe.Auth().SetAccessToken(cfg.Auth.AccessToken)
		c.current.Store(&session{client: probe})
	}
	return c, nil
}

// checkBaseURL never quotes the URL, which may hold credentials.
func checkBaseURL(raw string, names namer) (string, error) {
	if raw == "" {
		return DefaultBaseURL, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s is not an http(s) URL such as %s", names.of(FieldBaseURL), DefaultBaseURL)
	}
	return strings.TrimRight(raw, "/"), nil
}

// newSDK returns an SDK client that does only what it is told: no background refresh, no cache, no retries of its
// own (its default retries transport errors for ~15s, out of reach of our deadlines) and no logs. Its requests go
// through c.transport (which also holds Config.CACert), each exchange ended UpstreamTimeout +
// lateGrace after it started, whether or not anyone still waits for it.
func (c *Client) newSDK() (sdk.InfisicalClientInterface, error) {
	client := sdk.NewInfisicalClient(c.ctx, sdk.Config{
		SiteUrl:          c.baseURL,
		AutoTokenRefresh: sdk.BoolPtr(false),
		SilentMode:       true,
		LogWriter:        io.Discard,
		RetryRequestsConfig: &sdk.RetryRequestsConfig{
			ExponentialBackoff: &sdk.ExponentialBackoffStrategy{MaxRetries: 0}, // resty: retry count 0 = one attempt
		},
	})
	if err := useTransport(client, c.transport, c.cfg.UpstreamTimeout+lateGrace); err != nil {
		return nil, err
	}
	return client, nil
}

func (c *Client) newSession(token string, ttl time.Duration) (*session, error) {
	client, err := c.newSDK()
	if err != nil {
		return nil, err
	}
	client.Auth().SetAccessToken(token)
	s := &session{client: client}
	if ttl > 0 {
		// Stop using a token shortly before Infisical would refuse it, so no read races its expiry.
		s.expiresAt = c.cfg.Now().Add(ttl - min(5*time.Second, ttl/10))
	}
	return s, nil
}

// Login logs in now unless a usable token is at hand; it returns the login error, or the last one while logins
// are paused after failures.
func (c *Client) Login(ctx context.Context) error {
	_, err := c.session(ctx, nil)
	return err
}

// Healthy returns the error of the last login, or nil if it succeeded or none was tried yet.
func (c *Client) Healthy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == nil {
		return nil
	}
	return c.lastErr
}

// Retire stops the background token refresh of a client that another one replaces, while reads already running on
// it finish; Close it once they have. A retired client never logs in on its own, so a rotated credential is not
// tried again behind the new client's back.
func (c *Client) Retire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired = true
	if c.stopRefresh != nil {
		c.stopRefresh()
	}
}

// Close stops the background refresh and any login in flight, and drops idle connections. Calls already abandoned
// after a timeout may still be running in the SDK; the transport ends them UpstreamTimeout + lateGrace after they
// started.
func (c *Client) Close() {
	c.cancel()
	c.idle.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopRefresh != nil {
		c.stopRefresh()
	}
}

// session returns a usable session other than stale, logging in (once for all concurrent callers) if needed.
func (c *Client) session(ctx context.Context, stale *session) (*session, error) {
	if s := c.current.Load(); s != nil && (c.static || (s != stale && s.usable(c.cfg.Now()))) {
		return s, nil
	}
	if err := c.paused(); err != nil {
		return nil, err
	}
	// The login's span joins the trace of the request that triggered it; requests that join a login in flight
	// find their wait in their own spans.
	parent := trace.SpanContextFromContext(ctx)
	ch := c.flight.DoChan("login", func() (s any, err error) {
		// singleflight re-raises a panic on a goroutine of its own, where nothing could recover it: the whole
		// process would die for one failed login.
		defer func() {
			if p := recover(); p != nil {
				s, err = nil, c.panicked("the login to Infisical", p)
			}
		}()
		// A login that finished between this caller's check above and its joining the flight has already stored
		// a usable session: one login serves every concurrent caller.
		if cur := c.current.Load(); cur != nil && cur != stale && cur.usable(c.cfg.Now()) {
			return cur, nil
		}
		return c.loginOnce(parent)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*session), nil
	case <-ctx.Done():
		return nil, &Error{Kind: KindTimeout, Message: "gave up waiting for the login to Infisical", Err: ctx.Err()}
	}
}

// paused returns the last login error while logins are backing off, so failing credentials cost a few login
// attempts a minute rather than one per request (and do not prolong a lockout).
func (c *Client) paused() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	wait := c.retryAt.Sub(c.cfg.Now())
	if c.lastErr == nil || wait <= 0 {
		return nil
	}
	e := *c.lastErr
	e.RetryAfter = wait
	return &e
}

// loginOnce logs in on a fresh SDK client. It runs detached from the callers that wait for it (they may give up;
// the login still completes for the next one), bounded by UpstreamTimeout and Close; only its span hangs under
// parent, the triggering request's span (invalid for background refreshes, which start their own trace).
func (c *Client) loginOnce(parent trace.SpanContext) (*session, error) {
	method := string(c.cfg.Auth.method())
	ctx, span := c.tel.tracer.Start(trace.ContextWithSpanContext(c.ctx, parent), "infisical.login", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("infisical.auth_method", method)))
	defer span.End()

	client, err := c.newSDK()
	if err != nil {
		e := &Error{Kind: KindUnavailable, Message: err.Error(), Err: err}
		c.record(ctx, span, routeLogin, e)
		return nil, e
	}
	cred, err := call(c, ctx, routeLogin, func() (sdk.MachineIdentityCredential, error) { return c.cfg.Auth.login(client) })
	if err == nil && cred.AccessToken == "" {
		err = &Error{Kind: KindAuth, Message: "Infisical answered the login without an access token " + c.names.notInfisical()}
	}
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, &Error{Kind: KindUnavailable, Message: "the Infisical client is closed", Err: c.ctx.Err()}
		}
		e, ok := asError(classify(err, opLogin, c.names))
		if !ok {
			e = &Error{Kind: KindAuth, Message: err.Error(), Err: err}
		}
		if errors.Is(e, errBusy) || errors.Is(e, ErrPaused) {
			// Our own bound on calls in flight, or a 429's pause, kept the login from being sent: Infisical saw no
			// failure, and a back-off would only keep the next caller from logging in once it may.
			return nil, e
		}
		c.record(ctx, span, routeLogin, e)
		c.loginFailed(e)
		return nil, e
	}
	c.record(ctx, span, routeLogin, nil)
	ttl := time.Duration(cred.ExpiresIn) * time.Second
	s, err := c.newSession(cred.AccessToken, ttl)
	if err != nil {
		e := &Error{Kind: KindUnavailable, Message: err.Error(), Err: err}
		c.record(ctx, span, routeLogin, e)
		return nil, e
	}
	c.current.Store(s)
	c.loginSucceeded(ttl)
	c.log.Debug("logged in to Infisical", "auth_method", method, "expires_in", ttl)
	return s, nil
}

func (c *Client) loginFailed(e *Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures++
	wait := loginWait(c.cfg, e, c.failures)
	c.retryAt = c.cfg.Now().Add(wait)
	c.lastErr = e
	c.log.Warn("Infisical login failed", "auth_method", string(c.cfg.Auth.method()), "error", e.Error(),
		"failures_in_a_row", c.failures, "next_attempt_in", wait.String())
}

// loginWait is how long to pause logins after the failures-th failed login in a row, which failed with e.
func loginWait(cfg Config, e *Error, failures int) time.Duration {
	base, ceiling := cfg.LoginBackoff, loginBackoffCap
	if e.Kind == KindAuth && e.Status != 0 {
		// Infisical answered and rejected the login: each such failure counts toward the lockout.
		base, ceiling = cfg.AuthBackoff, authBackoffCap
	}
	wait := base
	for i := 1; i < failures && wait < ceiling; i++ {
		wait *= 2
	}
	wait = min(wait, max(base, ceiling))
	if e.Kind == KindRateLimited {
		wait = max(wait, e.RetryAfter)
	}
	if strings.Contains(e.Message, "temporarily locked") {
		// Every attempt during a lockout fails and may extend it: wait it out.
		wait = max(wait, cfg.LockoutBackoff)
	}
	return wait
}

func (c *Client) loginSucceeded(ttl time.Duration) {
	c.mu.Lock()
	c.failures, c.retryAt, c.lastErr = 0, time.Time{}, nil
	c.mu.Unlock()
	if ttl > 0 {
		c.scheduleRefresh(ttl * 2 / 3)
	}
}

func (c *Client) scheduleRefresh(after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil || c.retired {
		return
	}
	if c.stopRefresh != nil {
		c.stopRefresh()
	}
	c.stopRefresh = c.cfg.AfterFunc(after, c.refresh)
}

// refresh replaces the current token before it expires (by logging in again: the SDK offers no renew that could be
// bounded by a deadline). While it fails, it retries at the login back-off as long as the current token lasts;
// after that, the next read logs in itself.
func (c *Client) refresh() {
	old := c.current.Load()
	_, err := c.session(c.ctx, old)
	if err == nil || c.ctx.Err() != nil {
		return
	}
	if s := c.current.Load(); s != nil && s.usable(c.cfg.Now()) {
		c.mu.Lock()
		wait := c.retryAt.Sub(c.cfg.Now())
		c.mu.Unlock()
		// A paused login set no back-off: try again when the pause ends.
		wait = max(wait, c.limits.Wait(c.baseURL))
		c.scheduleRefresh(max(wait, 10*time.Millisecond))
	}
}

// GetSecret reads one secret. It retries network errors, 5xx and 429 within ctx's deadline, logs in again once if
// Infisical refuses the token, and returns an error wrapping ErrNotFound when the secret, version, folder or
// environment does not exist; other failures are *Error.
func (c *Client) GetSecret(ctx context.Context, ref SecretRef) (Secret, error) {
	opts, err := ref.options()
	if err != nil {
		return Secret{}, err
	}
	return retrying(c, ctx, "read", func(s *session, attempt int) (Secret, error) {
		return c.read(ctx, s, opts, attempt)
	})
}

// retrying runs one Infisical call (op, on a session) up to MaxAttempts times within ctx: it retries network
// errors, 5xx and a 429 whose wait fits, logs in again once if Infisical refuses the token, and fails at once while
// a 429 pauses calls. Errors that are not *Error (not found, not modified) end it as they are.
func retrying[T any](c *Client, ctx context.Context, what string, op func(s *session, attempt int) (T, error)) (T, error) {
	var (
		zero     T
		s        *session
		err      error
		relogged bool
	)
	for attempt := 1; ; attempt++ {
		if s == nil {
			if s, err = c.session(ctx, nil); err != nil {
				return zero, err
			}
		}
		v, err := op(s, attempt)
		if err == nil {
			return v, nil
		}
		e, ok := asError(err)
		if !ok {
			return zero, err // not found, not modified
		}
		var wait time.Duration
		switch {
		case e.tokenRejected() && !c.static && !relogged:
			relogged = true
			c.log.Debug("Infisical refused the access token; logging in again", "status", e.Status, "req_id", e.RequestID)
			if s, err = c.session(ctx, s); err != nil {
				return zero, err
			}
			continue
		case errors.Is(e, ErrPaused):
			return zero, e // another call's 429 paused calls: fail at once rather than add to the limit
		case e.Kind == KindRateLimited:
			// The pause this 429 started (or a longer one) ends before the next attempt may go.
			wait = max(e.RetryAfter, c.limits.Wait(c.baseURL), backoff(attempt))
		case e.retryable():
			wait = backoff(attempt)
		default:
			return zero, e
		}
		if attempt >= MaxAttempts || !fits(ctx, wait) {
			return zero, e
		}
		c.log.Debug("retrying Infisical "+what, "attempt", attempt, "wait", wait.String(), "error", e.Error())
		if !c.sleep(ctx, wait) {
			return zero, e
		}
	}
}

func (c *Client) read(ctx context.Context, s *session, opts sdk.RetrieveSecretOptions, attempt int) (Secret, error) {
	ctx, span := c.tel.tracer.Start(ctx, "infisical.read_secret", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.Int("infisical.attempt", attempt)))
	defer span.End()

	raw, callErr := call(c, ctx, routeGet, func() (sdk.Secret, error) { return s.client.Secrets().Retrieve(opts) })
	var err error
	switch {
	case callErr != nil:
		err = classify(callErr, opRead, c.names)
		// classify keeps only ErrNotFound of a 404; the span still wants its status and request id.
		var ae *sdk.APIError
		if errors.As(callErr, &ae) {
			span.SetAttributes(attribute.Int("http.response.status_code", ae.StatusCode))
			if ae.ReqId != "" {
				span.SetAttributes(attribute.String("infisical.request_id", ae.ReqId))
			}
		}
	case raw.SecretKey == "":
		// The SDK decodes nothing, without an error, when a 2xx answer is not JSON (e.g. a proxy's page).
		err = &Error{Kind: KindUnavailable, Message: "Infisical answered without a secret " + c.names.notInfisical()}
	case raw.SecretValue == hiddenValue:
		err = &Error{Kind: KindPermission, Message: "the identity may see this secret but not read its value"}
	}
	if errors.Is(err, ErrPaused) {
		return Secret{}, err // not sent: nothing to record
	}
	c.record(ctx, span, routeGet, err)
	if err != nil {
		return Secret{}, err
	}
	// Path and Environment are what Infisical said, never filled in from the request: with include_imports they
	// say where the value comes from, and the caller must know when Infisical did not say.
	return Secret{Name: raw.SecretKey, Value: raw.SecretValue, Path: raw.SecretPath, Environment: raw.Environment,
		Version: raw.Version}, nil
}

// record puts the outcome of one Infisical call on its span and counters, never a value or a token, and starts the
// rate-limit pause when Infisical answered 429.
func (c *Client) record(ctx context.Context, span trace.Span, r route, err error) {
	status := "200"
	if err != nil {
		status = "error"
		if errors.Is(err, ErrNotFound) {
			status = "404"
		}
		if e, ok := asError(err); ok {
			status = e.Kind.String()
			if e.Status != 0 {
				status = strconv.Itoa(e.Status)
			}
			if e.RequestID != "" {
				span.SetAttributes(attribute.String("infisical.request_id", e.RequestID))
			}
			if e.Status != 0 {
				span.SetAttributes(attribute.Int("http.response.status_code", e.Status))
			}
		}
		if !errors.Is(err, ErrNotFound) {
			span.SetStatus(codes.Error, err.Error())
		}
	} else {
		span.SetAttributes(attribute.Int("http.response.status_code", 200))
	}
	if e, ok := asError(err); ok {
		c.notePause(ctx, e)
	}
	st := attribute.String("status", status)
	c.tel.calls.Add(ctx, 1, metric.WithAttributes(r.attr(), st))
	if r == routeLogin {
		c.tel.logins.Add(ctx, 1, metric.WithAttributes(st))
	}
}

type result[T any] struct {
	v   T
	err error
}

// call runs fn, an SDK call that cannot be cancelled, in its own goroutine and waits for it until ctx ends or
// UpstreamTimeout passes. During a 429's pause it sends nothing and returns the pause as an error at once. A call
// given up on keeps running, and keeps its in-flight slot, until the SDK returns, which the transport bounds to
// UpstreamTimeout + lateGrace and MaxResponseBytes: so a hanging or endless Infisical holds at most MaxInFlight
// goroutines for that long, and beyond that calls wait for a slot as long as their deadline allows.
func call[T any](c *Client, ctx context.Context, r route, fn func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, &Error{Kind: KindTimeout, Message: "the deadline passed before the call to Infisical", Err: err}
	}
	if err := c.checkPause(ctx, r); err != nil {
		return zero, err
	}
	if err := c.acquire(ctx); err != nil {
		return zero, err
	}
	attemptCtx, cancel := context.WithTimeout(ctx, c.cfg.UpstreamTimeout)
	defer cancel()
	done := make(chan result[T], 1)
	go func() {
		defer func() { <-c.slots }()
		defer func() {
			if p := recover(); p != nil {
				done <- result[T]{err: c.panicked("the Infisical SDK", p)}
			}
		}()
		v, err := fn()
		done <- result[T]{v: v, err: err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-attemptCtx.Done():
		if err := ctx.Err(); err != nil {
			return zero, &Error{Kind: KindTimeout, Message: "the deadline passed before Infisical answered", Err: err}
		}
		return zero, &Error{Kind: KindTimeout, Message: "no answer within " + c.cfg.UpstreamTimeout.String(), Err: context.DeadlineExceeded}
	}
}

// acquire takes an in-flight slot. Slots free up as calls return, and background logins, detached fetches and
// abandoned calls hold some too, so a full bound is normal under load: wait for a slot until ctx ends (or, for a
// call without a deadline such as a background login, for UpstreamTimeout).
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.UpstreamTimeout)
		defer cancel()
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &Error{Kind: KindUnavailable, Err: errBusy, Message: fmt.Sprintf(
			"too many Infisical calls are still in flight (%d): earlier calls have not returned", cap(c.slots))}
	}
}

// panicked turns a recovered panic in what into an error, and logs it with its stack for the bug report.
func (c *Client) panicked(what string, p any) *Error {
	msg := what + " panicked: " + panicText(p)
	c.log.Error(msg, "stack", string(debug.Stack()))
	return &Error{Kind: KindUnavailable, Message: msg}
}

// panicText describes a panic without its value, which may hold anything (a token, a secret value): a runtime
// error's own text (nil dereference, index out of range), else only the value's type.
func panicText(p any) string {
	if re, ok := p.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("a value of type %T", p)
}

// sleep waits d on the client's clock; it reports false if ctx ended first.
func (c *Client) sleep(ctx context.Context, d time.Duration) bool {
	done := make(chan struct{})
	stop := c.cfg.AfterFunc(d, func() { close(done) })
	defer stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is the jittered exponential wait before read attempt+1: 100ms doubling to 2s, each drawn from [d/2, d].
func backoff(attempt int) time.Duration {
	d := min(retryBase<<min(attempt-1, 10), retryCap)
	return d/2 + rand.N(d/2+1)
}

// fits reports whether waiting d still leaves ctx time for another attempt. (Its deadline is real time, whatever
// the client's clock.)
func fits(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > d
}

func (r SecretRef) options() (sdk.RetrieveSecretOptions, error) {
	bad := func(msg string) (sdk.RetrieveSecretOptions, error) {
		return sdk.RetrieveSecretOptions{}, &Error{Kind: KindBadRequest, Message: msg}
	}
	switch {
	case r.ProjectID == "":
		return bad("no project id")
	case r.Environment == "":
		return bad("no environment")
	case strings.TrimSpace(r.Name) == "":
		return bad("no secret name")
	case strings.ContainsAny(r.Name, "/:") || strings.ContainsFunc(r.Name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		// Infisical refuses '/' and ':' in names; control characters would only reach it escaped, as a name no
		// one can have written in its UI.
		return bad(fmt.Sprintf("secret name %q may not contain '/', ':' or control characters (Infisical cannot hold it)", r.Name))
	case r.Name == "." || r.Name == "..":
		return bad(fmt.Sprintf("secret name %q may not contain only dots: it would name a folder in the URL path", r.Name))
	case r.Version < 0:
		return bad(fmt.Sprintf("secret version %d is negative", r.Version))
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return bad(fmt.Sprintf("secret path %q must start with '/'", path))
	}
	return sdk.RetrieveSecretOptions{
		// The SDK pastes the name into the URL path as it is: escape it, so that every character reaches Infisical
		// as part of the name and none ('?', '#', '%', ';', '&', '=') can end the path or add a parameter.
		SecretKey:              escapeName(r.Name),
		ProjectID:              r.ProjectID,
		Environment:            r.Environment,
		SecretPath:             path,
		Type:                   "shared",
		Version:                r.Version,
		ExpandSecretReferences: r.ExpandReferences,
		IncludeImports:         r.IncludeImports,
	}, nil
}

// escapeName percent-encodes every byte of a secret name but the unreserved characters of RFC 3986, stricter than
// url.PathEscape, which leaves '=', '&' and others that a server's router may read as more than a name.
func escapeName(name string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
