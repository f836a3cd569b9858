package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// Verified is what a Handler gets: the request with the protocol's mandatory checks done (request decrypted and
// decoded, both JWTs verified, policy parsed). Authorization is the handler's job.
type Verified struct {
	Request      *Request
	Entity, Host *wascap.Claims
	Policy       Policy
	Application  string // application name, or "" when the entity was started without wadm
}

// Handler fetches one secret. Returning an *Error (found with errors.As) sends it as is; any other error is sent as
// UpstreamError with err.Error() as the message, so it must not contain secret material.
type Handler interface {
	Get(ctx context.Context, v *Verified) (*Secret, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, v *Verified) (*Secret, error)

// Get calls f.
func (f HandlerFunc) Get(ctx context.Context, v *Verified) (*Secret, error) { return f(ctx, v) }

// ServerConfig configures a Server. Zero values take the defaults noted.
type ServerConfig struct {
	Prefix, APIVersion, Backend string // defaults: wasmcloud.secrets, v1alpha1, (required)
	QueueGroup                  string // default Prefix + "." + Backend
	XKey                        nkeys.KeyPair
	Handler                     Handler
	Logger                      *slog.Logger
	Workers                     int           // default 32 concurrent handlers
	QueueSize                   int           // requests waiting for a worker; default 64 per worker, beyond it "busy"
	Budget                      time.Duration // default 8s: every reply leaves before it
	// VerifiedTokens is how many entity and host JWTs are remembered once their signatures verified (see
	// wascap.Verifier): 0 takes wascap.DefaultVerifiedTokens, a negative number remembers none.
	VerifiedTokens int
	Now            func() time.Time
}

// Defaults for ServerConfig.
const (
	DefaultWorkers = 32
	DefaultBudget  = 8 * time.Second
)

// Server answers server_xkey and get for one backend name on a NATS queue group.
//
// Requests are handed from the NATS callback to a fixed pool of workers, so one slow upstream call does not stall
// the others. Every get gets a timer at arrival: whatever happens to it afterwards (waiting for a worker, a slow or
// stuck handler), a reply leaves before Budget, well inside the host's 10 s request timeout.
type Server struct {
	nc       *nats.Conn
	cfg      ServerConfig
	subjects Subjects
	pub      string
	log      *slog.Logger
	tracer   trace.Tracer
	tokens   *wascap.Verifier
	// getSpanOpts start every get's span, built once; the span starts as the request arrives.
	getSpanOpts []trace.SpanStartOption
	requests    metric.Int64Counter
	duration    metric.Float64Histogram
	// metricSets holds the attribute set of each operation and outcome seen (metricSet).
	metricMu   sync.RWMutex
	metricSets map[metricKey]metric.MeasurementOption

	// replyBy is when the timeout reply leaves; handlerBy is the handler's deadline, earlier so that a handler
	// that watches its context (for example to serve a stale cached value) still has time to be answered.
	replyBy, handlerBy time.Duration

	mu       sync.Mutex // guards sub, started, stopping and deaf
	sub      *nats.Subscription
	deaf     error // why the subscription receives nothing (NATS refused it), or nil
	started  bool
	stopping bool // Shutdown was called: Start must not subscribe any more

	// admit guards sends on queue against its closing: the delivery goroutine holds it shared to send, and stop
	// holds it exclusively to close the queue.
	admit  sync.RWMutex
	queue  chan *job
	closed bool // the queue is closed

	// abandoned is set when a shutdown could not wait any longer: later deliveries are refused at once.
	abandoned atomic.Bool

	workers  sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{}

	// pending holds every get not yet finished, so that a shutdown that cannot wait for them still answers them.
	pendingMu sync.Mutex
	pending   map[*job]struct{}
}

// NewServer checks cfg and fills in defaults. Call Start to subscribe.
func NewServer(nc *nats.Conn, cfg ServerConfig) (*Server, error) {
	if nc == nil {
		return nil, errors.New("secrets server: no NATS connection")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = DefaultAPIVersion
	}
	if err := checkSubject(cfg.Prefix, true); err != nil {
		return nil, fmt.Errorf("secrets server: prefix %q: %w", cfg.Prefix, err)
	}
	if err := checkSubject(cfg.APIVersion, false); err != nil {
		return nil, fmt.Errorf("secrets server: API version %q: %w", cfg.APIVersion, err)
	}
	if cfg.Backend == "" {
		return nil, errors.New("secrets server: backend name is required")
	}
	if err := checkSubject(cfg.Backend, false); err != nil {
		return nil, fmt.Errorf("secrets server: backend name %q: %w", cfg.Backend, err)
	}
	if cfg.QueueGroup == "" {
		cfg.QueueGroup = cfg.Prefix + "." + cfg.Backend
	}
	if cfg.Handler == nil {
		return nil, errors.New("secrets server: handler is required")
	}
	if cfg.XKey == nil {
		return nil, errors.New("secrets server: server xkey is required")
	}
	pub, err := cfg.XKey.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("secrets server: server xkey: %w", err)
	}
	if nkeys.Prefix(pub) != nkeys.PrefixByteCurve {
		return nil, fmt.Errorf("secrets server: server xkey %s is not a curve (X) key", pub)
	}
	if _, err := cfg.XKey.PrivateKey(); err != nil {
		return nil, fmt.Errorf("secrets server: server xkey has no private key (load it from a seed): %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.QueueSize <= 0 {
		// Requests beyond the workers wait here, each with its reply timer running from its arrival. enqueue refuses
		// payloads over MaxPayload (64 KiB) and headers over MaxHeaderBytes (8 KiB) before they are queued, and
		// NATS bounds subjects (4 KiB control lines), so the default holds at most about 150 MiB of requests.
		cfg.QueueSize = 64 * cfg.Workers
	}
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.VerifiedTokens == 0 {
		cfg.VerifiedTokens = wascap.DefaultVerifiedTokens
	}
	margin := min(250*time.Millisecond, cfg.Budget/4)
	meter := otel.Meter(telemetry.InstrumentationName)
	requests, err := meter.Int64Counter("secrets.requests",
		metric.WithDescription("Secrets protocol requests by operation and outcome"))
	if err != nil {
		return nil, fmt.Errorf("secrets server: metric: %w", err)
	}
	duration, err := meter.Float64Histogram("secrets.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a request's arrival to its reply"))
	if err != nil {
		return nil, fmt.Errorf("secrets server: metric: %w", err)
	}
	return &Server{
		nc:       nc,
		cfg:      cfg,
		subjects: NewSubjects(cfg.Prefix, cfg.APIVersion, cfg.Backend),
		pub:      pub,
		log:      cfg.Logger.With("backend", cfg.Backend),
		tracer:   otel.Tracer(telemetry.InstrumentationName),
		tokens:   wascap.NewVerifier(cfg.VerifiedTokens),
		getSpanOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("secrets.backend", cfg.Backend))},
		requests:  requests,
		duration:  duration,
		replyBy:   cfg.Budget - margin,
		handlerBy: cfg.Budget - 2*margin,
		queue:     make(chan *job, cfg.QueueSize),
		stopped:   make(chan struct{}),
		pending:   map[*job]struct{}{},

		metricSets: map[metricKey]metric.MeasurementOption{},
	}, nil
}

