package backend

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// errNoField is a missing member or a value that is not a JSON object: the host sees SecretNotFound.
var errNoField = errors.New("field not found")

// selectField returns one member of a JSON-object value: a string as is, anything else as compact JSON text.
func selectField(value, field string) (string, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return "", fmt.Errorf("%w: the secret's value is not a JSON object", errNoField)
	}
	raw, ok := obj[field]
	if !ok {
		return "", fmt.Errorf("%w: the secret's JSON object has no member %q", errNoField, field)
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("decode member %q: %w", field, err)
		}
		return s, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", fmt.Errorf("compact member %q: %w", field, err)
	}
	return buf.String(), nil
}

// buildSecret shapes the reply. The value text has already gone through field selection.
func buildSecret(value string, version int, asBase64 bool) (*secrets.Secret, error) {
	out := &secrets.Secret{Version: strconv.Itoa(version)}
	if !asBase64 {
		out.StringSecret = &value
		return out, nil
	}
	b, err := decodeBase64(value)
	if err != nil {
		return nil, secrets.NewError(secrets.KindOther,
			"secret value is not valid base64 (the policy sets encoding=base64): "+err.Error())
	}
	out.BinarySecret = secrets.ByteArray(b)
	return out, nil
}

// decodeBase64 takes the standard alphabet, with or without padding, ignoring line breaks, since values are pasted
// into Infisical's UI by people (and `base64` wraps at 76 columns). The URL alphabet is not tried: it would turn
// ordinary words with '-' or '_' into bytes instead of reporting the mistake.
func decodeBase64(s string) ([]byte, error) {
	s = strings.NewReplacer("\n", "", "\r", "", " ", "").Replace(s)
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err == nil {
		return b, nil
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return nil, err
}
