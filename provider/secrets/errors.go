package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrorKind is a variant of the host's GetSecretError enum; the value is the exact JSON tag.
type ErrorKind string

// The variants the host knows. Any other tag makes the host fail to decode the reply and lose the message.
const (
	KindInvalidEntityJWT ErrorKind = "InvalidEntityJWT"
	KindInvalidHostJWT   ErrorKind = "InvalidHostJWT"
	KindSecretNotFound   ErrorKind = "SecretNotFound"
	KindInvalidXKey      ErrorKind = "InvalidXKey"
	KindEncryptionError  ErrorKind = "EncryptionError"
	KindDecryptionError  ErrorKind = "DecryptionError"
	KindUpstreamError    ErrorKind = "UpstreamError"
	KindUnauthorized     ErrorKind = "Unauthorized"
	KindInvalidRequest   ErrorKind = "InvalidRequest"
	KindInvalidPayload   ErrorKind = "InvalidPayload"
	KindInvalidHeaders   ErrorKind = "InvalidHeaders"
	KindPolicyError      ErrorKind = "PolicyError"
	KindOther            ErrorKind = "Other"
)

// display is the host's Display text per variant (thiserror in wasmcloud-secrets-types); %s is the message.
var display = map[ErrorKind]string{
	KindInvalidEntityJWT: "Invalid Entity JWT: %s",
	KindInvalidHostJWT:   "Invalid Host JWT: %s",
	KindSecretNotFound:   "Secret not found",
	KindInvalidXKey:      "Invalid XKey",
	KindEncryptionError:  "Error encrypting secret",
	KindDecryptionError:  "Error decrypting secret",
	KindUpstreamError:    "Error fetching secret: %s",
	KindUnauthorized:     "Error fetching secret: unauthorized",
	KindInvalidRequest:   "Invalid request",
	KindInvalidPayload:   "Invalid payload",
	KindInvalidHeaders:   "Invalid headers",
	KindPolicyError:      "Error processing policies: $%s", // the "$" is in the host's source
	KindOther:            "Encountered an unknown error fetching secret: %s",
}

// Known reports whether k is a variant the host can decode.
func (k ErrorKind) Known() bool {
	_, ok := display[k]
	return ok
}

// HasMessage reports whether the variant carries a message (a newtype variant in serde terms).
func (k ErrorKind) HasMessage() bool {
	switch k {
	case KindInvalidEntityJWT, KindInvalidHostJWT, KindUpstreamError, KindPolicyError, KindOther:
		return true
	}
	return false
}

// Error is a GetSecretError: what the server replies and what the client returns for a server-side failure.
type Error struct {
	Kind    ErrorKind
	Message string
}

// NewError returns an error of the given kind; msg is dropped for unit variants, which cannot carry it.
func NewError(kind ErrorKind, msg string) *Error {
	if !kind.HasMessage() {
		msg = ""
	}
	return &Error{Kind: kind, Message: msg}
}

// Error returns the text the host shows for this error.
func (e *Error) Error() string {
	format, ok := display[e.Kind]
	if !ok {
		return fmt.Sprintf("unknown secrets error %q: %s", string(e.Kind), e.Message)
	}
	if e.Kind.HasMessage() {
		return fmt.Sprintf(format, e.Message)
	}
	return format
}

// Is matches another *Error of the same kind, and the same message when the target has one, so that
// errors.Is(err, NewError(KindSecretNotFound, "")) works.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) || t == nil {
		return false
	}
	return e.Kind == t.Kind && (t.Message == "" || t.Message == e.Message)
}

// MarshalJSON writes serde's externally tagged form: "Kind" for unit variants, {"Kind":"msg"} for the others.
// A kind the host does not know is sent as Other, because an unknown tag would make the host drop the message.
func (e *Error) MarshalJSON() ([]byte, error) {
	kind, msg := e.Kind, e.Message
	if !kind.Known() {
		kind, msg = KindOther, fmt.Sprintf("%s: %s", e.Kind, e.Message)
	}
	if !kind.HasMessage() {
		return json.Marshal(string(kind))
	}
	return encodeJSON(map[string]string{string(kind): msg})
}

// UnmarshalJSON accepts what serde accepts: "Unit", {"Unit":null} and {"Newtype":"msg"}. A bare string for a
// message variant and unknown variants are errors, as they are for the host.
func (e *Error) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var tag string
		if err := json.Unmarshal(data, &tag); err != nil {
			return fmt.Errorf("secrets error: %w", err)
		}
		kind := ErrorKind(tag)
		switch {
		case !kind.Known():
			return fmt.Errorf("secrets error: unknown variant %q", tag)
		case kind.HasMessage():
			return fmt.Errorf("secrets error: invalid type: unit variant, expected newtype variant %q", tag)
		}
		*e = Error{Kind: kind}
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("secrets error: want a string or an object: %w", err)
	}
	if len(obj) != 1 {
		return fmt.Errorf("secrets error: want exactly one variant, found %d", len(obj))
	}
	for tag, raw := range obj {
		kind := ErrorKind(tag)
		if !kind.Known() {
			return fmt.Errorf("secrets error: unknown variant %q", tag)
		}
		isNull := bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
		if !kind.HasMessage() {
			if !isNull {
				return fmt.Errorf("secrets error: unit variant %q has a value", tag)
			}
			*e = Error{Kind: kind}
			return nil
		}
		var msg string
		if isNull {
			return fmt.Errorf("secrets error: variant %q needs a string message", tag)
		}
		if err := json.Unmarshal(raw, &msg); err != nil {
			return fmt.Errorf("secrets error: variant %q needs a string message: %w", tag, err)
		}
		*e = Error{Kind: kind, Message: msg}
	}
	return nil
}
