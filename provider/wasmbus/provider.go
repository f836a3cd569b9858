// Package wasmbus is the wasmCloud 1.x host<->provider protocol, written here instead of the Go provider SDK: host
// data on stdin, link put/delete, health, config update and shutdown over the lattice RPC NATS connection. It knows
// NATS and nkeys and nothing of what the provider serves.
package wasmbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/telemetry"
)

const (
	// defaultRPCTimeout is the host's RPC request timeout when host data names none (WASMCLOUD_RPC_TIMEOUT_MS).
	defaultRPCTimeout = 2 * time.Second
	// shutdownBudget and flushBudget fit the host's 300 ms wait before SIGKILL.
	shutdownBudget = 250 * time.Millisecond
	flushBudget    = 40 * time.Millisecond
	// handlerTimeout bounds link and config callbacks so that one stuck callback cannot hold up later host messages
	// for ever (they are handled one at a time, in order).
	handlerTimeout = 30 * time.Second
	// controlQueue buffers link and config messages; beyond it nats.go drops and reports a slow consumer.
	controlQueue  = 1024
	subscribeWait = 5 * time.Second
)

// Link is a link involving this provider, reduced to our side: Config and Secrets are the target's when IsTarget,
// else the source's, and the secrets are decrypted.
type Link struct {
	SourceID, Target, Name, Namespace, Package string
	Interfaces                                 []string
	Config                                     map[string]string
	Secrets                                    map[string]SecretValue
	IsTarget                                   bool
}

// LogValue describes the link without config values or secret values.
func (l Link) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("source_id", l.SourceID),
		slog.String("target", l.Target),
		slog.String("name", l.Name),
		slog.String("wit", l.Namespace+":"+l.Package),
		slog.Any("interfaces", l.Interfaces),
		slog.Bool("is_target", l.IsTarget),
		slog.Any("config_keys", sortedKeys(l.Config)),
		slog.Any("secret_names", sortedKeys(l.Secrets)),
	)
}

type linkKey struct{ source, target, namespace, pkg, name string }

func (l Link) key() linkKey { return linkKey{l.SourceID, l.Target, l.Namespace, l.Package, l.Name} }

// Handlers are the provider's reactions to host messages. Every field may be nil.
type Handlers struct {
	// LinkPut receives a new link, or a replacement for a link with the same (source, target, namespace, package,
	// name). A link whose LinkPut fails is not recorded.
	LinkPut func(ctx context.Context, l Link) error
	// LinkUnreadable receives, without secrets, a link put whose secrets cannot be decrypted, so the provider can
	// fail closed for what that link would have configured. The link is not recorded.
	LinkUnreadable func(ctx context.Context, l Link, err error)
	// LinkDel receives the recorded link, or one built from the delete message when none was recorded.
	LinkDel func(ctx context.Context, l Link) error
	// ConfigUpdate receives the full merged config; on error the provider should keep its old settings.
	ConfigUpdate func(ctx context.Context, cfg map[string]string) error
	// Health reports whether the provider can serve; it is given ¾ of the host's RPC timeout (1.5 s by default).
	// nil means always healthy.
	Health func(ctx context.Context) (healthy bool, message string)
	// Shutdown drains the provider's work and flushes telemetry before the host gets its reply; it is given about
	// 250 ms. It must not close or drain the connection passed to New, which carries the reply.
	Shutdown func(ctx context.Context) error
}

// Provider answers the host on the lattice RPC connection.
type Provider struct {
	nc       *nats.Conn
	hd       *HostData
	h        Handlers
	log      *slog.Logger
	tracer   trace.Tracer
	xkey     nkeys.KeyPair
	hostXPub string
	subjects subjects
	// healthBudget is the part of the host's RPC timeout a health callback may use; the rest is for the reply.
	healthBudget time.Duration

	mu      sync.Mutex
	links   map[linkKey]Link
	subs    []*nats.Subscription
	started bool
	ctx     context.Context
	cancel  context.CancelFunc

	wg           sync.WaitGroup
	shuttingDown atomic.Bool
	done         chan struct{}
	closeOnce    sync.Once
	closeErr     error
}

