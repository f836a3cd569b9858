// Package wascap parses, verifies and mints wasmCloud's wascap JWTs: the signed claims embedded in components and
// providers, and the self-signed token a host sends with every secrets request.
//
// The checks follow wascap's validate_token as the official secrets backends use it: three base64url segments,
// header typ "jwt" and alg "Ed25519", an Ed25519 signature by the key named in iss, required jti/iat/iss/sub, exp
// with no leeway and nbf. Unlike wascap, an entity's subject must be the key its kind is signed for (M... for a
// component, V... for a provider), since access rules match on it. The issuer prefix is not enforced: authenticity
// of a signature is not authorization, and trust decisions (TRUSTED_ISSUERS) belong to the caller.
package wascap

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// MaxTokenSize bounds a token before any decoding, so a hostile request cannot make us decode megabytes.
const MaxTokenSize = 16 * 1024

// NotBeforeLeeway tolerates clock skew between the signer and us for nbf only. wascap itself has none, but real
// tokens carry no nbf at all, and a token minted "now" by a host whose clock runs a little ahead should not fail.
// exp gets no leeway: an expired token stays expired.
const NotBeforeLeeway = 5 * time.Second

// Kind is what a token describes.
type Kind int

// The kinds of wascap tokens the secrets protocol carries.
const (
	KindComponent Kind = iota + 1
	KindProvider
	KindHost
)

