// Package secrets speaks the wasmCloud 1.x secrets backend protocol: the wire types and their exact JSON, the error
// enum as the Rust host decodes it, xkey sealing, a NATS server that answers server_xkey and get and hands verified
// requests to a Handler, and a client that asks the way a host does.
package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Protocol constants, spelled exactly as the host and the official backends spell them.
const (
	HostXkeyHeader     = "WasmCloud-Host-Xkey"
	ResponseXkeyHeader = "Server-Response-Xkey"
	DefaultPrefix      = "wasmcloud.secrets"
	DefaultAPIVersion  = "v1alpha1"
)

// MaxPayload bounds a sealed get request; real ones hold two JWTs and a policy, a few kilobytes.
const MaxPayload = 64 * 1024

// MaxHeaderBytes bounds a get request's headers (names and values); hosts send one xkey header and perhaps a trace
// context, well under a kilobyte.
const MaxHeaderBytes = 8 * 1024

// Request is the decrypted body of a get request (the host's SecretRequest). Field order matches the host's serde
// output, so encoding/json writes the same bytes.
type Request struct {
	Key     string         `json:"key"`
	Field   *string        `json:"field"`
	Version *string        `json:"version"`
	Context RequestContext `json:"context"`
}

// RequestContext says who asks: the entity's and the host's wascap JWTs and the application.
type RequestContext struct {
	EntityJWT   string       `json:"entity_jwt"`
	HostJWT     string       `json:"host_jwt"`
	Application *Application `json:"application"`
}

// Application is the wadm application (its manifest name, or null outside wadm) and its secret policy, a JSON
// document carried as a string.
type Application struct {
	Name   *string `json:"name"`
	Policy string  `json:"policy"`
}

// Secret is a value as the host expects it. Version must always be present (the host rejects a response without
// it); string_secret and binary_secret are written as null when absent.
type Secret struct {
	Version      string    `json:"version"`
	StringSecret *string   `json:"string_secret"`
	BinarySecret ByteArray `json:"binary_secret"`
}

// Response is the host's SecretResponse: exactly one of Secret and Error is set.
type Response struct {
	Secret *Secret `json:"secret,omitempty"`
	Error  *Error  `json:"error,omitempty"`
}

// ByteArray is serde's Vec<u8>: a JSON array of numbers, never Go's default base64 string, which the host rejects.
type ByteArray []byte

// MarshalJSON writes null for nil and [n,n,...] otherwise.
func (b ByteArray) MarshalJSON() ([]byte, error) {
	if b == nil {
		return []byte("null"), nil
	}
	out := make([]byte, 0, 2+4*len(b))
	out = append(out, '[')
	for i, v := range b {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendUint(out, uint64(v), 10)
	}
	return append(out, ']'), nil
}

// UnmarshalJSON reads null or an array of integers 0-255.
func (b *ByteArray) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		*b = nil
		return nil
	}
	var nums []json.RawMessage
	if err := json.Unmarshal(data, &nums); err != nil {
		return fmt.Errorf("binary_secret: want an array of bytes: %w", err)
	}
	out := make(ByteArray, len(nums))
	for i, n := range nums {
		v, err := strconv.ParseUint(string(bytes.TrimSpace(n)), 10, 8)
		if err != nil {
			return fmt.Errorf("binary_secret[%d]: %.20s is not a byte", i, n)
		}
		out[i] = byte(v)
	}
	*b = out
	return nil
}

// encodeJSON marshals like serde_json: compact and without Go's HTML escaping, so that a client sends the bytes a
// Rust host would.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeRequest decodes and checks a decrypted get body. The error is the wire error to reply with.
func decodeRequest(body []byte) (*Request, *Error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, NewError(KindInvalidPayload, "")
	}
	// Pointers tell a missing field from an empty one, as the Rust backends' serde does; one pass, since this runs
	// for every request.
	var wire struct {
		Key     *string         `json:"key"`
		Field   *string         `json:"field"`
		Version *string         `json:"version"`
		Context *RequestContext `json:"context"`
	}
	if err := json.Unmarshal(trimmed, &wire); err != nil || wire.Key == nil || wire.Context == nil {
		return nil, NewError(KindInvalidPayload, "")
	}
	req := Request{Key: *wire.Key, Field: wire.Field, Version: wire.Version, Context: *wire.Context}
	if req.Key == "" {
		return nil, NewError(KindInvalidRequest, "")
	}
	return &req, nil
}

// errNoValue marks a Secret with neither a string nor a binary value, which the host would refuse.
var errNoValue = errors.New("secret has neither string_secret nor binary_secret")

func (s *Secret) check() error {
	if s.StringSecret == nil && s.BinarySecret == nil {
		return errNoValue
	}
	return nil
}