// checkSubject rejects what would break the subject grammar: empty tokens, wildcards, whitespace, and dots where a
// single token is required.
func checkSubject(s string, dotsOK bool) error {
	if s == "" {
		return errors.New("empty")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return errors.New("empty subject token")
		}
		if !dotsOK && tok != s {
			return errors.New("must be a single subject token (no dots)")
		}
		if strings.ContainsAny(tok, "*> \t\r\n") {
			return errors.New("contains a wildcard or whitespace")
		}
	}
	return nil
}

// PublicXKey is the server's public curve key, as returned by server_xkey.
func (s *Server) PublicXKey() string { return s.pub }

// Subject is the subscription subject, {prefix}.{version}.{backend}.>.
func (s *Server) Subject() string { return s.subjects.All() }

// Start queue-subscribes and starts the workers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("secrets server: already shut down")
	}
	if s.started {
		return errors.New("secrets server: already started")
	}
	sub, err := s.nc.QueueSubscribe(s.Subject(), s.cfg.QueueGroup, s.onMsg)
	if err != nil {
		return fmt.Errorf("secrets server: subscribe %s: %w", s.Subject(), err)
	}
	// The callback only enqueues, so the pending list stays short; generous limits keep bursts from being dropped
	// as a slow consumer, which would leave hosts waiting for their timeout.
	if err := sub.SetPendingLimits(64*1024, 128*1024*1024); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("secrets server: pending limits: %w", err)
	}
	s.sub, s.started = sub, true
	s.deaf = s.checkSubscribed()
	if s.deaf != nil {
		s.log.Error("the secrets subscription receives nothing: give these NATS credentials the right to subscribe "+
			"to it (hosts send requests on their control connection's account)", "error", s.deaf)
	}
	for range s.cfg.Workers {
		s.workers.Add(1)
		go s.work()
	}
	s.log.Info("secrets server listening", "subject", s.Subject(), "queue_group", s.cfg.QueueGroup,
		"server_xkey", s.pub, "workers", s.cfg.Workers)
	return nil
}