type subjects struct{ health, linkPut, linkDel, configUpdate, shutdown string }

func newSubjects(lattice, providerKey, linkPutKey string) subjects {
	prefix := "wasmbus.rpc." + lattice + "."
	return subjects{
		health:       prefix + providerKey + ".health",
		linkPut:      prefix + linkPutKey + ".linkdefs.put",
		linkDel:      prefix + providerKey + ".linkdefs.del",
		configUpdate: prefix + providerKey + ".config.update",
		shutdown:     prefix + providerKey + ".default.shutdown",
	}
}

// New prepares a provider for the host described by hd; nc is the lattice RPC connection (see NATSOptions).
func New(nc *nats.Conn, hd *HostData, h Handlers, logger *slog.Logger) (*Provider, error) {
	if nc == nil {
		return nil, errors.New("wasmbus: nil NATS connection")
	}
	if hd == nil {
		return nil, errors.New("wasmbus: nil host data")
	}
	if err := hd.validate(); err != nil {
		return nil, fmt.Errorf("wasmbus: %w", err)
	}
	xkey, hostXPub, err := hd.LinkXKeys()
	if err != nil {
		return nil, fmt.Errorf("wasmbus: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	linkPutKey := hd.ProviderKey
	if xkey != nil {
		// Since host 1.1 links go to the per-instance xkey subject, sealed to that key; the provider-key subject only
		// gets a secrets-free copy of some of them, so listening on both would deliver duplicates.
		if linkPutKey, err = xkey.PublicKey(); err != nil {
			return nil, fmt.Errorf("wasmbus: provider xkey public key: %w", err)
		}
	}
	return &Provider{
		nc:       nc,
		hd:       hd,
		h:        h,
		log:      logger,
		tracer:   otel.Tracer(telemetry.InstrumentationName),
		xkey:     xkey,
		hostXPub: hostXPub,
		subjects: newSubjects(hd.LatticeRPCPrefix, hd.ProviderKey, linkPutKey),
		links:    map[linkKey]Link{},
		done:     make(chan struct{}),

		healthBudget: healthBudget(hd),
	}, nil
}

// healthBudget is three quarters of the host's RPC timeout (default_rpc_timeout_ms, which its health requests
// wait for), leaving the rest for the reply to travel.
func healthBudget(hd *HostData) time.Duration {
	timeout := defaultRPCTimeout
	if hd.DefaultRPCTimeoutMS != nil && *hd.DefaultRPCTimeoutMS > 0 {
		timeout = time.Duration(*hd.DefaultRPCTimeoutMS) * time.Millisecond
	}
	return timeout * 3 / 4
}

// Start applies the initial links from the host data, then subscribes to the host's subjects and waits until the
// server has the subscriptions. Handlers run with contexts derived from ctx until Close.
func (p *Provider) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return errors.New("wasmbus: provider already started")
	}
	p.started = true
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.mu.Unlock()

	for _, ld := range p.hd.LinkDefinitions {
		ctx, span := p.tracer.Start(p.ctx, "wasmbus.link_put", trace.WithAttributes(attribute.Bool("wasmcloud.link.initial", true)))
		p.handleLinkPut(ctx, span, ld)
		span.End()
	}

	control := make(chan *nats.Msg, controlQueue)
	subscribe := []func() (*nats.Subscription, error){
		func() (*nats.Subscription, error) { return p.nc.Subscribe(p.subjects.health, p.onHealth) },
		func() (*nats.Subscription, error) { return p.nc.Subscribe(p.subjects.shutdown, p.onShutdown) },
		// Link and config messages share one ordered queue, so that a delete never overtakes its put.
		func() (*nats.Subscription, error) { return p.nc.ChanSubscribe(p.subjects.linkPut, control) },
		func() (*nats.Subscription, error) { return p.nc.ChanSubscribe(p.subjects.linkDel, control) },
		func() (*nats.Subscription, error) { return p.nc.ChanSubscribe(p.subjects.configUpdate, control) },
	}
	for _, sub := range subscribe {
		s, err := sub()
		if err != nil {
			return errors.Join(fmt.Errorf("wasmbus: subscribe: %w", err), p.Close())
		}
		p.mu.Lock()
		p.subs = append(p.subs, s)
		p.mu.Unlock()
	}
	p.wg.Add(1)
	go p.runControl(control)

	flushCtx, cancel := context.WithTimeout(p.ctx, subscribeWait)
	defer cancel()
	if err := p.nc.FlushWithContext(flushCtx); err != nil {
		return errors.Join(fmt.Errorf("wasmbus: confirm subscriptions: %w", err), p.Close())
	}
	p.log.Info("listening for host messages",
		slog.String("lattice", p.hd.LatticeRPCPrefix),
		slog.String("provider_key", p.hd.ProviderKey),
		slog.String("link_put_subject", p.subjects.linkPut),
		slog.Int("links", len(p.Links())))
	return nil
}

