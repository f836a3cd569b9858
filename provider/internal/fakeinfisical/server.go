// Package fakeinfisical is an in-process Infisical API for tests: the routes the go-sdk calls (logins for every
// machine identity method, token renew/revoke, secret get and list), with the real server's validation rules,
// status codes and error envelope (see /work/shared/spec/infisical-api.md §2-3). Its own tests drive it with the
// official go-sdk, so code tested against it is tested against the real wire protocol.
//
// It keeps projects -> environments -> folders -> secrets with version history, identities with per-project access,
// tokens with a server-side expiry, the Universal Auth lockout, list ETags (If-None-Match answers 304) and, with
// WithRateLimit, Infisical Cloud's per-IP limit on secret reads. Tests steer it with knobs (SetSecret, HideValue,
// ExpireTokens, FailNext, Hang, Down, ...) and observe it with counters and a request log. It is safe for
// concurrent use.
//
// It is test support only and must never be linked into the shipped binary.
package fakeinfisical

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Route names one endpoint of the fake, for counters, failure injection and the request log.
type Route string

// The routes the fake serves. RouteAll matches every route in FailNext and Hang.
const (
	RouteAll                Route = "*"
	RouteUniversalAuthLogin Route = "login/universal-auth"
	RouteKubernetesLogin    Route = "login/kubernetes-auth"
	RouteAWSLogin           Route = "login/aws-auth"
	RouteGCPLogin           Route = "login/gcp-auth"
	RouteAzureLogin         Route = "login/azure-auth"
	RouteOIDCLogin          Route = "login/oidc-auth"
	RouteJWTLogin           Route = "login/jwt-auth"
	RouteRenew              Route = "token/renew"
	RouteRevoke             Route = "token/revoke"
	RouteGetSecret          Route = "secrets/get"
	RouteListSecrets        Route = "secrets/list"
)

// Login methods as they appear in the login URL (/api/v1/auth/{method}/login).
const (
	MethodUniversalAuth = "universal-auth"
	MethodKubernetes    = "kubernetes-auth"
	MethodAWS           = "aws-auth"
	MethodGCP           = "gcp-auth"
	MethodAzure         = "azure-auth"
	MethodOIDC          = "oidc-auth"
	MethodJWT           = "jwt-auth"
)

// Messages the real server sends, for tests to compare against.
const (
	MsgInvalidCredentials = "Invalid credentials"
	MsgLocked             = "This identity auth method is temporarily locked, please try again later"
	MsgTokenExpired       = "Your token has expired. Please re-authenticate."
	MsgTokenMissing       = "Token missing"
)

// Request is one entry of the request log.
type Request struct {
	Route    Route
	Method   string
	Path     string // decoded
	RawPath  string // as sent, percent-encoding kept
	Query    url.Values
	Time     time.Time
	Identity string // the identity the token or login body named; "" when unknown
	Status   int    // 0 while the request is still being served (e.g. hanging)
	ReqID    string
	// IfNoneMatch is the request's If-None-Match header: the ETag a client revalidates a listing with.
	IfNoneMatch string
}

// Option configures a Server.
type Option func(*Server)

// WithTokenTTL sets the access token TTL and max TTL logins hand out (whole seconds on the wire; 0 = never expires).
func WithTokenTTL(ttl, maxTTL time.Duration) Option {
	return func(s *Server) { s.ttl, s.maxTTL = ttl, maxTTL }
}

// WithRateLimit makes the secret routes (get and list) answer like Infisical Cloud past its per-IP limit: at most
// limit requests per window (every client here shares one IP), then 429 RateLimitExceeded "Rate limit exceeded.
// Please try again in N seconds" with a Retry-After header, until the window ends. The free plan is 120 a minute.
func WithRateLimit(limit int, window time.Duration) Option {
	return func(s *Server) { s.rateLimit, s.rateWindow = limit, window }
}

// WithLockout sets the Universal Auth lockout: threshold bad attempts within window lock the identity for duration.
// threshold 0 disables it.
func WithLockout(threshold int, window, duration time.Duration) Option {
	return func(s *Server) { s.lockThreshold, s.lockWindow, s.lockDuration = threshold, window, duration }
}