// subscribeCheck bounds the round trip that tells whether NATS accepted the subscription.
const subscribeCheck = 2 * time.Second

// checkSubscribed asks NATS for a round trip after subscribing: a server that refuses the subscription (a
// permissions violation) says so before it answers, and nats.go only reports it asynchronously.
func (s *Server) checkSubscribed() error {
	if err := s.nc.FlushTimeout(subscribeCheck); err != nil {
		return nil // cannot tell now (e.g. reconnecting); the subscription is re-sent on reconnect
	}
	err := s.nc.LastError()
	if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+s.Subject()+`"`) {
		return fmt.Errorf("NATS refused the subscription to %s: %w", s.Subject(), err)
	}
	return nil
}

// Receiving reports why the server cannot receive requests (NATS refused its subscription), or nil.
func (s *Server) Receiving() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deaf
}

// Shutdown stops taking requests (draining the subscription so queued messages still get answered) and waits for the
// in-flight ones. If ctx ends first, every request still unanswered gets an UpstreamError at once, since the process
// is about to go and a host would otherwise wait out its 10 s; then it returns ctx's error. It is safe to call more
// than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { go s.stop() })
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		s.abandoned.Store(true)
		s.answerPending(shuttingDown)
		return fmt.Errorf("secrets server shutdown: %w", ctx.Err())
	}
}

const shuttingDown = "the secrets backend is shutting down"

func (s *Server) track(j *job) {
	s.pendingMu.Lock()
	s.pending[j] = struct{}{}
	s.pendingMu.Unlock()
}

func (s *Server) untrack(j *job) {
	s.pendingMu.Lock()
	delete(s.pending, j)
	s.pendingMu.Unlock()
}

func (s *Server) answerPending(why string) {
	s.pendingMu.Lock()
	jobs := make([]*job, 0, len(s.pending))
	for j := range s.pending {
		jobs = append(jobs, j)
	}
	s.pendingMu.Unlock()
	e := NewError(KindUpstreamError, why)
	for _, j := range jobs {
		if sent, err := j.reply(s.nc, s.errorMsg(j.msg.Reply, e), string(e.Kind), false); sent && err != nil {
			s.log.Warn("secrets: cannot send a reply", "error", err)
		}
	}
	if len(jobs) > 0 {
		s.log.Warn("secrets: answered requests still in flight at shutdown", "count", len(jobs))
		// Short: the caller's time is already up, and the process exits next.
		_ = s.nc.FlushTimeout(30 * time.Millisecond)
	}
}