// Done is closed once a shutdown request from our host has been handled and answered; the process should then exit.
func (p *Provider) Done() <-chan struct{} { return p.done }

// Links returns the links currently in effect, ordered by source, target, namespace, package and name.
func (p *Provider) Links() []Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(p.links), func(a, b linkKey) int {
		return cmp.Or(cmp.Compare(a.source, b.source), cmp.Compare(a.target, b.target),
			cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pkg, b.pkg), cmp.Compare(a.name, b.name))
	})
	out := make([]Link, 0, len(keys))
	for _, k := range keys {
		out = append(out, p.links[k])
	}
	return out
}

// Close unsubscribes and stops handling host messages. It does not close the NATS connection. Do not call it from a
// handler.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		if p.cancel != nil {
			p.cancel()
		}
		subs := p.subs
		p.subs = nil
		p.mu.Unlock()
		var errs []error
		for _, s := range subs {
			if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, fmt.Errorf("unsubscribe %s: %w", s.Subject, err))
			}
		}
		p.wg.Wait()
		if len(errs) > 0 {
			p.closeErr = fmt.Errorf("wasmbus: close: %w", errors.Join(errs...))
		}
	})
	return p.closeErr
}

func (p *Provider) runControl(control <-chan *nats.Msg) {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case msg := <-control:
			switch msg.Subject {
			case p.subjects.linkPut:
				p.onLinkPut(msg)
			case p.subjects.linkDel:
				p.onLinkDel(msg)
			case p.subjects.configUpdate:
				p.onConfigUpdate(msg)
			}
		}
	}
}

// startSpan continues the host's trace from the message headers.
func (p *Provider) startSpan(msg *nats.Msg, name string) (context.Context, trace.Span) {
	ctx := telemetry.Extract(p.ctx, msg.Header)
	return p.tracer.Start(ctx, name,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject),
		))
}

func failSpan(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

func linkAttributes(l Link) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("wasmcloud.link.source_id", l.SourceID),
		attribute.String("wasmcloud.link.target", l.Target),
		attribute.String("wasmcloud.link.name", l.Name),
		attribute.String("wasmcloud.link.wit", l.Namespace+":"+l.Package),
		attribute.Bool("wasmcloud.link.is_target", l.IsTarget),
	}
}

func (p *Provider) onLinkPut(msg *nats.Msg) {
	var ld InterfaceLinkDefinition
	if err := json.Unmarshal(msg.Data, &ld); err != nil {
		p.log.Error("ignoring link put that is not a valid link definition",
			slog.String("subject", msg.Subject), slog.Any("error", safeJSONError(err)))
		return
	}
	ctx, span := p.startSpan(msg, "wasmbus.link_put")
	defer span.End()
	p.handleLinkPut(ctx, span, ld)
}

