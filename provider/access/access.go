// Package access decides whether an entity (a component or provider, identified by its verified wascap JWT) may read
// a secret. A valid signature proves who signed the entity, not that the signer should get secrets, so two
// independent checks apply:
//
//  1. Trusted issuers (TRUSTED_ISSUERS): the entity's issuer must be one of the listed account public keys (A...),
//     or the list must contain "*" (any issuer). An empty list trusts nobody: every request is denied.
//  2. Access rules (ACCESS_RULES), optional: a JSON array of rule objects. When rules are set, a request is allowed
//     only if at least one rule matches it. Without rules every trusted issuer may read every secret.
//
// A rule has these optional fields, each a glob matched against the request:
//
//	issuer       the entity JWT's iss (A...)
//	subject      the entity JWT's sub (M... for components, V... for providers)
//	name         the entity's wascap name
//	application  the wadm application name ("" when the entity was started without wadm)
//	project      the Infisical project ID the request resolves to
//	environment  the Infisical environment slug
//	key          the secret's full path, e.g. /shop/DB_PASSWORD
//
// A rule matches when every field it sets matches; an empty object {} matches everything. Rules are numbered from 0
// in the order of the array, and the first match wins (it is named in the decision's reason).
//
// Globs use path.Match syntax: '*' matches any run of characters except '/', '?' one character except '/',
// '[a-z]' a class, '\\' escapes. Because '*' stops at '/', "/shop/*" matches "/shop/API_KEY" but not
// "/shop/db/PASSWORD". One extension: a pattern ending in "/**" matches anything below its prefix at any depth, so
// "/shop/**" matches "/shop/API_KEY" and "/shop/db/PASSWORD" (but not "/shop" itself), and a pattern that is
// exactly "**" matches any value. "**" anywhere else is rejected, because path.Match would silently treat it as '*'.
//
// A key with "." or ".." segments never matches a rule that sets key: callers resolve keys first, and a path that
// still climbs must not slip past a prefix rule.
package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"
)

// Subject is who asks for what. Every field is compared verbatim.
type Subject struct {
	Issuer, Subject, Name, Application, Project, Environment, Key string
}

// Policy is an immutable access policy, safe for concurrent use.
type Policy struct {
	anyIssuer bool
	issuers   map[string]bool
	rules     []rule
}

// fields lists the rule fields in a stable order, with how to read each from a Subject.
var fields = []struct {
	name string
	get  func(Subject) string
}{
	{"issuer", func(s Subject) string { return s.Issuer }},
	{"subject", func(s Subject) string { return s.Subject }},
	{"name", func(s Subject) string { return s.Name }},
	{"application", func(s Subject) string { return s.Application }},
	{"project", func(s Subject) string { return s.Project }},
	{"environment", func(s Subject) string { return s.Environment }},
	{"key", func(s Subject) string { return s.Key }},
}

const keyField = "key"

type condition struct {
	field   int // index into fields
	pattern string
}

type rule struct{ conds []condition }

// New builds a policy. trustedIssuers holds account public keys or "*"; blank entries are ignored. rulesJSON is the
// ACCESS_RULES value ("" = no rules).
func New(trustedIssuers []string, rulesJSON string) (*Policy, error) {
	p := &Policy{issuers: map[string]bool{}}
	for _, iss := range trustedIssuers {
		iss = strings.TrimSpace(iss)
		switch {
		case iss == "":
		case iss == "*":
			p.anyIssuer = true
		default:
			if err := checkAccountKey(iss); err != nil {
				return nil, fmt.Errorf("TRUSTED_ISSUERS: %w", err)
			}
			p.issuers[iss] = true
		}
	}
	rules, err := parseRules(rulesJSON)
	if err != nil {
		return nil, fmt.Errorf("ACCESS_RULES: %w", err)
	}
	p.rules = rules
	return p, nil
}

// checkAccountKey explains why key is not an account public key, without ever echoing a seed.
func checkAccountKey(key string) error {
	if strings.HasPrefix(key, "S") && nkeys.Prefix(key) == nkeys.PrefixByteSeed {
		return errors.New("an entry is a secret seed (S...), not a public key: remove it at once, and rotate that key; " +
			"list account public keys (A...) as shown by wash inspect")
	}
	if _, err := nkeys.FromPublicKey(key); err != nil {
		return fmt.Errorf("%q is not an account public key (A...): %w", key, err)
	}
	if !strings.HasPrefix(key, "A") {
		return fmt.Errorf("%q is not an account public key (A...): it is a %s key", key, nkeys.Prefix(key))
	}
	return nil
}