// String returns "component", "provider" or "host".
func (k Kind) String() string {
	switch k {
	case KindComponent:
		return "component"
	case KindProvider:
		return "provider"
	case KindHost:
		return "host"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Claims are the verified contents of a wascap token.
type Claims struct {
	JTI                          string
	IssuedAt, Expires, NotBefore int64 // seconds since the epoch, 0 = absent
	Issuer, Subject              string
	Kind                         Kind
	Name                         string          // wascap.name or ""
	Revision                     int             // wascap_revision (0 when absent)
	Metadata                     json.RawMessage // raw "wascap" object, nil when absent
}

// Errors a token can fail with. The messages follow wascap's wording, because backends pass them to the host, which
// shows them to operators next to messages from the official backends.
var (
	ErrTooLarge = errors.New("token too large")
	ErrFormat   = errors.New("invalid token format")
	ErrEncoding = errors.New("JWT error: invalid encoding")
	ErrHeader   = errors.New("JWT error: Invalid header")
	//lint:ignore ST1005 wascap's exact wording, which operators may search for
	ErrAlgorithm   = errors.New("Invalid JWT algorithm. WASCAP only supports Ed25519")
	ErrClaims      = errors.New("JWT error: invalid claims")
	ErrIssuer      = errors.New("JWT error: invalid issuer")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token cannot be used before")
	ErrSignature   = errors.New("signature is not valid")
	ErrNotEntity   = errors.New("token is neither a component nor a capability provider")
	ErrSubject     = errors.New("JWT error: invalid subject")
)

// header is the JOSE header; only the fields wascap checks.
type header struct {
	Typ string `json:"typ"`
	Alg string `json:"alg"`
}

// rawClaims are the registered claims with pointers so that "missing" and "zero" differ, as they do for serde.
type rawClaims struct {
	Exp      *int64          `json:"exp"`
	JTI      *string         `json:"jti"`
	IAT      *int64          `json:"iat"`
	Iss      *string         `json:"iss"`
	Sub      *string         `json:"sub"`
	Nbf      *int64          `json:"nbf"`
	Wascap   json.RawMessage `json:"wascap"`
	Revision *uint32         `json:"wascap_revision"`
}

// The typed metadata shapes mirror wascap's structs so that a wrongly typed field fails here as it does in Rust.
type componentMeta struct {
	Name      *string  `json:"name"`
	Hash      *string  `json:"hash"`
	Tags      []string `json:"tags"`
	Rev       *int32   `json:"rev"`
	Ver       *string  `json:"ver"`
	CallAlias *string  `json:"call_alias"`
	Prov      *bool    `json:"prov"`
}

type providerMeta struct {
	Name         *string           `json:"name"`
	Vendor       *string           `json:"vendor"`
	TargetHashes map[string]string `json:"target_hashes"`
	Rev          *int32            `json:"rev"`
	Ver          *string           `json:"ver"`
}

type hostMeta struct {
	Name   *string           `json:"name"`
	Labels map[string]string `json:"labels"`
}

// token is a decoded but not yet verified JWT.
type token struct {
	signed []byte // "seg0.seg1", what the signature covers
	sig    []byte
	claims rawClaims
	meta   json.RawMessage // nil when absent or null
}

// ParseEntity verifies a component or capability-provider token, as the host sends in context.entity_jwt.
// A token with wascap.vendor and wascap.target_hashes is a provider (wascap tries that first); one with wascap.hash
// is a component.
func ParseEntity(tok string, now time.Time) (*Claims, error) {
	c, _, err := parseEntity(tok, now)
	return c, err
}

// times are the expiry and not-before a token states (nil = absent), which Claims keep as 0 when absent.
type times struct{ exp, nbf *int64 }

func parseEntity(tok string, now time.Time) (*Claims, times, error) {
	t, err := decode(tok)
	if err != nil {
		return nil, times{}, err
	}
	kind, name, err := entityKind(t.meta)
	if err != nil {
		return nil, times{}, err
	}
	c, err := t.verify(kind, name, now)
	if err != nil {
		return nil, times{}, err
	}
	if err := checkEntitySubject(c); err != nil {
		return nil, times{}, err
	}
	return c, t.times(), nil
}

// checkEntitySubject requires the key wash signs each kind of entity for: a module key (M...) for a component, a
// service key (V...) for a provider. Access rules match on the subject, so it must be a key, not free text.
func checkEntitySubject(c *Claims) error {
	prefix, want := PrefixModule, "a module key (M...), as a component's"
	if c.Kind == KindProvider {
		prefix, want = PrefixService, "a service key (V...), as a provider's"
	}
	if err := CheckPublicKey(c.Subject, prefix); err != nil {
		return fmt.Errorf("%w: subject %q is not %s: %w", ErrSubject, c.Subject, want, err)
	}
	return nil
}

// ParseHost verifies a host token, as the host sends in context.host_jwt. The 1.x host signs it with a new random
// account key on every boot, so a valid signature proves integrity, not identity.
func ParseHost(tok string, now time.Time) (*Claims, error) {
	c, _, err := parseHost(tok, now)
	return c, err
}

func parseHost(tok string, now time.Time) (*Claims, times, error) {
	t, err := decode(tok)
	if err != nil {
		return nil, times{}, err
	}
	var name string
	if t.meta != nil {
		var m hostMeta
		if err := strictUnmarshal(t.meta, &m); err != nil {
			return nil, times{}, fmt.Errorf("%w: wascap host metadata: %w", ErrClaims, err)
		}
		name = deref(m.Name)
	}
	c, err := t.verify(KindHost, name, now)
	if err != nil {
		return nil, times{}, err
	}
	return c, t.times(), nil
}

func (t *token) times() times { return times{exp: t.claims.Exp, nbf: t.claims.Nbf} }

func entityKind(meta json.RawMessage) (Kind, string, error) {
	if meta == nil {
		return 0, "", fmt.Errorf("%w: no wascap metadata (want wascap.hash for a component, or wascap.vendor and wascap.target_hashes for a provider)", ErrNotEntity)
	}
	var p providerMeta
	if err := strictUnmarshal(meta, &p); err == nil && p.Vendor != nil && p.TargetHashes != nil {
		return KindProvider, deref(p.Name), nil
	}
	var c componentMeta
	if err := strictUnmarshal(meta, &c); err != nil {
		return 0, "", fmt.Errorf("%w: wascap component metadata: %w", ErrClaims, err)
	}
	if c.Hash == nil {
		return 0, "", fmt.Errorf("%w: missing field `hash` (want wascap.hash for a component, or wascap.vendor and wascap.target_hashes for a provider)", ErrNotEntity)
	}
	return KindComponent, deref(c.Name), nil
}

// decode splits and decodes a token and checks its header and required claims, in wascap's order.
func decode(tok string) (*token, error) {
	if len(tok) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(tok), MaxTokenSize)
	}
	segs := strings.Split(tok, ".")
	if len(segs) != 3 {
		return nil, fmt.Errorf("%w, expected 3 segments, found %d", ErrFormat, len(segs))
	}
	sig, err := decodeSegment(segs[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrEncoding, err)
	}
	hdrJSON, err := decodeSegment(segs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrEncoding, err)
	}
	var h header
	if err := strictUnmarshal(hdrJSON, &h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHeader, err)
	}
	if h.Alg != "Ed25519" {
		return nil, ErrAlgorithm
	}
	if !strings.EqualFold(h.Typ, "jwt") {
		return nil, ErrHeader
	}
	claimsJSON, err := decodeSegment(segs[1])
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrEncoding, err)
	}
	t := &token{signed: []byte(segs[0] + "." + segs[1]), sig: sig}
	if err := strictUnmarshal(claimsJSON, &t.claims); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClaims, err)
	}
	c := &t.claims
	switch {
	case c.JTI == nil:
		return nil, fmt.Errorf("%w: missing field `jti`", ErrClaims)
	case c.IAT == nil:
		return nil, fmt.Errorf("%w: missing field `iat`", ErrClaims)
	case *c.IAT < 0 || (c.Exp != nil && *c.Exp < 0) || (c.Nbf != nil && *c.Nbf < 0):
		return nil, fmt.Errorf("%w: negative time", ErrClaims)
	case c.Iss == nil || *c.Iss == "":
		return nil, fmt.Errorf("%w: missing or empty issuer", ErrClaims)
	case c.Sub == nil || *c.Sub == "":
		return nil, fmt.Errorf("%w: missing or empty subject", ErrClaims)
	}
	if len(t.claims.Wascap) > 0 && !bytes.Equal(t.claims.Wascap, []byte("null")) {
		t.meta = t.claims.Wascap
	}
	return t, nil
}

