package rig

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// BaselineResponder answers the secrets protocol with only the work every backend must do for a get: open the
// sealed request, decode it, verify the entity and host JWTs, and seal a reply with a fresh key. It answers with one
// fixed value, so the gap between it and the real backend is the cost of everything else (queueing, policy, access
// rules, the cache lookup, logging, tracing).
//
// It hands requests to the same number of workers the real server uses, so that both can use every core.
type BaselineResponder struct {
	nc    *nats.Conn
	sub   *nats.Subscription
	xkey  nkeys.KeyPair
	pub   string
	base  string
	reply []byte
	jobs  chan *nats.Msg
	wg    sync.WaitGroup
	once  sync.Once
}

// StartBaseline subscribes the responder to {prefix}.v1alpha1.{backend}.> on nc.
func StartBaseline(nc *nats.Conn, prefix, backend string, xkey nkeys.KeyPair) (*BaselineResponder, error) {
	pub, err := xkey.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("baseline: server xkey: %w", err)
	}
	reply, err := json.Marshal(secrets.Response{Secret: &secrets.Secret{Version: "1", StringSecret: ptr(Value)}})
	if err != nil {
		return nil, fmt.Errorf("baseline: reply: %w", err)
	}
	b := &BaselineResponder{
		nc: nc, xkey: xkey, pub: pub, reply: reply,
		base: prefix + "." + secrets.DefaultAPIVersion + "." + backend,
		jobs: make(chan *nats.Msg, 16*secrets.DefaultWorkers),
	}
	b.sub, err = nc.Subscribe(b.base+".>", b.onMsg)
	if err != nil {
		return nil, fmt.Errorf("baseline: subscribe: %w", err)
	}
	for range secrets.DefaultWorkers {
		b.wg.Go(func() {
			for m := range b.jobs {
				b.answer(m)
			}
		})
	}
	if err := nc.Flush(); err != nil {
		b.Close()
		return nil, fmt.Errorf("baseline: flush: %w", err)
	}
	return b, nil
}

func ptr(s string) *string { return &s }

// Close unsubscribes and waits for the workers.
func (b *BaselineResponder) Close() {
	b.once.Do(func() {
		_ = b.sub.Unsubscribe()
		close(b.jobs)
		b.wg.Wait()
	})
}

func (b *BaselineResponder) onMsg(m *nats.Msg) {
	switch m.Subject {
	case b.base + ".server_xkey":
		_ = m.Respond([]byte(b.pub))
	case b.base + ".get":
		// A load run keeps at most a few dozen requests in flight, far below the queue's capacity, so this never
		// blocks delivery in practice; the real server refuses instead of blocking.
		b.jobs <- m
	}
}

func (b *BaselineResponder) answer(m *nats.Msg) {
	out, err := b.seal(m)
	if err != nil {
		var e *secrets.Error
		if !errors.As(err, &e) {
			e = secrets.NewError(secrets.KindOther, err.Error())
		}
		body, _ := json.Marshal(secrets.Response{Error: e})
		out = &nats.Msg{Subject: m.Reply, Data: body}
	}
	_ = b.nc.PublishMsg(out)
}

func (b *BaselineResponder) seal(m *nats.Msg) (*nats.Msg, error) {
	hostKey := m.Header.Get(secrets.HostXkeyHeader)
	body, err := b.xkey.Open(m.Data, hostKey)
	if err != nil {
		return nil, secrets.NewError(secrets.KindDecryptionError, "")
	}
	var req secrets.Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, secrets.NewError(secrets.KindInvalidPayload, "")
	}
	now := time.Now()
	if _, err := wascap.ParseEntity(req.Context.EntityJWT, now); err != nil {
		return nil, secrets.NewError(secrets.KindInvalidEntityJWT, err.Error())
	}
	if _, err := wascap.ParseHost(req.Context.HostJWT, now); err != nil {
		return nil, secrets.NewError(secrets.KindInvalidHostJWT, err.Error())
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
	sealed, err := rk.Seal(b.reply, hostKey)
	if err != nil {
		return nil, secrets.NewError(secrets.KindEncryptionError, "")
	}
	out := nats.NewMsg(m.Reply)
	out.Header.Set(secrets.ResponseXkeyHeader, rkPub)
	out.Data = sealed
	return out, nil
}
