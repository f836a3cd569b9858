package wascap

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/nats-io/nkeys"
)

// headerSegment is wascap's header, byte for byte: {"typ":"jwt","alg":"Ed25519"}.
var headerSegment = base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"jwt","alg":"Ed25519"}`))

// Revision is the wascap_revision current wasmCloud tooling writes.
const Revision = 3

// Sign encodes claims (any JSON-marshalable value) under wascap's header and signs them with issuer, normally an
// account key pair.
func Sign(claims any, issuer nkeys.KeyPair) (string, error) {
	if issuer == nil {
		return "", errors.New("sign: no issuer key pair")
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign: encode claims: %w", err)
	}
	signed := headerSegment + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := issuer.Sign([]byte(signed))
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// mintClaims has wascap's field order, so minted tokens look like real ones.
type mintClaims struct {
	JTI      string `json:"jti"`
	IAT      int64  `json:"iat"`
	Iss      string `json:"iss"`
	Sub      string `json:"sub"`
	Wascap   any    `json:"wascap"`
	Revision int    `json:"wascap_revision"`
}

type mintComponent struct {
	Name string   `json:"name"`
	Hash string   `json:"hash"`
	Tags []string `json:"tags"`
	Rev  int      `json:"rev"`
	Ver  string   `json:"ver"`
	Prov bool     `json:"prov"`
}

type mintProvider struct {
	Name         string            `json:"name"`
	Vendor       string            `json:"vendor"`
	TargetHashes map[string]string `json:"target_hashes"`
	Rev          int               `json:"rev"`
	Ver          string            `json:"ver"`
}

type mintHost struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// MintComponent mints a component token for subject (an M key) with a random module hash.
func MintComponent(issuer nkeys.KeyPair, subject, name string, now time.Time) (string, error) {
	hash := make([]byte, 32)
	if _, err := rand.Read(hash); err != nil {
		return "", fmt.Errorf("mint component: %w", err)
	}
	meta := mintComponent{Name: name, Hash: fmt.Sprintf("%X", hash), Tags: []string{}, Ver: "0.1.0"}
	return mint(issuer, subject, meta, now)
}

// MintProvider mints a capability-provider token for subject (a V key).
func MintProvider(issuer nkeys.KeyPair, subject, name, vendor string, targetHashes map[string]string, now time.Time) (string, error) {
	if targetHashes == nil {
		// wascap requires the map; an empty one still marks the token as a provider.
		targetHashes = map[string]string{}
	}
	meta := mintProvider{Name: name, Vendor: vendor, TargetHashes: targetHashes, Ver: "0.1.0"}
	return mint(issuer, subject, meta, now)
}

// MintHost mints a host token the way a 1.x host does at boot: subject is the host's N key, labels self_signed=true.
func MintHost(issuer nkeys.KeyPair, hostID, name string, now time.Time) (string, error) {
	meta := mintHost{Name: name, Labels: map[string]string{"self_signed": "true"}}
	return mint(issuer, hostID, meta, now)
}

func mint(issuer nkeys.KeyPair, subject string, meta any, now time.Time) (string, error) {
	if issuer == nil {
		return "", errors.New("mint: no issuer key pair")
	}
	iss, err := issuer.PublicKey()
	if err != nil {
		return "", fmt.Errorf("mint: issuer public key: %w", err)
	}
	jti, err := NewJTI()
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return Sign(mintClaims{JTI: jti, IAT: now.Unix(), Iss: iss, Sub: subject, Wascap: meta, Revision: Revision}, issuer)
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewJTI returns a random 22-character base62 token ID, the shape of the nuids wascap uses.
func NewJTI() (string, error) {
	out := make([]byte, 22)
	limit := big.NewInt(int64(len(base62)))
	for i := range out {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return "", fmt.Errorf("random jti: %w", err)
		}
		out[i] = base62[n.Int64()]
	}
	return string(out), nil
}