// verify checks the issuer key, then the times and the signature in the order wascap's valid_claims reports them.
func (t *token) verify(kind Kind, name string, now time.Time) (*Claims, error) {
	c := &t.claims
	issuer, err := nkeys.FromPublicKey(*c.Iss)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssuer, err)
	}
	if err := checkTimes(c.Exp, c.Nbf, now); err != nil {
		return nil, err
	}
	if err := issuer.Verify(t.signed, t.sig); err != nil {
		return nil, ErrSignature
	}
	out := &Claims{
		JTI:      *c.JTI,
		IssuedAt: *c.IAT,
		Issuer:   *c.Iss,
		Subject:  *c.Sub,
		Kind:     kind,
		Name:     name,
		Metadata: t.meta,
	}
	if c.Exp != nil {
		out.Expires = *c.Exp
	}
	if c.Nbf != nil {
		out.NotBefore = *c.Nbf
	}
	if c.Revision != nil {
		out.Revision = int(*c.Revision)
	}
	return out, nil
}

// checkTimes checks expiry and not-before (nil = absent) in wascap's order.
func checkTimes(expires, notBefore *int64, now time.Time) error {
	if expires != nil && *expires < now.Unix() {
		return fmt.Errorf("%w at %s", ErrExpired, time.Unix(*expires, 0).UTC().Format(time.RFC3339))
	}
	if notBefore != nil && now.Add(NotBeforeLeeway).Unix() < *notBefore {
		return fmt.Errorf("%w %s", ErrNotYetValid, time.Unix(*notBefore, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// decodeSegment decodes base64url, tolerating the padding wascap never writes but other JOSE libraries might.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// strictUnmarshal requires a JSON object, which is what every part of a JWT must be.
func strictUnmarshal(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(data, v)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
