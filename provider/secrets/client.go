package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// HostRequestTimeout is the host's request timeout on its control connection, applied when ctx has no deadline.
const HostRequestTimeout = 10 * time.Second

// Client asks a secrets backend for secrets the way a wasmCloud 1.x host does: it fetches and caches the server
// xkey once, then seals every request from a fresh key and opens the reply with it.
type Client struct {
	nc       *nats.Conn
	subjects Subjects
	lock     chan struct{} // a mutex that a waiting caller's ctx can abandon
	serverK  string
}

// NewClient returns a client for backend under prefix ("" means DefaultPrefix). The API version is always
// v1alpha1, as hosts cannot change it.
func NewClient(nc *nats.Conn, prefix, backend string) *Client {
	return &Client{nc: nc, subjects: NewSubjects(prefix, DefaultAPIVersion, backend), lock: make(chan struct{}, 1)}
}

// ServerXKey returns the backend's public xkey, asking for it once and caching it like the host, which never
// refreshes it.
func (c *Client) ServerXKey(ctx context.Context) (string, error) {
	select {
	case c.lock <- struct{}{}:
		defer func() { <-c.lock }()
	case <-ctx.Done():
		return "", fmt.Errorf("failed to fetch server xkey: %w", ctx.Err())
	}
	if c.serverK != "" {
		return c.serverK, nil
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	msg, err := c.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: c.subjects.ServerXKey()})
	if err != nil {
		return "", fmt.Errorf("failed to fetch server xkey: %w", err)
	}
	if !utf8.Valid(msg.Data) {
		return "", errors.New("failed to convert server xkey: not UTF-8")
	}
	key := string(msg.Data)
	if err := checkCurveKey(key); err != nil {
		return "", fmt.Errorf("failed to parse server xkey: %w", err)
	}
	c.serverK = key
	return key, nil
}

// Get fetches one secret. A server-side error comes back as *Error; transport and decoding failures quote the
// host's wording.
func (c *Client) Get(ctx context.Context, req *Request) (*Secret, error) {
	if req == nil {
		return nil, errors.New("secrets get: nil request")
	}
	serverKey, err := c.ServerXKey(ctx)
	if err != nil {
		return nil, err
	}
	// The host always sends an application object; Rust backends reject a request without one.
	r := *req
	if r.Context.Application == nil {
		r.Context.Application = &Application{}
	}
	body, err := encodeJSON(&r)
	if err != nil {
		return nil, fmt.Errorf("secrets get: encode request: %w", err)
	}
	hk, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("secrets get: request xkey: %w", err)
	}
	defer hk.Wipe()
	hkPub, err := hk.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("secrets get: request xkey: %w", err)
	}
	sealed, err := hk.Seal(body, serverKey)
	if err != nil {
		return nil, fmt.Errorf("secrets get: seal request: %w", err)
	}
	msg := nats.NewMsg(c.subjects.Get())
	msg.Header.Set(HostXkeyHeader, hkPub)
	msg.Data = sealed

	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("failed to send secret request: %w", err)
	}
	return decodeReply(reply, hk, r.Key)
}

// decodeReply follows the host: the response xkey header means a sealed success; without it the body is an error.
func decodeReply(reply *nats.Msg, hk nkeys.KeyPair, key string) (*Secret, error) {
	respKey := reply.Header.Get(ResponseXkeyHeader)
	if respKey == "" {
		var resp Response
		if err := json.Unmarshal(reply.Data, &resp); err != nil {
			return nil, fmt.Errorf("failed to deserialize secret response: %w", err)
		}
		if resp.Error == nil {
			return nil, errors.New("server error: unhandled server error (the server errored without explanation)")
		}
		return nil, resp.Error
	}
	if err := checkCurveKey(respKey); err != nil {
		return nil, fmt.Errorf("failed to parse xkey from server response: %w", err)
	}
	body, err := hk.Open(reply.Data, respKey)
	if err != nil {
		return nil, fmt.Errorf("failed to open secret response: %w", err)
	}
	defer clear(body)
	var resp struct {
		Secret *struct {
			Version *string `json:"version"`
			Secret
		} `json:"secret"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("failed to deserialize secret response: %w", err)
	}
	if resp.Secret == nil {
		return nil, fmt.Errorf("missing secret: no secret found with name [%s]", key)
	}
	if resp.Secret.Version == nil {
		return nil, errors.New(`failed to deserialize secret response: missing field "version"`)
	}
	sec := resp.Secret.Secret
	sec.Version = *resp.Secret.Version
	if sec.check() != nil {
		return nil, fmt.Errorf("secret %s did not contain a value", key)
	}
	return &sec, nil
}

func checkCurveKey(key string) error {
	if _, err := nkeys.FromPublicKey(key); err != nil {
		return err
	}
	if nkeys.Prefix(key) != nkeys.PrefixByteCurve {
		return errors.New("not a curve (X) key")
	}
	return nil
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, HostRequestTimeout)
}
