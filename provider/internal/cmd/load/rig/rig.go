// Package rig runs what `make bench` measures, in one process: an embedded NATS server, a fake Infisical, the
// backend (`serve`, in-process) and a baseline responder that does only the work the protocol makes mandatory, so
// the two can be compared on the same NATS with the same clients.
package rig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// Names of the two responders and the secret every get reads.
const (
	Backend  = "infisical" // the real backend
	Baseline = "baseline"  // the protocol-only responder
	Key      = "DB_PASSWORD"
	Value    = "correct-horse-battery-staple"

	project  = "bench-project"
	clientID = "bench-client"
	secret   = "bench-client-secret"
)

// Rig is a running NATS server, fake Infisical, backend and baseline responder.
type Rig struct {
	world
	stopServe context.CancelFunc
	served    chan int
	baseNC    *nats.Conn
	baseline  *BaselineResponder
}

// Start starts everything and waits until both responders answer server_xkey. The backend logs to logs at its
// default level (INFO: one line per get), as in production. Close stops it all.
func Start(logs io.Writer) (r *Rig, err error) {
	r = &Rig{}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := r.start(); err != nil {
		return nil, err
	}
	serverKey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("server xkey: %w", err)
	}
	seed, err := serverKey.Seed()
	if err != nil {
		return nil, fmt.Errorf("server xkey: %w", err)
	}
	env := r.backendEnv(string(seed))
	ctx, cancel := context.WithCancel(context.Background())
	r.stopServe, r.served = cancel, make(chan int, 1)
	go func() {
		r.served <- cli.Run(ctx, []string{"serve"}, strings.NewReader(""), logs, logs, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
	}()
	if r.baseNC, err = nats.Connect(r.URL, nats.Name("baseline")); err != nil {
		return nil, fmt.Errorf("baseline NATS connection: %w", err)
	}
	if r.baseline, err = StartBaseline(r.baseNC, secrets.DefaultPrefix, Baseline, serverKey); err != nil {
		return nil, err
	}
	exited := func() error {
		select {
		case code := <-r.served:
			r.served <- code
			return fmt.Errorf("the backend exited with %d", code)
		default:
			return nil
		}
	}
	if err := waitReady(r.URL, 10*time.Second, exited); err != nil {
		return nil, err
	}
	return r, nil
}

// waitReady waits until both responders answer server_xkey on url; exited reports a responder that has gone.
func waitReady(url string, limit time.Duration, exited func() error) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer nc.Close()
	deadline := time.Now().Add(limit)
	for _, name := range []string{Backend, Baseline} {
		for {
			if err := exited(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, err := secrets.NewClient(nc, secrets.DefaultPrefix, name).ServerXKey(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not answer server_xkey after %s: %w", name, limit, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Close stops everything that started; it is safe on a partly started rig.
func (r *Rig) Close() {
	if r.stopServe != nil {
		r.stopServe()
		select {
		case <-r.served:
		case <-time.After(10 * time.Second):
		}
		r.stopServe = nil
	}
	if r.baseline != nil {
		r.baseline.Close()
	}
	if r.baseNC != nil {
		r.baseNC.Close()
	}
	r.close()
}

// Client is one simulated host with its own NATS connection, as every wasmCloud host has its own.
type Client struct {
	nc     *nats.Conn
	entity *hostsim.Entity
	hosts  map[string]*hostsim.Host
}

// NewClient connects a new host that can ask both responders.
func (r *Rig) NewClient() (*Client, error) { return connect(r.URL, r.Entity) }

func connect(url string, entity *hostsim.Entity) (*Client, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, fmt.Errorf("client NATS connection: %w", err)
	}
	c := &Client{nc: nc, entity: entity, hosts: map[string]*hostsim.Host{}}
	for _, name := range []string{Backend, Baseline} {
		h, err := hostsim.NewHost(nc, secrets.DefaultPrefix, name)
		if err != nil {
			nc.Close()
			return nil, err
		}
		c.hosts[name] = h
	}
	return c, nil
}

// Get reads Key from the responder named target (Backend or Baseline) and checks the value.
func (c *Client) Get(ctx context.Context, target string) error {
	h, ok := c.hosts[target]
	if !ok {
		return fmt.Errorf("no responder %q", target)
	}
	s, err := h.Fetch(ctx, c.entity, hostsim.Ref{Key: Key})
	if err != nil {
		return err
	}
	if s.StringSecret == nil || *s.StringSecret != Value {
		return errors.New("get returned an unexpected value")
	}
	return nil
}

// Close closes the client's connection.
func (c *Client) Close() { c.nc.Close() }
