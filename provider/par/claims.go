package par

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// WascapRevision is the wascap_revision wash writes today.
const WascapRevision = 3

// MaxClaimsSize bounds claims.jwt (wascap's own token limit).
const MaxClaimsSize = 16 * 1024

// WorldHashKey is the target_hashes key of world.wasm.
const WorldHashKey = "world.wasm"

// Claims is the wascap claims set of a provider archive.
type Claims struct {
	JTI            string   `json:"jti"`
	IssuedAt       int64    `json:"iat"`
	Issuer         string   `json:"iss"`
	Subject        string   `json:"sub"`
	Expires        int64    `json:"exp,omitempty"`
	NotBefore      int64    `json:"nbf,omitempty"`
	Wascap         Metadata `json:"wascap"`
	WascapRevision int      `json:"wascap_revision,omitempty"`
}

// Metadata is the "wascap" object of provider claims (wascap's CapabilityProvider).
type Metadata struct {
	Name         string            `json:"name,omitempty"`
	Vendor       string            `json:"vendor"`
	Rev          int               `json:"rev"`
	Ver          string            `json:"ver,omitempty"`
	TargetHashes map[string]string `json:"target_hashes"`
	ConfigSchema json.RawMessage   `json:"config_schema,omitempty"`
}

// header is the only JWT header wascap accepts.
const header = `{"typ":"jwt","alg":"Ed25519"}`

var b64 = base64.RawURLEncoding

// Hash is how target_hashes spell a binary's digest: uppercase hex SHA-256.
func Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// sign encodes c as a wascap JWT signed by issuer.
func sign(c *Claims, issuer nkeys.KeyPair) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	signing := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(body)
	sig, err := issuer.Sign([]byte(signing))
	if err != nil {
		return "", fmt.Errorf("sign claims: %w", err)
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

// decodeToken splits a JWT and decodes its claims without checking anything else.
func decodeToken(token string) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("invalid token format, expected 3 segments, found %d", len(parts))
	}
	body, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("claims segment is not base64url: %w", err)
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("claims segment is not a claims object: %w", err)
	}
	return &c, nil
}

// verifyToken checks what a secrets backend checks on an entity JWT, plus what makes a provider token well formed.
func verifyToken(token string, now time.Time) (*Claims, error) {
	c, err := decodeToken(token)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(token, ".")
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header segment is not base64url: %w", err)
	}
	var h struct{ Typ, Alg string }
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("header segment: %w", err)
	}
	if h.Alg != "Ed25519" {
		//lint:ignore ST1005 wascap's own wording, which operators search for
		return nil, errors.New("Invalid JWT algorithm. WASCAP only supports Ed25519")
	}
	if h.Typ != "jwt" {
		return nil, fmt.Errorf("invalid JWT type %q, want \"jwt\"", h.Typ)
	}
	if err := checkAccountKey(c.Issuer); err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature segment is not base64url: %w", err)
	}
	iss, err := nkeys.FromPublicKey(c.Issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer %q: %w", c.Issuer, err)
	}
	if err := iss.Verify([]byte(parts[0]+"."+parts[1]), sig); err != nil {
		return nil, errors.New("signature is not valid")
	}
	if err := CheckServiceKey(c.Subject); err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	if c.Expires != 0 && now.Unix() >= c.Expires {
		return nil, fmt.Errorf("token expired at %s", time.Unix(c.Expires, 0).UTC().Format(time.RFC3339))
	}
	if c.NotBefore != 0 && now.Unix() < c.NotBefore {
		return nil, fmt.Errorf("token cannot be used before %s", time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if c.JTI == "" || c.IssuedAt == 0 {
		return nil, errors.New("claims lack jti or iat")
	}
	if c.Wascap.Vendor == "" {
		return nil, errors.New("claims lack wascap.vendor")
	}
	if len(c.Wascap.TargetHashes) == 0 {
		return nil, errors.New("claims lack wascap.target_hashes")
	}
	return c, nil
}
