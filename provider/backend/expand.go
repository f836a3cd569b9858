package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// Reference expansion (expand_references). Infisical expands ${...} references with the identity's rights, which
// reach every folder and environment the identity may read, further than the access rules may let the requester.
// So the backend never asks Infisical to expand: it reads each referenced secret raw, as the same identity and
// through the cache, and the access rules must allow the requester that secret too, or the request is answered
// Unauthorized. An expanded value therefore never carries a secret the rules would refuse.
//
// The syntax is Infisical's: ${NAME} is NAME in the environment and folder of the secret holding the reference,
// ${env.NAME} is NAME at the root of environment env, ${env.a.b.NAME} is NAME in folder /a/b of env. A reference is
// only ${...} around letters, digits, '-', '_' and '.'; anything else stays as written, as does a reference to a
// secret that does not exist or is empty (as Infisical leaves it). References nest up to maxReferenceDepth deep;
// a reference back to a secret being expanded stays as written.
const (
	maxReferenceDepth = 10      // Infisical's MAX_SECRET_REFERENCE_DEPTH
	maxReferences     = 64      // distinct secrets one request may expand, each one Infisical read at most
	maxExpandedSize   = 1 << 20 // a NATS message carries the reply: 1 MiB is the default max_payload
)

var referencePattern = regexp.MustCompile(`\$\{([a-zA-Z0-9_.-]+)\}`)

// expansion is the state of one request's expansion.
type expansion struct {
	b    *Backend
	l    *lookup
	read map[at]string // secrets read so far: value, or "" when missing or empty (left as written)
}

// expand expands the references in value, which lives at origin.
func (b *Backend) expand(ctx context.Context, l *lookup, origin at, value string) (string, error) {
	x := &expansion{b: b, l: l, read: map[at]string{}}
	return x.expand(ctx, origin, value, 0, []at{origin})
}

func (x *expansion) expand(ctx context.Context, holder at, value string, depth int, chain []at) (string, error) {
	matches := referencePattern.FindAllStringSubmatchIndex(value, -1)
	if len(matches) == 0 {
		return value, nil
	}
	var out strings.Builder
	last := 0
	for _, m := range matches {
		out.WriteString(value[last:m[0]])
		last = m[1]
		text, err := x.resolve(ctx, holder, value[m[2]:m[3]], depth, chain)
		if err != nil {
			return "", err
		}
		if text == "" {
			text = value[m[0]:m[1]] // as Infisical: what resolves to nothing stays as written
		}
		out.WriteString(text)
		if out.Len() > maxExpandedSize {
			return "", secrets.NewError(secrets.KindOther, fmt.Sprintf(
				"the secret's references expand to more than %d bytes; expand_references cannot serve it", maxExpandedSize))
		}
	}
	out.WriteString(value[last:])
	return out.String(), nil
}

// resolve returns the expanded value of one reference, "" to leave it as written, or the request's error.
func (x *expansion) resolve(ctx context.Context, holder at, ref string, depth int, chain []at) (string, error) {
	target, ok := parseReference(holder, ref)
	if !ok || depth >= maxReferenceDepth || slices.Contains(chain, target) {
		return "", nil
	}
	if err := x.check(ctx, target, chain[0]); err != nil {
		return "", err
	}
	raw, err := x.fetch(ctx, target)
	if err != nil || raw == "" {
		return "", err
	}
	return x.expand(ctx, target, raw, depth+1, append(chain[:len(chain):len(chain)], target))
}

// check asks POLICY_OVERRIDES and the rules whether the requester may read target, which the value at top refers to.
func (x *expansion) check(ctx context.Context, target, top at) error {
	if err := x.b.confine(ctx, x.l, target, top, "a reference"); err != nil {
		return err
	}
	s := x.l.subject
	s.Environment, s.Key = target.environment, target.key()
	if err := x.b.authorize(ctx, x.l.policy, s, x.l.v); err != nil {
		x.b.log.Warn("expand_references: a reference is refused, so the value is not served", "key", top.key(),
			"reference", target.environment+":"+target.key())
		return err
	}
	return nil
}

// fetch reads target raw, once per request; "" means it does not exist (or is empty).
func (x *expansion) fetch(ctx context.Context, target at) (string, error) {
	if v, ok := x.read[target]; ok {
		return v, nil
	}
	if len(x.read) >= maxReferences {
		return "", secrets.NewError(secrets.KindOther, fmt.Sprintf(
			"the secret refers to more than %d secrets; expand_references cannot serve it", maxReferences))
	}
	sec, err := x.b.read(ctx, x.l, target, 0, false)
	switch {
	case errors.Is(err, infisical.ErrNotFound):
		secrets.Annotate(ctx, slog.String("detail", "a reference names no secret; left as written"))
		sec.Value = ""
	case err != nil:
		return "", x.b.upstreamFailure(ctx, target.key(), err)
	}
	x.read[target] = sec.Value
	return sec.Value, nil
}

// parseReference reads ${...}'s inside: NAME, env.NAME or env.a.b.NAME, relative to the secret holding it.
func parseReference(holder at, ref string) (at, bool) {
	parts := strings.Split(ref, ".")
	if len(parts) == 1 {
		return at{holder.environment, holder.folder, parts[0]}, true
	}
	for _, p := range parts {
		if p == "" {
			return at{}, false
		}
	}
	if !validSlug(parts[0]) {
		return at{}, false
	}
	folder := "/" + strings.Join(parts[1:len(parts)-1], "/")
	return at{parts[0], folder, parts[len(parts)-1]}, true
}