func (s *Server) stop() {
	defer close(s.stopped)
	s.mu.Lock()
	s.stopping = true
	sub := s.sub
	s.mu.Unlock()
	if sub != nil {
		closed := sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			_ = sub.Unsubscribe()
		} else {
			// Draining only flushes callbacks that enqueue, so it is quick; the cap guards against a connection
			// that never acknowledges it.
			select {
			case <-closed:
			case <-time.After(s.cfg.Budget):
				_ = sub.Unsubscribe()
			}
		}
	}
	s.admit.Lock()
	s.closed = true
	close(s.queue)
	s.admit.Unlock()
	s.workers.Wait()
	s.log.Info("secrets server stopped")
}

// onMsg runs on the subscription's single delivery goroutine, so it never blocks.
func (s *Server) onMsg(msg *nats.Msg) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("secrets: panic while dispatching a message", "panic", panicText(r), "stack", string(debug.Stack()))
		}
	}()
	if msg.Reply == "" {
		s.log.Debug("secrets: ignoring a message without a reply subject", "subject", msg.Subject)
		return
	}
	op, _ := strings.CutPrefix(msg.Subject, s.subjects.base+".")
	switch op {
	case OpGet:
		s.enqueue(msg)
	case OpServerXKey:
		s.serveXKey(msg)
	default:
		s.unknownOp(msg, op)
	}
}

func (s *Server) serveXKey(msg *nats.Msg) {
	start := time.Now()
	ctx := telemetry.Extract(context.Background(), msg.Header)
	_, span := s.tracer.Start(ctx, "secrets server_xkey", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("secrets.backend", s.cfg.Backend)))
	defer span.End()
	outcome := "ok"
	if err := s.nc.Publish(msg.Reply, []byte(s.pub)); err != nil {
		outcome = "publish_failed"
		span.SetStatus(codes.Error, err.Error())
		s.log.Warn("secrets: cannot reply to server_xkey", "error", err)
	} else {
		s.log.Debug("secrets: served server_xkey")
	}
	span.SetAttributes(attribute.String("secrets.outcome", outcome))
	s.record("server_xkey", outcome, time.Since(start))
}

func (s *Server) unknownOp(msg *nats.Msg, op string) {
	start := time.Now()
	e := NewError(KindInvalidRequest, "")
	if err := s.publishError(msg.Reply, e); err != nil {
		s.log.Warn("secrets: cannot reply to an unknown operation", "error", err)
	}
	s.log.Warn("secrets: unknown operation", "op", truncate(op, 64), "outcome", string(e.Kind))
	s.record("unknown", string(e.Kind), time.Since(start))
}

// job is one get request on its way through the queue and a worker.
type job struct {
	msg     *nats.Msg
	arrived time.Time
	ctx     context.Context // carries the span
	span    trace.Span
	timer   *time.Timer

	mu        sync.Mutex // guards the fields below; the reply goes out exactly once
	done      bool
	outcome   string
	repliedAt time.Time
	timedOut  bool
}

// reply publishes out unless a reply already left; it reports whether this call sent it.
func (j *job) reply(nc *nats.Conn, out *nats.Msg, outcome string, timedOut bool) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.done {
		return false, nil
	}
	j.done, j.outcome, j.timedOut, j.repliedAt = true, outcome, timedOut, time.Now()
	return true, nc.PublishMsg(out)
}

func (j *job) state() (done bool, outcome string, repliedAt time.Time, timedOut bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.done, j.outcome, j.repliedAt, j.timedOut
}

