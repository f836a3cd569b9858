package wasmbus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

const redactedText = "[redacted]"

// Redacted holds a credential (NATS user seed, xkey seed). Every way of printing it (fmt verbs, slog, JSON) shows
// "[redacted]", so that logging a whole HostData cannot leak it; Reveal is the one deliberate way to read it.
type Redacted string

// Reveal returns the value. Call it only where the value is used, never to log it.
func (r Redacted) Reveal() string { return string(r) }

// String implements fmt.Stringer.
func (Redacted) String() string { return redactedText }

// GoString keeps %#v from printing the value.
func (Redacted) GoString() string { return strconv.Quote(redactedText) }

// Format covers every fmt verb: without it, a verb that does not fit a string (such as %d) makes fmt print the
// underlying value.
func (Redacted) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedText) }

// LogValue implements slog.LogValuer.
func (Redacted) LogValue() slog.Value { return slog.StringValue(redactedText) }

// MarshalJSON redacts, because JSON marshalling of these types happens in logs; EncodeHostData writes the real value.
func (Redacted) MarshalJSON() ([]byte, error) { return json.Marshal(redactedText) }

// Secret kinds as the host spells them (serde tags of wasmcloud_secrets_types::SecretValue).
const (
	KindString = "String"
	KindBytes  = "Bytes"
)

// SecretValue is a secret delivered by the host: {"kind":"String","value":"..."} or {"kind":"Bytes","value":[1,2]}.
// Like Redacted, every way of printing it is redacted; use Text (or the fields) to read it.
type SecretValue struct {
	Kind   string // KindString or KindBytes
	String string // set when Kind == KindString
	Bytes  []byte // set when Kind == KindBytes
}

// StringSecret returns a secret of kind String.
func StringSecret(s string) SecretValue { return SecretValue{Kind: KindString, String: s} }

// BytesSecret returns a secret of kind Bytes.
func BytesSecret(b []byte) SecretValue { return SecretValue{Kind: KindBytes, Bytes: b} }

// Text returns the value as a string; bytes are taken as UTF-8 text.
func (s SecretValue) Text() string {
	if s.Kind == KindBytes {
		return string(s.Bytes)
	}
	return s.String
}

// Format covers every fmt verb, including %v on structs and maps that contain secrets.
func (SecretValue) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedText) }

// LogValue implements slog.LogValuer.
func (SecretValue) LogValue() slog.Value { return slog.StringValue(redactedText) }

// MarshalJSON redacts; MarshalSecrets writes the wire form.
func (SecretValue) MarshalJSON() ([]byte, error) { return json.Marshal(redactedText) }

// UnmarshalJSON decodes the host's adjacently tagged form. Errors name the kind or the problem, never the value.
func (s *SecretValue) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return errors.New(`secret value is null, want {"kind":"String"|"Bytes","value":...}`)
	}
	var raw struct {
		Kind  *string         `json:"kind"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf(`secret value is not an object {"kind":...,"value":...}`)
	}
	if raw.Kind == nil {
		return errors.New(`secret value has no "kind"`)
	}
	value := bytes.TrimSpace(raw.Value)
	if len(value) == 0 {
		return fmt.Errorf(`secret value of kind %q has no "value"`, *raw.Kind)
	}
	switch *raw.Kind {
	case KindString:
		var v string
		if value[0] != '"' || json.Unmarshal(value, &v) != nil {
			return errors.New(`secret value of kind "String" must have a JSON string "value"`)
		}
		*s = StringSecret(v)
	case KindBytes:
		var v []byte
		// encoding/json would also accept a base64 string for []byte; the host only ever sends a number array.
		if value[0] != '[' || json.Unmarshal(value, &v) != nil {
			return errors.New(`secret value of kind "Bytes" must have a "value" array of numbers 0-255`)
		}
		if v == nil {
			v = []byte{}
		}
		*s = BytesSecret(v)
	default:
		return fmt.Errorf(`unknown secret kind %q, want "String" or "Bytes"`, *raw.Kind)
	}
	return nil
}

// MarshalSecrets encodes secrets in the host's wire form, values included: this is what the host seals into
// link secrets and writes into HostData.
func MarshalSecrets(secrets map[string]SecretValue) ([]byte, error) {
	wire, err := wireSecrets(secrets)
	if err != nil {
		return nil, err
	}
	return json.Marshal(wire)
}

type wireSecret struct {
	Kind  string          `json:"kind"`
	Value json.RawMessage `json:"value"`
}

func wireSecrets(secrets map[string]SecretValue) (map[string]wireSecret, error) {
	if secrets == nil {
		return nil, nil
	}
	out := make(map[string]wireSecret, len(secrets))
	for name, s := range secrets {
		var value []byte
		switch s.Kind {
		case KindString:
			v, err := json.Marshal(s.String)
			if err != nil {
				return nil, fmt.Errorf("encode secret %q: %w", name, err)
			}
			value = v
		case KindBytes:
			value = numberArray(s.Bytes)
		default:
			return nil, fmt.Errorf("encode secret %q: unknown kind %q", name, s.Kind)
		}
		out[name] = wireSecret{Kind: s.Kind, Value: value}
	}
	return out, nil
}

// byteArray is []byte in the host's JSON form, an array of numbers (encoding/json would write base64).
type byteArray []byte

func (b byteArray) MarshalJSON() ([]byte, error) { return numberArray(b), nil }

func numberArray(b []byte) []byte {
	out := make([]byte, 0, 2+4*len(b))
	out = append(out, '[')
	for i, c := range b {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendUint(out, uint64(c), 10)
	}
	return append(out, ']')
}

// safeJSONError describes a decoding error without the text encoding/json would quote from the input (a character
// or a number literal), because that input may hold secrets.
func safeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON at byte offset %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("JSON value has the wrong type, want %s", typ.Type)
		}
		return fmt.Errorf("JSON field %q has the wrong type, want %s", typ.Field, typ.Type)
	default:
		// Our own UnmarshalJSON methods never quote values.
		return err
	}
}