// WithClock makes the fake read the time from now (token expiry, lockouts, the rate-limit window, the request log)
// instead of the real clock: a test that injects the same manual clock into the client moves both together.
func WithClock(now func() time.Time) Option {
	return func(s *Server) { s.now = now }
}

// WithoutSecretPath makes single-secret answers omit secretPath, as older Infisical versions do.
func WithoutSecretPath() Option {
	return func(s *Server) { s.omitSecretPath = true }
}

type failure struct {
	status  int
	message string
	headers http.Header
}

// Server is the fake Infisical. URL is the site URL to give the SDK (it appends /api itself).
type Server struct {
	URL string

	reportf func(format string, args ...any) // where Down reports trouble: the test, or nowhere
	now     func() time.Time
	handler http.Handler
	useTLS  bool
	caPEM   string
	tlsCert *tlsMaterial

	life    sync.Mutex // serialises Down and Close; never held while handlers need mu
	ts      *httptest.Server
	retired []*httptest.Server
	addr    string
	closed  chan struct{}

	mu            sync.Mutex
	seq           int
	ttl, maxTTL   time.Duration
	lockThreshold int
	lockWindow    time.Duration
	lockDuration  time.Duration
	identities    map[string]*identity
	tokens        map[string]*token
	projects      map[string]*project
	counts        map[Route]int
	log           []*Request
	fails         map[Route][]failure
	hung          map[Route]bool
	hangChanged   chan struct{}

	omitSecretPath bool
	rateLimit      int           // secret requests per rateWindow; 0 = unlimited
	rateWindow     time.Duration //
	windowStart    time.Time     // start of the current rate-limit window
	windowCount    int           // secret requests in it
}

// New starts a plain-HTTP fake on 127.0.0.1 and stops it when the test ends.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := Start(opts...)
	if err != nil {
		tb.Fatalf("fakeinfisical: %v", err)
	}
	s.reportf = tb.Errorf
	tb.Cleanup(s.Close)
	return s
}

// NewTLS starts an HTTPS fake whose certificate is signed by a private CA made for this server; CACertPEM returns
// that CA so a client can be configured to trust it.
func NewTLS(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := start(true, opts)
	if err != nil {
		tb.Fatalf("fakeinfisical: %v", err)
	}
	s.reportf = tb.Errorf
	tb.Cleanup(s.Close)
	return s
}

// Start starts a plain-HTTP fake outside a test (e.g. for a demo); the caller must Close it.
func Start(opts ...Option) (*Server, error) { return start(false, opts) }

func start(useTLS bool, opts []Option) (*Server, error) {
	s := &Server{
		reportf:       func(string, ...any) {},
		now:           time.Now,
		closed:        make(chan struct{}),
		ttl:           2592000 * time.Second,
		maxTTL:        2592000 * time.Second,
		lockThreshold: 3,
		lockWindow:    30 * time.Second,
		lockDuration:  300 * time.Second,
		identities:    map[string]*identity{},
		tokens:        map[string]*token{},
		projects:      map[string]*project{},
		counts:        map[Route]int{},
		fails:         map[Route][]failure{},
		hung:          map[Route]bool{},
		hangChanged:   make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.handler = s.routes()
	if useTLS {
		m, err := newTLSMaterial()
		if err != nil {
			return nil, fmt.Errorf("make test CA: %w", err)
		}
		s.useTLS, s.tlsCert, s.caPEM = true, m, string(m.caPEM)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.addr = l.Addr().String()
	s.ts = s.serve(l)
	s.URL = s.ts.URL
	return s, nil
}

func (s *Server) serve(l net.Listener) *httptest.Server {
	ts := httptest.NewUnstartedServer(s.handler)
	// Clients that distrust the test CA are expected; their handshake errors are not news.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	_ = ts.Listener.Close()
	ts.Listener = l
	if s.useTLS {
		ts.TLS = s.tlsCert.serverConfig()
		ts.StartTLS()
	} else {
		ts.Start()
	}
	return ts
}

// CACertPEM returns the PEM of the private CA that signed a NewTLS server's certificate ("" for plain HTTP).
func (s *Server) CACertPEM() string { return s.caPEM }

// Close releases hanging requests and stops the server. It is idempotent; New and NewTLS register it with
// tb.Cleanup.
func (s *Server) Close() {
	s.life.Lock()
	defer s.life.Unlock()
	select {
	case <-s.closed:
		return
	default:
	}
	close(s.closed)
	if s.ts != nil {
		s.retired = append(s.retired, s.ts)
		s.ts = nil
	}
	for _, ts := range s.retired {
		ts.Close()
	}
}

// Down makes the server unreachable (true: listener closed, open connections cut, so clients see connection
// refused) or reachable again on the same address (false).
func (s *Server) Down(down bool) {
	s.life.Lock()
	defer s.life.Unlock()
	select {
	case <-s.closed:
		return
	default:
	}
	switch {
	case down && s.ts != nil:
		_ = s.ts.Listener.Close()
		s.ts.CloseClientConnections()
		s.retired = append(s.retired, s.ts)
		s.ts = nil
	case !down && s.ts == nil:
		l, err := net.Listen("tcp", s.addr)
		if err != nil {
			s.reportf("fakeinfisical: listen again on %s: %v", s.addr, err)
			return
		}
		s.ts = s.serve(l)
	}
}

// FailNext makes the next n requests to route (RouteAll: to any route) fail with status and an error envelope
// carrying message, plus the given headers (e.g. Retry-After). Calls queue up; n <= 0 clears route's queue.
func (s *Server) FailNext(route Route, n, status int, message string, headers http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.fails, route)
		return
	}
	for range n {
		s.fails[route] = append(s.fails[route], failure{status: status, message: message, headers: headers.Clone()})
	}
}