// handleLinkPut applies one link, from a host message or from the host data.
func (p *Provider) handleLinkPut(ctx context.Context, span trace.Span, ld InterfaceLinkDefinition) {
	l, ours := p.ourSide(ld)
	if !ours {
		p.log.Debug("ignoring link put for a link that does not involve this provider",
			slog.String("source_id", ld.SourceID), slog.String("target", ld.Target))
		return
	}
	span.SetAttributes(linkAttributes(l)...)
	sealed := ld.SourceSecrets
	if l.IsTarget {
		sealed = ld.TargetSecrets
	}
	secrets, err := DecryptLinkSecrets(sealed, p.xkey, p.hostXPub)
	if err != nil {
		failSpan(span, err)
		p.log.Error("skipping link whose secrets cannot be decrypted", slog.Any("link", l), slog.Any("error", err))
		if p.h.LinkUnreadable != nil {
			ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
			l.Secrets = map[string]SecretValue{}
			p.h.LinkUnreadable(ctx, l, err)
			cancel()
		}
		return
	}
	l.Secrets = secrets

	if p.h.LinkPut != nil {
		ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
		err := p.h.LinkPut(ctx, l)
		cancel()
		if err != nil {
			failSpan(span, err)
			p.log.Error("link rejected", slog.Any("link", l), slog.Any("error", err))
			return
		}
	}
	p.mu.Lock()
	_, replaced := p.links[l.key()]
	p.links[l.key()] = l
	p.mu.Unlock()
	p.log.Info("link applied", slog.Any("link", l), slog.Bool("replaced", replaced))
}

// ourSide classifies ld and takes our side's config; secrets are left to the caller.
func (p *Provider) ourSide(ld InterfaceLinkDefinition) (Link, bool) {
	l := Link{
		SourceID:   ld.SourceID,
		Target:     ld.Target,
		Name:       ld.Name,
		Namespace:  ld.WitNamespace,
		Package:    ld.WitPackage,
		Interfaces: slices.Clone(ld.Interfaces),
	}
	switch p.hd.ProviderKey {
	case ld.Target:
		l.IsTarget = true
		l.Config = maps.Clone(ld.TargetConfig)
	case ld.SourceID:
		l.Config = maps.Clone(ld.SourceConfig)
	default:
		return Link{}, false
	}
	if l.Config == nil {
		l.Config = map[string]string{}
	}
	return l, true
}

func (p *Provider) onLinkDel(msg *nats.Msg) {
	ctx, span := p.startSpan(msg, "wasmbus.link_del")
	defer span.End()
	var ld InterfaceLinkDefinition
	if err := json.Unmarshal(msg.Data, &ld); err != nil {
		err = safeJSONError(err)
		failSpan(span, err)
		p.log.Error("ignoring link delete that is not a valid link definition", slog.Any("error", err))
		return
	}
	l, ours := p.ourSide(ld)
	if !ours {
		p.log.Debug("ignoring link delete for a link that does not involve this provider",
			slog.String("source_id", ld.SourceID), slog.String("target", ld.Target))
		return
	}
	span.SetAttributes(linkAttributes(l)...)
	p.mu.Lock()
	known, found := p.links[l.key()]
	delete(p.links, l.key())
	p.mu.Unlock()
	if found {
		l = known
	} else {
		// The host's delete carries no secrets; the handler still hears of it so it can drop whatever it holds.
		l.Secrets = map[string]SecretValue{}
	}
	if p.h.LinkDel != nil {
		ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
		err := p.h.LinkDel(ctx, l)
		cancel()
		if err != nil {
			failSpan(span, err)
			p.log.Error("link delete failed", slog.Any("link", l), slog.Any("error", err))
			return
		}
	}
	p.log.Info("link deleted", slog.Any("link", l), slog.Bool("was_known", found))
}

func (p *Provider) onConfigUpdate(msg *nats.Msg) {
	ctx, span := p.startSpan(msg, "wasmbus.config_update")
	defer span.End()
	var cfg map[string]string
	if err := json.Unmarshal(msg.Data, &cfg); err != nil || cfg == nil {
		if err == nil {
			err = errors.New("config is null, want a JSON object of strings")
		}
		err = safeJSONError(err)
		failSpan(span, err)
		p.log.Error("ignoring config update that is not a JSON object of strings; keeping the current settings",
			slog.Any("error", err))
		return
	}
	span.SetAttributes(attribute.StringSlice("wasmcloud.config.keys", sortedKeys(cfg)))
	if p.h.ConfigUpdate == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, handlerTimeout)
	defer cancel()
	if err := p.h.ConfigUpdate(ctx, cfg); err != nil {
		failSpan(span, err)
		p.log.Error("config update rejected; keeping the current settings", slog.Any("error", err))
		return
	}
	p.log.Info("config updated", slog.Any("config_keys", sortedKeys(cfg)))
}

