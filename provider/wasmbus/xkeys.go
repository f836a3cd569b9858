package wasmbus

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
)

// LinkXKeys returns the provider's curve key pair and the host's curve public key, used to open link secrets. Both
// are absent (nil, "") when the host sent either field empty, as hosts before 1.1 do; links then carry no secrets.
func (h *HostData) LinkXKeys() (provider nkeys.KeyPair, hostPublic string, err error) {
	if h.ProviderXKeyPrivateKey == "" || h.HostXKeyPublicKey == "" {
		return nil, "", nil
	}
	provider, err = nkeys.FromCurveSeed([]byte(h.ProviderXKeyPrivateKey.Reveal()))
	if err != nil {
		// The nkeys error does not contain the seed.
		return nil, "", fmt.Errorf("host data provider_xkey_private_key is not a curve seed: %w", err)
	}
	if !nkeys.IsValidPublicCurveKey(h.HostXKeyPublicKey) {
		return nil, "", fmt.Errorf("host data host_xkey_public_key %q is not a curve public key", h.HostXKeyPublicKey)
	}
	return provider, h.HostXKeyPublicKey, nil
}

// DecryptLinkSecrets opens one side's sealed link secrets (sealed by the host key to the provider key) and decodes
// the JSON map inside. nil or empty input means the side has no secrets and yields an empty map.
func DecryptLinkSecrets(sealed *[]byte, provider nkeys.KeyPair, hostPublic string) (map[string]SecretValue, error) {
	if sealed == nil || len(*sealed) == 0 {
		return map[string]SecretValue{}, nil
	}
	if provider == nil || hostPublic == "" {
		return nil, errors.New("link carries sealed secrets but the host sent no xkeys to open them")
	}
	plain, err := provider.Open(*sealed, hostPublic)
	if err != nil {
		return nil, fmt.Errorf("open link secrets: %w", err)
	}
	secrets := map[string]SecretValue{}
	if err := json.Unmarshal(plain, &secrets); err != nil {
		return nil, fmt.Errorf("decode link secrets: %w", safeJSONError(err))
	}
	if secrets == nil { // the JSON was null
		secrets = map[string]SecretValue{}
	}
	return secrets, nil
}

// SealLinkSecrets does the host's side of DecryptLinkSecrets: it seals the wire JSON of secrets with the host key to
// the provider's curve public key. An empty map is nil, as the host sends it. For host simulators and tests.
func SealLinkSecrets(secrets map[string]SecretValue, host nkeys.KeyPair, providerPublic string) (*[]byte, error) {
	if len(secrets) == 0 {
		return nil, nil
	}
	plain, err := MarshalSecrets(secrets)
	if err != nil {
		return nil, fmt.Errorf("seal link secrets: %w", err)
	}
	sealed, err := host.Seal(plain, providerPublic)
	if err != nil {
		return nil, fmt.Errorf("seal link secrets: %w", err)
	}
	return &sealed, nil
}