func parseRules(s string) ([]rule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil || raw == nil {
		if err == nil {
			err = errors.New("got null")
		}
		return nil, fmt.Errorf(`must be a JSON array of rule objects such as [{"application":"shop","key":"/shop/**"}]: %w`, err)
	}
	rules := make([]rule, 0, len(raw))
	for i, r := range raw {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(r, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("rule %d: must be a JSON object with fields among %s", i, fieldNames())
		}
		var ru rule
		for fi, f := range fields {
			v, ok := obj[f.name]
			if !ok {
				continue
			}
			delete(obj, f.name)
			var pattern *string
			if err := json.Unmarshal(v, &pattern); err != nil || pattern == nil {
				return nil, fmt.Errorf("rule %d: field %q must be a string (a glob)", i, f.name)
			}
			if err := checkPattern(*pattern); err != nil {
				return nil, fmt.Errorf("rule %d: field %q: %w", i, f.name, err)
			}
			ru.conds = append(ru.conds, condition{field: fi, pattern: *pattern})
		}
		if len(obj) > 0 {
			unknown := slices.Sorted(maps.Keys(obj))
			return nil, fmt.Errorf("rule %d: unknown field %q (known fields: %s)", i, unknown[0], fieldNames())
		}
		rules = append(rules, ru)
	}
	return rules, nil
}

func fieldNames() string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

func checkPattern(pattern string) error {
	if pattern == "**" {
		return nil
	}
	prefix := strings.TrimSuffix(pattern, "/**")
	if strings.Contains(prefix, "**") {
		return fmt.Errorf("glob %q: \"**\" is only supported as a whole pattern or a trailing \"/**\"", pattern)
	}
	if _, err := path.Match(prefix, ""); err != nil {
		return fmt.Errorf("glob %q: %w", pattern, err)
	}
	return nil
}

// match reports whether value matches a pattern that checkPattern accepted.
func match(pattern, value string) bool {
	if pattern == "**" {
		return true
	}
	prefix, deep := strings.CutSuffix(pattern, "/**")
	if !deep {
		ok, _ := path.Match(pattern, value)
		return ok
	}
	// Try every prefix of value that ends just before a '/' with something after it.
	for i := 0; i < len(value)-1; i++ {
		if value[i] != '/' {
			continue
		}
		if ok, _ := path.Match(prefix, value[:i]); ok {
			return true
		}
	}
	return false
}

func climbs(key string) bool {
	for seg := range strings.SplitSeq(key, "/") {
		if seg == ".." || seg == "." {
			return true
		}
	}
	return false
}

func (r rule) matches(s Subject) bool {
	for _, c := range r.conds {
		f := fields[c.field]
		v := f.get(s)
		if f.name == keyField && climbs(v) {
			return false
		}
		if !match(c.pattern, v) {
			return false
		}
	}
	return true
}

// Check decides whether s may read its secret, and says why in words fit for a log line.
func (p *Policy) Check(s Subject) (ok bool, reason string) {
	if !p.anyIssuer && !p.issuers[s.Issuer] {
		if len(p.issuers) == 0 {
			return false, "no trusted issuers configured (set TRUSTED_ISSUERS)"
		}
		return false, fmt.Sprintf("issuer %s is not in TRUSTED_ISSUERS", s.Issuer)
	}
	if len(p.rules) == 0 {
		return true, "trusted issuer"
	}
	for i, r := range p.rules {
		if r.matches(s) {
			return true, fmt.Sprintf("allowed by rule %d", i)
		}
	}
	return false, "no access rule matches"
}

// TrustsNobody reports that every request will be denied because no issuer is trusted.
func (p *Policy) TrustsNobody() bool {
	return !p.anyIssuer && len(p.issuers) == 0
}

// Rules returns how many access rules the policy has (0 = every trusted issuer may read everything).
func (p *Policy) Rules() int {
	return len(p.rules)
}