type healthReply struct {
	Healthy bool   `json:"healthy"`
	Message string `json:"message"`
}

func (p *Provider) onHealth(msg *nats.Msg) {
	ctx, span := p.startSpan(msg, "wasmbus.health")
	defer span.End()
	reply := p.checkHealth(ctx)
	span.SetAttributes(attribute.Bool("wasmcloud.health.healthy", reply.Healthy))
	if !reply.Healthy {
		p.log.Warn("reporting unhealthy to the host", slog.String("reason", reply.Message))
	}
	body, err := json.Marshal(reply)
	if err == nil {
		err = msg.Respond(body)
	}
	if err != nil {
		failSpan(span, err)
		p.log.Error("cannot answer health check", slog.Any("error", err))
	}
}

// checkHealth runs the callback in its own goroutine so that a slow one still gets the host a reply in time.
func (p *Provider) checkHealth(ctx context.Context) healthReply {
	if p.h.Health == nil {
		return healthReply{Healthy: true, Message: "healthy"}
	}
	ctx, cancel := context.WithTimeout(ctx, p.healthBudget)
	defer cancel()
	result := make(chan healthReply, 1)
	go func() {
		healthy, message := p.h.Health(ctx)
		result <- healthReply{Healthy: healthy, Message: message}
	}()
	select {
	case r := <-result:
		switch {
		case r.Message != "":
		case r.Healthy:
			r.Message = "healthy"
		default:
			r.Message = "unhealthy"
		}
		return r
	case <-ctx.Done():
		return healthReply{Healthy: false, Message: "health check timed out"}
	}
}

type shutdownRequest struct {
	HostID string `json:"host_id"`
}

func (p *Provider) onShutdown(msg *nats.Msg) {
	start := time.Now()
	ctx, span := p.startSpan(msg, "wasmbus.shutdown")
	var req shutdownRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		span.End()
		p.log.Warn(`ignoring shutdown request that is not {"host_id":...}`, slog.Any("error", safeJSONError(err)))
		return
	}
	span.SetAttributes(attribute.String("wasmcloud.host_id", req.HostID))
	if req.HostID != p.hd.HostID {
		// The subject is per provider ID, so every host running this provider sends here; only ours may stop us.
		span.End()
		p.log.Warn("ignoring shutdown request for another host",
			slog.String("request_host_id", req.HostID), slog.String("our_host_id", p.hd.HostID))
		return
	}
	first := p.shuttingDown.CompareAndSwap(false, true)
	// End the span before the callback flushes telemetry, or it would never be exported.
	span.End()
	if first {
		p.log.Info("shutdown requested by our host")
		p.runShutdown(ctx)
	}
	if err := msg.Respond([]byte("shutting down")); err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		p.log.Error("cannot answer shutdown request", slog.Any("error", err))
	}
	if err := p.nc.FlushTimeout(max(flushBudget, shutdownBudget+flushBudget-time.Since(start))); err != nil {
		p.log.Warn("shutdown reply may not have reached the host", slog.Any("error", err))
	}
	if first {
		close(p.done)
	}
}

// runShutdown gives the callback its budget and moves on without it when it overruns: the host kills us at 300 ms
// whether or not we replied.
func (p *Provider) runShutdown(ctx context.Context) {
	if p.h.Shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, shutdownBudget)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- p.h.Shutdown(ctx) }()
	select {
	case err := <-result:
		if err != nil {
			p.log.Error("shutdown callback failed", slog.Any("error", err))
		}
	case <-ctx.Done():
		p.log.Warn("shutdown callback overran its budget; replying anyway", slog.Duration("budget", shutdownBudget))
	}
}