// Hang makes requests to route (RouteAll: any route) be accepted and never answered, until Hang(route, false) or
// the server closes; then the hanging requests are aborted (the client sees a broken connection).
func (s *Server) Hang(route Route, hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hung[route] = hang
	close(s.hangChanged)
	s.hangChanged = make(chan struct{})
}

// Count returns how many requests reached route (RouteAll: all routes).
func (s *Server) Count(route Route) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if route == RouteAll {
		n := 0
		for _, c := range s.counts {
			n += c
		}
		return n
	}
	return s.counts[route]
}

// Logins returns how many login requests (any method) reached the server.
func (s *Server) Logins() int {
	n := 0
	for _, r := range []Route{RouteUniversalAuthLogin, RouteKubernetesLogin, RouteAWSLogin, RouteGCPLogin,
		RouteAzureLogin, RouteOIDCLogin, RouteJWTLogin} {
		n += s.Count(r)
	}
	return n
}

// Reads returns how many single-secret reads reached the server.
func (s *Server) Reads() int { return s.Count(RouteGetSecret) }

// Lists returns how many list requests reached the server.
func (s *Server) Lists() int { return s.Count(RouteListSecrets) }

// Renewals returns how many token renewals reached the server.
func (s *Server) Renewals() int { return s.Count(RouteRenew) }

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.log))
	for i, r := range s.log {
		out[i] = *r // Query is shared: it is never mutated after logging
	}
	return out
}

// call is one request in flight.
type call struct {
	w        http.ResponseWriter
	r        *http.Request
	route    Route
	reqID    string
	entry    *Request
	status   int
	identity string
	server   *Server
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for method, route := range map[string]Route{
		MethodUniversalAuth: RouteUniversalAuthLogin, MethodKubernetes: RouteKubernetesLogin, MethodAWS: RouteAWSLogin,
		MethodGCP: RouteGCPLogin, MethodAzure: RouteAzureLogin, MethodOIDC: RouteOIDCLogin, MethodJWT: RouteJWTLogin,
	} {
		mux.Handle("POST /api/v1/auth/"+method+"/login", s.wrap(route, func(c *call) { s.login(c, method) }))
	}
	mux.Handle("POST /api/v1/auth/token/renew", s.wrap(RouteRenew, s.renew))
	mux.Handle("POST /api/v1/auth/token/revoke", s.wrap(RouteRevoke, s.revoke))
	mux.Handle("GET /api/v3/secrets/raw/{name}", s.wrap(RouteGetSecret, s.getSecret))
	mux.Handle("GET /api/v3/secrets/raw", s.wrap(RouteListSecrets, s.listSecrets))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, server: s, reqID: s.newReqID()}
		c.fail(http.StatusNotFound, "NotFound", "Route "+r.Method+":"+r.URL.Path+" not found")
	}))
	return mux
}

