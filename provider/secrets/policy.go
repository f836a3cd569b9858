package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// PolicyType is the type wadm and wash write into every policy.
const PolicyType = "properties.secret.wasmcloud.dev/v1alpha1"

// Policy is the decoded application.policy: the wadm secret policy's properties without "backend".
type Policy struct {
	Type       string
	Properties map[string]string
}

// ParsePolicy decodes the policy string of a request. "" (sent by wash and the nats-kv tests) is an empty policy.
// Property values must be strings, as wadm writes them; anything else is an error naming the property, which the
// server returns as PolicyError.
func ParsePolicy(s string) (Policy, error) {
	if strings.TrimSpace(s) == "" {
		return Policy{Properties: map[string]string{}}, nil
	}
	raw := bytes.TrimSpace([]byte(s))
	if raw[0] != '{' {
		return Policy{}, errors.New("policy is not a JSON object")
	}
	var doc struct {
		Type       json.RawMessage `json:"type"`
		Properties json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return Policy{}, fmt.Errorf("policy is not valid JSON: %w", err)
	}
	p := Policy{Properties: map[string]string{}}
	if len(doc.Type) > 0 && !isNull(doc.Type) {
		if err := json.Unmarshal(doc.Type, &p.Type); err != nil {
			return Policy{}, fmt.Errorf(`policy "type" is not a string (got %s)`, jsonKind(doc.Type))
		}
	}
	if len(doc.Properties) == 0 || isNull(doc.Properties) {
		return p, nil
	}
	var props map[string]json.RawMessage
	if jsonKind(doc.Properties) != "an object" || json.Unmarshal(doc.Properties, &props) != nil {
		return Policy{}, fmt.Errorf(`policy "properties" is not an object (got %s)`, jsonKind(doc.Properties))
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names) // name the same offender every time
	for _, name := range names {
		var v string
		if raw := props[name]; isNull(raw) || json.Unmarshal(raw, &v) != nil {
			return Policy{}, fmt.Errorf("policy property %q is not a string (got %s)", name, jsonKind(raw))
		}
		p.Properties[name] = v
	}
	return p, nil
}

func isNull(raw []byte) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// jsonKind names the JSON type of raw for error messages, without echoing the value.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '"':
		return "a string"
	default:
		return "a number"
	}
}
