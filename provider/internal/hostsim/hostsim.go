// Package hostsim behaves like a wasmCloud 1.x host towards this backend, for tests and the demo: it mints the host
// and entity JWTs a real host and wash would, fetches secrets with a fresh request xkey each time, and starts the
// built provider binary the way the host does (empty environment, HostData on stdin, stdin closed).
package hostsim

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// Host is one simulated host: a per-boot self-signed host JWT, like the 1.x host makes.
type Host struct {
	ID      string
	JWT     string
	Secrets *secrets.Client
}

// Entity is a signed component or provider.
type Entity struct {
	Issuer  nkeys.KeyPair
	Subject string
	Name    string
	JWT     string
}

// IssuerKey returns the entity issuer's public key (A...), the value TRUSTED_ISSUERS names.
func (e *Entity) IssuerKey() string {
	pub, _ := e.Issuer.PublicKey()
	return pub
}

// NewHost makes a host identity and a secrets client on nc.
func NewHost(nc *nats.Conn, prefix, backend string) (*Host, error) {
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("host issuer: %w", err)
	}
	server, err := nkeys.CreateServer()
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	id, _ := server.PublicKey()
	jwt, err := wascap.MintHost(issuer, id, "sim-host", time.Now())
	if err != nil {
		return nil, fmt.Errorf("host JWT: %w", err)
	}
	return &Host{ID: id, JWT: jwt, Secrets: secrets.NewClient(nc, prefix, backend)}, nil
}

// NewIssuer makes an account key, as `wash` keeps one per developer.
func NewIssuer() nkeys.KeyPair {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		panic(fmt.Sprintf("nkeys.CreateAccount: %v", err)) // only fails if the system's randomness does
	}
	return kp
}

// Component mints a component JWT (subject M...) signed by issuer.
func Component(issuer nkeys.KeyPair, name string) (*Entity, error) {
	sub, err := wascap.NewPublicKey(wascap.PrefixModule)
	if err != nil {
		return nil, err
	}
	jwt, err := wascap.MintComponent(issuer, sub, name, time.Now())
	if err != nil {
		return nil, err
	}
	return &Entity{Issuer: issuer, Subject: sub, Name: name, JWT: jwt}, nil
}

// Provider mints a provider JWT (subject V...) signed by issuer.
func Provider(issuer nkeys.KeyPair, name string) (*Entity, error) {
	sub, err := wascap.NewPublicKey(wascap.PrefixService)
	if err != nil {
		return nil, err
	}
	jwt, err := wascap.MintProvider(issuer, sub, name, "sim-vendor",
		map[string]string{"x86_64-linux": "0000000000000000000000000000000000000000000000000000000000000000"}, time.Now())
	if err != nil {
		return nil, err
	}
	return &Entity{Issuer: issuer, Subject: sub, Name: name, JWT: jwt}, nil
}

// Ref is what a wadm secret reference sends.
type Ref struct {
	Key, Field, Version string
	Application         string            // the manifest name; "" sends null
	Properties          map[string]string // secret policy properties without `backend`
}

// Request builds the request the host would send for ref.
func (h *Host) Request(e *Entity, ref Ref) *secrets.Request {
	props := ref.Properties
	if props == nil {
		props = map[string]string{}
	}
	policy, _ := json.Marshal(map[string]any{"type": "properties.secret.wasmcloud.dev/v1alpha1", "properties": props})
	req := &secrets.Request{Key: ref.Key, Context: secrets.RequestContext{
		EntityJWT: e.JWT, HostJWT: h.JWT, Application: &secrets.Application{Policy: string(policy)},
	}}
	if ref.Field != "" {
		req.Field = &ref.Field
	}
	if ref.Version != "" {
		req.Version = &ref.Version
	}
	if ref.Application != "" {
		app := ref.Application
		req.Context.Application.Name = &app
	}
	return req
}

// Fetch asks the backend for ref as entity e, within the host's 10 s.
func (h *Host) Fetch(ctx context.Context, e *Entity, ref Ref) (*secrets.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := h.Secrets.ServerXKey(ctx); err != nil {
		return nil, fmt.Errorf("failed to create secrets client: %w", err)
	}
	return h.Secrets.Get(ctx, h.Request(e, ref))
}