// wrap adds what every route shares: reqId, counting, the request log, hang and injected failures.
func (s *Server) wrap(route Route, fn func(*call)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seq++
		reqID := "req-" + strconv.Itoa(s.seq) + "-" + randomHex(4)
		rawPath, _, _ := strings.Cut(r.RequestURI, "?")
		entry := &Request{Route: route, Method: r.Method, Path: r.URL.Path, RawPath: rawPath, Query: r.URL.Query(),
			Time: s.now(), ReqID: reqID, IfNoneMatch: r.Header.Get("If-None-Match")}
		s.log = append(s.log, entry)
		s.counts[route]++
		retry := s.overLimitLocked(route, entry.Time)
		s.mu.Unlock()

		c := &call{w: w, r: r, route: route, reqID: reqID, entry: entry, server: s}
		s.waitWhileHung(c)
		if retry > 0 {
			secs := int((retry + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			c.fail(http.StatusTooManyRequests, "RateLimitExceeded", fmt.Sprintf("Rate limit exceeded. Please try again in %d seconds", secs))
			s.mu.Lock()
			entry.Status = c.status
			s.mu.Unlock()
			return
		}
		if f, ok := s.takeFailure(route); ok {
			for k, vs := range f.headers {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			c.fail(f.status, errorName(f.status), f.message)
			s.mu.Lock()
			entry.Status = c.status
			s.mu.Unlock()
			return
		}
		fn(c)
		s.mu.Lock()
		entry.Status, entry.Identity = c.status, c.identity
		s.mu.Unlock()
	})
}

// overLimitLocked counts a request against WithRateLimit and returns how long until its window ends when the
// request is over the limit (0 when it may be served).
func (s *Server) overLimitLocked(route Route, now time.Time) time.Duration {
	if s.rateLimit <= 0 || (route != RouteGetSecret && route != RouteListSecrets) {
		return 0
	}
	if s.windowStart.IsZero() || now.Sub(s.windowStart) >= s.rateWindow {
		s.windowStart, s.windowCount = now, 0
	}
	s.windowCount++
	if s.windowCount <= s.rateLimit {
		return 0
	}
	return s.windowStart.Add(s.rateWindow).Sub(now)
}

// Answered returns how many requests were answered with status (e.g. 429: how often the rate limit hit).
func (s *Server) Answered(status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.log {
		if r.Status == status {
			n++
		}
	}
	return n
}

func (s *Server) waitWhileHung(c *call) {
	for {
		s.mu.Lock()
		hung := s.hung[c.route] || s.hung[RouteAll]
		changed := s.hangChanged
		s.mu.Unlock()
		if !hung {
			return
		}
		select {
		case <-changed:
		case <-s.closed:
			panic(http.ErrAbortHandler) // cut the connection without an answer, as a dying server would
		case <-c.r.Context().Done():
			panic(http.ErrAbortHandler)
		}
	}
}

func (s *Server) takeFailure(route Route) (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range []Route{route, RouteAll} {
		if q := s.fails[r]; len(q) > 0 {
			s.fails[r] = q[1:]
			return q[0], true
		}
	}
	return failure{}, false
}

func (s *Server) newReqID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return "req-" + strconv.Itoa(s.seq) + "-" + randomHex(4)
}

// json writes v with the server's content type; the SDK silently decodes nothing without it.
func (c *call) json(status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"message":"marshal failed"}`)
	}
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body)
	c.status = status
}

// fail writes Infisical's error envelope; message is a string, or the issue list of a 422.
func (c *call) fail(status int, errName string, message any) {
	c.json(status, map[string]any{"reqId": c.reqID, "statusCode": status, "message": message, "error": errName})
}

func errorName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "UnauthorizedError"
	case http.StatusForbidden:
		return "PermissionDenied"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusUnprocessableEntity:
		return "ValidationFailure"
	case http.StatusTooManyRequests:
		return "RateLimitExceeded"
	case http.StatusGatewayTimeout:
		return "GatewayTimeoutError"
	case http.StatusInternalServerError:
		return "InternalServerError"
	default:
		return http.StatusText(status)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