func (s *Server) enqueue(msg *nats.Msg) {
	j := &job{msg: msg, arrived: time.Now()}
	s.track(j)
	j.ctx, j.span = s.tracer.Start(telemetry.Extract(context.Background(), msg.Header), "secrets get", s.getSpanOpts...)
	j.timer = time.AfterFunc(s.replyBy, func() { s.timeout(j) })
	if e, reason := tooLarge(msg); e != nil {
		s.refuse(j, e, reason)
		return
	}

	// Never block this goroutine: a request held here would wait uncounted in the subscription's pending list, and
	// its reply could leave after the host has given up. Past the queue, answering "busy" at once is kinder.
	s.admit.RLock()
	refuse := ""
	switch {
	case s.closed || s.abandoned.Load():
		refuse = shuttingDown
	default:
		select {
		case s.queue <- j:
		default:
			refuse = fmt.Sprintf("server busy: %d requests waiting for a worker", cap(s.queue))
		}
	}
	s.admit.RUnlock()
	if refuse != "" {
		s.refuse(j, NewError(KindUpstreamError, refuse), refuse)
	}
}

// tooLarge refuses a request whose payload or headers exceed the limits, so that none waits in the queue.
func tooLarge(msg *nats.Msg) (*Error, string) {
	if len(msg.Data) > MaxPayload {
		return NewError(KindInvalidPayload, ""), fmt.Sprintf("payload is %d bytes, over the %d limit", len(msg.Data), MaxPayload)
	}
	size := 0
	for k, vs := range msg.Header {
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	if size > MaxHeaderBytes {
		return NewError(KindInvalidHeaders, ""), fmt.Sprintf("headers are %d bytes, over the %d limit", size, MaxHeaderBytes)
	}
	return nil, ""
}

// refuse answers a request at once, without a worker.
func (s *Server) refuse(j *job, e *Error, reason string) {
	j.timer.Stop()
	if _, err := j.reply(s.nc, s.errorMsg(j.msg.Reply, e), string(e.Kind), false); err != nil {
		s.log.Warn("secrets: cannot send a reply", "error", err)
	}
	s.finish(j, &reqInfo{}, result{err: e, reason: reason, level: slog.LevelWarn})
}

// timeout answers a request that has no reply yet when its budget is nearly spent.
func (s *Server) timeout(j *job) {
	e := NewError(KindUpstreamError, fmt.Sprintf("timed out after %s", s.replyBy.Round(time.Millisecond)))
	if sent, err := j.reply(s.nc, s.errorMsg(j.msg.Reply, e), string(e.Kind), true); sent && err != nil {
		s.log.Warn("secrets: cannot send the timeout reply", "error", err)
	}
}

func (s *Server) work() {
	defer s.workers.Done()
	for j := range s.queue {
		s.process(j)
	}
}

// reqInfo is what the log line and span say about a request, filled in as the pipeline learns it.
type reqInfo struct {
	req          *Request
	entity, host *wascap.Claims
	annotations  *annotations
}

// result is the pipeline's answer: a reply message, or an error to send.
type result struct {
	reply  *nats.Msg // success reply (sealed, with the response xkey header)
	err    *Error
	reason string     // why it failed, for the log; never secret material
	level  slog.Level // log level of the request line
	queued bool       // never reached a worker before its budget ran out
}

func (s *Server) process(j *job) {
	defer j.timer.Stop()
	info := &reqInfo{}
	if done, _, _, _ := j.state(); done {
		// It waited in the queue past its budget and was already answered.
		s.finish(j, info, result{queued: true, level: slog.LevelWarn})
		return
	}
	ctx, cancel := context.WithDeadline(j.ctx, j.arrived.Add(s.handlerBy))
	defer cancel()
	ctx, info.annotations = withAnnotations(ctx)
	res := s.safeGet(ctx, j.msg, info)

	out, outcome := res.reply, "ok"
	if res.err != nil {
		out, outcome = s.errorMsg(j.msg.Reply, res.err), string(res.err.Kind)
	}
	if _, err := j.reply(s.nc, out, outcome, false); err != nil {
		s.log.Warn("secrets: cannot send a reply", "error", err)
	}
	s.finish(j, info, res)
}

// safeGet runs the pipeline and turns a panic into an error reply.
func (s *Server) safeGet(ctx context.Context, msg *nats.Msg, info *reqInfo) (res result) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("secrets: panic while handling get", "panic", panicText(r), "stack", string(debug.Stack()))
			res = result{err: NewError(KindOther, "internal error"), reason: "panic", level: slog.LevelError}
		}
	}()
	return s.get(ctx, msg, info)
}

