package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/access"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// lookup is one verified get on its way through the backend: who asks, as which identity it reads, and where.
type lookup struct {
	v       *secrets.Verified
	opts    options
	version int
	policy  *access.Policy
	caches  *caches
	id      *identity
	// subject is the requester asking for the secret the request names; checks of other secrets (an import's
	// origin, a reference) copy it and change only Environment and Key.
	subject access.Subject
	// overrides are the policy properties POLICY_OVERRIDES lets move a read; references and imports are held to them.
	overrides []string
	folder    string
	name      string
}

// at is where a secret lives in the lookup's project.
type at struct{ environment, folder, name string }

func (a at) key() string { return joinKey(a.folder, a.name) }

// Get implements secrets.Handler: it resolves the request to an identity and a key, asks the access policy, fetches
// the value (its origin and references checked as well), and shapes the reply as the request asks.
func (b *Backend) Get(ctx context.Context, v *secrets.Verified) (*secrets.Secret, error) {
	l, err := b.resolve(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := b.authorize(ctx, l.policy, l.subject, v); err != nil {
		return nil, err
	}
	value, version, err := b.fetch(ctx, l)
	if err != nil {
		return nil, err
	}
	return b.shape(l, value, version)
}

// resolve validates the request and resolves its identity, project, environment and key.
func (b *Backend) resolve(ctx context.Context, v *secrets.Verified) (*lookup, error) {
	opts, err := parseOptions(v.Policy.Properties)
	if err != nil {
		return nil, err
	}
	if len(opts.ignored) > 0 {
		b.log.Debug("ignoring policy properties this backend does not use", "properties", opts.ignored)
	}
	l := &lookup{v: v, opts: opts}
	if l.version, err = parseVersion(v.Request.Version); err != nil {
		secrets.Annotate(ctx, slog.String("detail", err.Error()))
		return nil, secrets.NewError(secrets.KindInvalidRequest, "")
	}
	b.serveAs(l, v.Application)
	if l.id.refused != "" {
		secrets.Annotate(ctx, slog.String("identity", l.id.label), slog.String("detail", l.id.refused))
		return nil, secrets.NewError(secrets.KindUpstreamError, fmt.Sprintf(
			"the tenant link of application %s was refused (%s); the provider's log names the problem", l.id.label, l.id.refused))
	}
	if err := b.locate(ctx, l); err != nil {
		return nil, err
	}
	return l, nil
}

// serveAs takes what serves application app from the settings in force: the policy, the caches, the overrides, and
// the identity (app's tenant's, else the provider's).
func (b *Backend) serveAs(l *lookup, app string) {
	var alike string
	b.mu.RLock()
	l.policy, l.caches, l.overrides, l.id = b.policy, b.caches, b.overrides, b.defaults
	if t, ok := b.tenants[app]; ok && app != "" {
		l.id = t
	} else if app != "" {
		alike = b.tenantAlike(app)
	}
	b.mu.RUnlock()
	if alike != "" {
		b.log.Warn("application served by the provider's identity, though a tenant link serves an application whose name "+
			"normalizes alike; if that link is this application's, set APPLICATION to this application's exact name on it",
			"application", app, "tenant", alike)
	}
}

// locate sets where the lookup reads: the identity's project, environment and folder, as far as the policy may move
// them, and the key's folder and name there.
func (b *Backend) locate(ctx context.Context, l *lookup) error {
	inf, v := l.id.settings, l.v
	if err := checkOverrides(l.opts, inf, l.overrides); err != nil {
		return err
	}
	project := cmp.Or(l.opts.projectID, inf.ProjectID)
	environment := cmp.Or(l.opts.environment, inf.Environment)
	base := cmp.Or(l.opts.secretPath, inf.SecretPath)
	var err error
	if l.folder, l.name, err = resolveKey(base, v.Request.Key); err != nil {
		secrets.Annotate(ctx, slog.String("detail", err.Error()))
		return secrets.NewError(secrets.KindInvalidRequest, "")
	}
	l.subject = access.Subject{
		Issuer: v.Entity.Issuer, Subject: v.Entity.Subject, Name: v.Entity.Name, Application: v.Application,
		Project: project, Environment: environment, Key: joinKey(l.folder, l.name),
	}
	secrets.Annotate(ctx, slog.String("identity", l.id.label), slog.String("project", project),
		slog.String("environment", environment), slog.String("path", l.subject.Key))
	return nil
}

// fetch reads the secret the lookup asks for and returns its value, with its references expanded when asked (each
// reference, and an imported value's origin, checked against the policy), and its version.
func (b *Backend) fetch(ctx context.Context, l *lookup) (string, int, error) {
	asked := at{l.subject.Environment, l.folder, l.name}
	sec, err := b.read(ctx, l, asked, l.version, l.opts.includeImports)
	if err != nil {
		return "", 0, b.upstreamFailure(ctx, asked.key(), err)
	}
	origin, err := b.checkOrigin(ctx, l, asked, sec)
	if err != nil {
		return "", 0, err
	}
	value := sec.Value
	if l.opts.expandReferences {
		if value, err = b.expand(ctx, l, origin, value); err != nil {
			return "", 0, err
		}
	}
	return value, sec.Version, nil
}

// shape makes the reply: the request's field of a JSON value, encoded as the policy asks.
func (b *Backend) shape(l *lookup, value string, version int) (*secrets.Secret, error) {
	if f := l.v.Request.Field; f != nil && *f != "" {
		var err error
		if value, err = selectField(value, *f); err != nil {
			b.log.Info("secret field not found", "key", l.subject.Key, "field", *f, "reason", err.Error())
			return nil, secrets.NewError(secrets.KindSecretNotFound, "")
		}
	}
	return buildSecret(value, version, l.opts.base64)
}

// read reads one secret raw (references unexpanded) as the lookup's identity, through the cache tiers (tiers.go).
// Infisical is asked for expansion never: the backend expands references itself (expand.go), so that each is checked.
func (b *Backend) read(ctx context.Context, l *lookup, a at, version int, imports bool) (infisical.Secret, error) {
	key := cacheKey{identity: l.id.id, project: l.subject.Project, environment: a.environment, folder: a.folder,
		name: a.name, version: version, imports: imports}
	ref := infisical.SecretRef{ProjectID: l.subject.Project, Environment: a.environment, Path: a.folder, Name: a.name,
		Version: version, IncludeImports: imports}
	sec, result, staleFor, err := b.lookup(ctx, l.caches, l.id, key, ref)
	secrets.Annotate(ctx, slog.String("cache", string(result)))
	if err == nil && result == cache.Stale {
		b.log.Warn("Infisical failing: serving a stale value", "key", a.key(), "identity", l.id.label,
			"stale_for", staleFor.Round(time.Second).String())
	}
	return sec, err
}

// checkOrigin returns where the value Infisical answered really lives. With include_imports Infisical may answer
// from an imported folder or environment: the value's own references resolve there, and the rules must allow where
// the value comes from, not only the path that was asked for. Infisical names only the first-level import of a
// nested one, and older versions name no folder, so with rules an origin other than the folder asked, or one
// Infisical did not name, is confirmed by reading the secret there directly; a value whose origin cannot be
// established is not served. Without rules every origin is allowed alike: Infisical's word is taken, with no
// authorization and no confirmation read, unless it names no environment while POLICY_OVERRIDES confines the request
// to its own (see confine).
func (b *Backend) checkOrigin(ctx context.Context, l *lookup, asked at, sec infisical.Secret) (at, error) {
	if !l.opts.includeImports {
		return asked, nil // without imports the value is the folder's own
	}
	origin := asked
	if sec.Environment != "" {
		origin.environment = sec.Environment
	}
	if sec.Path != "" {
		origin.folder = path.Clean("/" + sec.Path)
	}
	if err := b.confine(ctx, l, origin, asked, "an imported value"); err != nil {
		return at{}, err
	}
	reported := sec.Environment != "" && sec.Path != ""
	if origin == asked && reported {
		return origin, nil // Infisical found it in the folder asked, and said so
	}
	secrets.Annotate(ctx, slog.String("imported_from", origin.environment+":"+origin.key()))
	envKnown := sec.Environment != "" || slices.Contains(l.overrides, PropEnvironment)
	if l.policy.Rules() == 0 && envKnown {
		return origin, nil
	}
	where := origin.environment + ":" + origin.folder
	actual := l.subject
	actual.Environment, actual.Key = origin.environment, origin.key()
	if err := b.authorize(ctx, l.policy, actual, l.v); err != nil {
		return at{}, err
	}
	version := 0 // a version selects one in the folder asked; imports answer with the latest
	if origin == asked {
		version = l.version
	}
	direct, err := b.read(ctx, l, origin, version, false)
	switch {
	case errors.Is(err, infisical.ErrNotFound):
		return at{}, b.unestablished(ctx, l, asked, where+" does not hold it itself: it came through a nested import, or Infisical did not say from where")
	case err != nil:
		return at{}, b.upstreamFailure(ctx, origin.key(), err)
	case direct.Value != sec.Value:
		return at{}, b.unestablished(ctx, l, asked, where+" holds another value: it came through a nested import, or changed meanwhile")
	}
	return origin, nil
}

// confine refuses a read that a reference or an imported value would make in another environment than the request's,
// unless POLICY_OVERRIDES allows environment overrides (the check checkOverrides makes of the policy): what a manifest
// may not ask for through its policy, a value may not bring in through its references or imports either, even where
// the rules name no environment. Every read is made in the request's project (Infisical's references and imports name
// only an environment and a folder), so the project cannot move this way; a folder can, and stays the rules' business,
// as with secret_path. top is the secret the request asked for.
func (b *Backend) confine(ctx context.Context, l *lookup, target, top at, what string) error {
	if overrideAllowed(l.overrides, PropEnvironment, target.environment, l.subject.Environment) {
		return nil
	}
	secrets.Annotate(ctx, slog.String("decision", "denied"),
		slog.String("detail", what+" from another environment, which POLICY_OVERRIDES does not allow"))
	b.log.Warn("access denied: "+what+" comes from another environment than the request's, and POLICY_OVERRIDES does "+
		"not allow environment overrides", "entity", l.v.Entity.Subject, "application", l.v.Application,
		"environment", l.subject.Environment, "key", top.key(), "from", target.environment+":"+target.key())
	return secrets.NewError(secrets.KindUnauthorized, "")
}

// unestablished refuses an imported value whose origin is unknown: the rules cannot be checked against it.
func (b *Backend) unestablished(ctx context.Context, l *lookup, asked at, why string) error {
	secrets.Annotate(ctx, slog.String("decision", "denied"), slog.String("detail", "origin of an imported value unknown"))
	b.log.Warn("access denied: an imported value whose origin cannot be established is not served", "entity", l.v.Entity.Subject,
		"application", l.v.Application, "environment", asked.environment, "key", asked.key(), "reason", why)
	return secrets.NewError(secrets.KindUnauthorized, "")
}

// authorize asks the access policy and logs a denial; the error is the wire error to send.
func (b *Backend) authorize(ctx context.Context, policy *access.Policy, s access.Subject, v *secrets.Verified) error {
	ok, reason := b.checkAccess(ctx, policy, s)
	if !ok {
		secrets.Annotate(ctx, slog.String("decision", "denied"))
		b.log.Warn("access denied", "entity", v.Entity.Subject, "entity_name", v.Entity.Name, "issuer", v.Entity.Issuer,
			"application", v.Application, "environment", s.Environment, "key", s.Key, "reason", reason)
		return secrets.NewError(secrets.KindUnauthorized, "")
	}
	secrets.Annotate(ctx, slog.String("decision", "allowed"))
	return nil
}

// upstreamFailure maps an error from the cache or Infisical to the one wire error the host sees.
func (b *Backend) upstreamFailure(ctx context.Context, key string, err error) error {
	if errors.Is(err, infisical.ErrNotFound) {
		secrets.Annotate(ctx, slog.String("detail", "not found in Infisical"))
		return secrets.NewError(secrets.KindSecretNotFound, "")
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		msg = "Infisical did not answer in time: " + msg
	}
	b.log.Warn("Infisical request failed", "key", key, "error", msg)
	return secrets.NewError(secrets.KindUpstreamError, msg)
}

func joinKey(folder, name string) string {
	if folder == "/" {
		return "/" + name
	}
	return folder + "/" + name
}