func bad(kind ErrorKind, msg, reason string) result {
	return result{err: NewError(kind, msg), reason: reason, level: slog.LevelWarn}
}

// get is the protocol pipeline; the order of the checks decides which error a malformed request gets.
func (s *Server) get(ctx context.Context, msg *nats.Msg, info *reqInfo) result {
	// Payload and header sizes were checked on arrival (tooLarge).
	if len(msg.Header) == 0 {
		return bad(KindInvalidHeaders, "", "request has no headers")
	}
	hostKey, ok := headerValue(msg.Header, HostXkeyHeader)
	if !ok {
		return bad(KindInvalidHeaders, "", "request has no "+HostXkeyHeader+" header")
	}
	if _, err := nkeys.FromPublicKey(hostKey); err != nil || nkeys.Prefix(hostKey) != nkeys.PrefixByteCurve {
		return bad(KindInvalidXKey, "", HostXkeyHeader+" is not a public curve key")
	}
	if len(msg.Data) == 0 {
		return bad(KindInvalidPayload, "", "empty payload")
	}
	body, err := s.cfg.XKey.Open(msg.Data, hostKey)
	if err != nil {
		return bad(KindDecryptionError, "", "cannot open the request with the server xkey (a host that cached an older server xkey?): "+err.Error())
	}
	req, werr := decodeRequest(body)
	if werr != nil {
		return result{err: werr, reason: "request body is not a valid SecretRequest", level: slog.LevelWarn}
	}
	info.req = req
	now := s.cfg.Now()
	entity, err := s.tokens.ParseEntity(req.Context.EntityJWT, now)
	if err != nil {
		return bad(KindInvalidEntityJWT, err.Error(), "entity JWT rejected")
	}
	info.entity = entity
	host, err := s.tokens.ParseHost(req.Context.HostJWT, now)
	if err != nil {
		return bad(KindInvalidHostJWT, err.Error(), "host JWT rejected")
	}
	info.host = host
	v := &Verified{Request: req, Entity: entity, Host: host}
	var policy string
	if app := req.Context.Application; app != nil {
		policy = app.Policy
		if app.Name != nil {
			v.Application = *app.Name
		}
	}
	if v.Policy, err = ParsePolicy(policy); err != nil {
		return bad(KindPolicyError, err.Error(), "policy rejected")
	}

	sec, err := s.cfg.Handler.Get(ctx, v)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e == nil {
			e = NewError(KindUpstreamError, err.Error())
		}
		level := slog.LevelInfo
		if e.Kind == KindUpstreamError || e.Kind == KindOther {
			level = slog.LevelWarn
		}
		return result{err: e, reason: e.Error(), level: level}
	}
	if sec == nil {
		return result{err: NewError(KindOther, "backend returned no secret"), reason: "handler returned nil", level: slog.LevelError}
	}
	if err := sec.check(); err != nil {
		return result{err: NewError(KindOther, "backend returned a secret without a value"), reason: err.Error(), level: slog.LevelError}
	}
	reply, err := s.seal(msg.Reply, sec, hostKey)
	if err != nil {
		return result{err: NewError(KindEncryptionError, ""), reason: err.Error(), level: slog.LevelError}
	}
	return result{reply: reply, level: slog.LevelInfo}
}

// seal encrypts the response with a fresh curve key, so that the reply can only be read with the host's
// single-use request key.
func (s *Server) seal(reply string, sec *Secret, hostKey string) (*nats.Msg, error) {
	body, err := encodeJSON(Response{Secret: sec})
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	rk, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("response xkey: %w", err)
	}
	defer rk.Wipe()
	rkPub, err := rk.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("response xkey: %w", err)
	}
	sealed, err := rk.Seal(body, hostKey)
	clear(body)
	if err != nil {
		return nil, fmt.Errorf("seal response: %w", err)
	}
	out := nats.NewMsg(reply)
	out.Header.Set(ResponseXkeyHeader, rkPub)
	out.Data = sealed
	return out, nil
}

// errorMsg is an error reply: plain JSON without the response xkey header, which is how the host tells it apart.
func (s *Server) errorMsg(reply string, e *Error) *nats.Msg {
	body, err := encodeJSON(Response{Error: e})
	if err != nil {
		// Unreachable for our own types; still answer with something the host can decode.
		body = []byte(`{"error":{"Other":"cannot encode error"}}`)
	}
	return &nats.Msg{Subject: reply, Data: body}
}

func (s *Server) publishError(reply string, e *Error) error {
	return s.nc.PublishMsg(s.errorMsg(reply, e))
}

// finish writes the request's log line, completes its span and records metrics. It reports what was actually sent,
// which differs from res when the timeout reply won.
func (s *Server) finish(j *job, info *reqInfo, res result) {
	s.untrack(j)
	_, outcome, repliedAt, timedOut := j.state()
	if repliedAt.IsZero() {
		repliedAt = time.Now()
	}
	latency := repliedAt.Sub(j.arrived)

	level := res.level
	reason := res.reason
	if timedOut {
		level = max(level, slog.LevelWarn)
		budget := s.replyBy.Round(time.Millisecond)
		if res.queued {
			reason = fmt.Sprintf("waited for a worker longer than %s", budget)
		} else {
			late := "ok"
			if res.err != nil {
				late = string(res.err.Kind)
			}
			reason = fmt.Sprintf("no result within %s; the late result (%s) was dropped", budget, late)
		}
	}
	var buf [8]slog.Attr
	annotated := buf[:0]
	if info.annotations != nil {
		annotated = info.annotations.appendTo(annotated)
	}
	s.logGet(j.ctx, level, info, outcome, latency, annotated, reason)
	if j.span.IsRecording() {
		j.span.SetAttributes(spanAttributes(info, outcome, annotated)...)
		if outcome != "ok" {
			j.span.SetStatus(codes.Error, outcome)
		}
	}
	j.span.End(trace.WithTimestamp(repliedAt))
	s.record("get", outcome, latency)
}

// logGet writes the request's log line. It goes to the handler directly: slog.Logger would also record the caller's
// program counter, a stack walk per request that no handler here prints.
func (s *Server) logGet(ctx context.Context, level slog.Level, info *reqInfo, outcome string, latency time.Duration,
	annotated []slog.Attr, reason string) {
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	var buf [24]slog.Attr // enough for every attribute below without growing
	attrs := append(buf[:0], slog.String("op", "get"))
	if e := info.entity; e != nil {
		attrs = append(attrs, slog.String("entity", e.Subject), slog.String("entity_name", e.Name),
			slog.String("entity_kind", e.Kind.String()), slog.String("issuer", e.Issuer))
	}
	if host := info.host; host != nil {
		attrs = append(attrs, slog.String("host", host.Subject))
	}
	if req := info.req; req != nil {
		attrs = append(attrs, slog.String("application", applicationName(req)), slog.String("key", req.Key))
		if req.Field != nil {
			attrs = append(attrs, slog.String("field", *req.Field))
		}
		if req.Version != nil {
			attrs = append(attrs, slog.String("version", *req.Version))
		}
	}
	attrs = append(attrs, slog.String("outcome", outcome), slog.Duration("latency", latency))
	attrs = append(attrs, annotated...)
	if reason != "" && outcome != "ok" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	r := slog.NewRecord(time.Now(), level, "secrets get", 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // as slog.Logger does: a handler's failure has nowhere else to go
}

// spanAttributes are what the request's span says about it, built only when the span records.
func spanAttributes(info *reqInfo, outcome string, annotated []slog.Attr) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("secrets.outcome", outcome)}
	if e := info.entity; e != nil {
		attrs = append(attrs, attribute.String("secrets.entity.subject", e.Subject),
			attribute.String("secrets.entity.name", e.Name), attribute.String("secrets.entity.issuer", e.Issuer))
	}
	if h := info.host; h != nil {
		attrs = append(attrs, attribute.String("secrets.host", h.Subject))
	}
	if r := info.req; r != nil {
		attrs = append(attrs, attribute.String("secrets.application", applicationName(r)), attribute.String("secrets.key", r.Key))
	}
	for _, a := range annotated {
		attrs = append(attrs, toAttribute(a))
	}
	return attrs
}

func applicationName(r *Request) string {
	if r.Context.Application != nil && r.Context.Application.Name != nil {
		return *r.Context.Application.Name
	}
	return ""
}

func (s *Server) record(op, outcome string, d time.Duration) {
	set := s.metricSet(op, outcome)
	ctx := context.Background()
	s.requests.Add(ctx, 1, set)
	s.duration.Record(ctx, d.Seconds(), set)
}

// metricSet returns the metric attributes of an operation and outcome, built once for each pair: building an
// attribute set sorts and hashes it, which would cost every request. Operations and outcomes are this package's
// own constants (error kinds), so the map stays small; a handler may still return an Error of a kind of its own
// making, so no more than maxMetricSets are kept, and any other pair is built when recorded.
func (s *Server) metricSet(op, outcome string) metric.MeasurementOption {
	key := metricKey{op, outcome}
	s.metricMu.RLock()
	set, ok := s.metricSets[key]
	s.metricMu.RUnlock()
	if ok {
		return set
	}
	set = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", op), attribute.String("outcome", outcome)))
	s.metricMu.Lock()
	if len(s.metricSets) < maxMetricSets {
		s.metricSets[key] = set
	}
	s.metricMu.Unlock()
	return set
}

type metricKey struct{ op, outcome string }

// maxMetricSets bounds the attribute sets metricSet keeps: room for every operation with every outcome this package
// produces (3 operations, 13 error kinds, ok and publish_failed).
const maxMetricSets = 64

// headerValue looks the header up by its exact spelling first, then in any capitalization: NATS headers are
// case-sensitive, but old docs spell this one Wasmcloud-Host-Xkey.
func headerValue(h nats.Header, name string) (string, bool) {
	if v := h[name]; len(v) > 0 && strings.TrimSpace(v[0]) != "" {
		return strings.TrimSpace(v[0]), true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 && strings.TrimSpace(v[0]) != "" {
			return strings.TrimSpace(v[0]), true
		}
	}
	return "", false
}

func toAttribute(a slog.Attr) attribute.KeyValue {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return attribute.String(a.Key, v.String())
	case slog.KindInt64:
		return attribute.Int64(a.Key, v.Int64())
	case slog.KindUint64:
		return attribute.Int64(a.Key, int64(v.Uint64()))
	case slog.KindFloat64:
		return attribute.Float64(a.Key, v.Float64())
	case slog.KindBool:
		return attribute.Bool(a.Key, v.Bool())
	default:
		return attribute.String(a.Key, v.String())
	}
}

// panicText describes a panic without echoing arbitrary values, which could hold secret material.
func panicText(r any) string {
	switch e := r.(type) {
	case runtime.Error:
		return e.Error()
	case error:
		return fmt.Sprintf("%T", e)
	default:
		return fmt.Sprintf("%T", r)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
