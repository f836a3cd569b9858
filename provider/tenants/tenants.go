// Package tenants owns the tenant links: which application each link serves, whether it may, and what the backend
// does for that application (read with the link's identity, refuse, or fall back to the provider's identity).
//
// Anyone who can deploy a manifest or put a link writes a link, so a link is trusted only for its own source:
//
//   - A link serves one application, named exactly as hosts name it in requests (the manifest's name): its
//     APPLICATION, or without one its source's application, the source id up to its first '-'. wadm names
//     components {app}-{component} with each part lowercased and non-alphanumerics as '_', so that prefix is the
//     exact name only of an application whose name is already written that way; any other (shop-x, Shop) sets
//     APPLICATION. APPLICATION may name an application whose name normalizes to the source's prefix
//     (backend.ApplicationKey), or another one only where the provider's TENANT_CLAIMS lists this exact source for
//     this exact name.
//   - Normalization is not one-to-one: the components of shop-x and shop_x both have ids shop_x-..., so a source
//     cannot tell which of them wrote a link. While links serve one exact name, a link naming another exact name
//     that normalizes alike is held: it serves nothing, and its application fails closed (the collision is logged).
//   - No link takes over an application that links from another source application serve: the first serves until
//     its links are gone. A new link of the same source application joins only with the same settings; one with
//     other settings is held. Links of an application are put again when its manifest changes; while the links
//     that serve an application disagree, it fails closed.
//   - A claim refused for its source (TENANT_CLAIMS, another source application serving) is logged and changes
//     nothing. A held link, or one refused for its settings, holds its application, which then fails closed when
//     nothing else serves it: its requests get an error, never the provider's or another identity's values.
package tenants

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/backend"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// Target is what the registry drives: the backend's per-application identities, keyed by exact application name.
type Target interface {
	SetTenant(app string, s settings.Infisical) error
	RefuseTenant(app, reason string)
	RemoveTenant(app string)
}

// Link is one tenant link as the host delivered it, secrets already decrypted.
type Link struct {
	ID      string // unique per (source, target, namespace, package, name)
	Source  string // source id as the host reports it
	Config  map[string]string
	Secrets map[string]string
	// Unreadable says why the link could not be read (its secrets could not be decrypted): it is refused like a
	// link with bad settings.
	Unreadable string
}

// Registry is safe for concurrent use; every change is applied to the Target before the call returns.
type Registry struct {
	log    *slog.Logger
	target Target

	mu       sync.Mutex
	settings *settings.Settings
	links    map[string]*entry // by Link.ID
	seq      uint64
}

// entry is a link whose claim its source may make: the application it serves, its settings or why they were
// refused, and why it is held when it may not serve.
type entry struct {
	link    Link
	app     string // the application it serves, exactly as requests name it
	group   string // the application key of its source
	tenant  settings.Infisical
	refused string // why its settings were refused; "" = accepted
	held    string // why it serves nothing (a name collision, or other settings than the links serving app); "" = serves
	seq     uint64 // put order
}

// New returns an empty registry for a provider with settings s.
func New(s *settings.Settings, target Target, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{log: log, target: target, settings: s, links: map[string]*entry{}}
}

// SourceApplication is the application key of a link source: its id up to the first '-' (all of it without one),
// normalized. It is the exact name of the application a link without APPLICATION serves.
func SourceApplication(source string) string {
	app, _, _ := strings.Cut(source, "-")
	return backend.ApplicationKey(app)
}

// Put applies a link put. It returns an error when the claim, the link or its settings are refused; in the last two
// cases the link holds its application, which fails closed unless other links serve it.
func (r *Registry) Put(l Link) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	app, group, err := r.claim(l)
	e := &entry{link: l, app: app, group: group}
	if err == nil {
		r.read(e)
		err = r.checkHolder(e)
	}
	if err != nil {
		r.log.Warn("tenant link refused: it may not serve that application, which stays as it was",
			"source", l.Source, "error", err.Error())
		return err
	}
	prev := r.links[l.ID]
	e.held = r.hold(e, prev)
	r.seq++
	e.seq = r.seq
	r.links[l.ID] = e
	r.apply(app)
	if prev != nil && prev.app != app {
		r.apply(prev.app)
	}
	switch {
	case e.held != "":
		r.log.Error("tenant link held: it serves nothing, and its application fails closed unless other links serve it",
			"source", l.Source, "application", app, "reason", e.held)
		return fmt.Errorf("tenant link held (application %s fails closed unless other links serve it): %s", app, e.held)
	case e.refused != "":
		r.logRefused(e)
		return fmt.Errorf("tenant link settings refused (application %s fails closed until they are fixed): %s", app, e.refused)
	}
	return nil
}

// Delete applies a link delete; unknown ids are ignored.
func (r *Registry) Delete(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.links[id]
	if !ok {
		return
	}
	delete(r.links, id)
	r.apply(e.app)
}

// Reconfigure re-reads every link over new provider settings, which links inherit from and whose TENANT_CLAIMS,
// TENANT_AMBIENT_AUTH and POLICY_OVERRIDES decide what links may do: a claim no longer allowed is dropped, a link
// whose settings no longer load fails closed. A held link stays held.
func (r *Registry) Reconfigure(s *settings.Settings) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settings = s
	apps := map[string]bool{}
	for _, e := range r.inOrder() {
		apps[e.app] = true
		if _, _, err := r.claim(e.link); err != nil {
			r.log.Warn("tenant link dropped: the provider's settings no longer let it serve its application",
				"source", e.link.Source, "application", e.app, "error", err.Error())
			delete(r.links, e.link.ID)
			continue
		}
		r.read(e)
		if e.refused != "" {
			r.logRefused(e)
		}
	}
	for _, app := range slices.Sorted(maps.Keys(apps)) {
		r.apply(app)
	}
}

// claim returns the exact application l serves and the application key of its source, or why it may not serve it.
func (r *Registry) claim(l Link) (app, group string, err error) {
	group = SourceApplication(l.Source)
	if group == "" {
		return "", "", fmt.Errorf("the link has no source id, or one that starts with '-', so it belongs to no application")
	}
	named := settings.LinkApplication(settings.Maps(l.Config, l.Secrets))
	if named == "" {
		return group, group, nil
	}
	if backend.ApplicationKey(named) == group || r.allowed(l.Source, named) {
		return named, group, nil
	}
	return "", group, fmt.Errorf("APPLICATION %q is not the application of link source %q (%s); "+
		"to let this source serve it, add %s=%s to the provider's TENANT_CLAIMS", named, l.Source, group, l.Source, named)
}

// allowed reports whether TENANT_CLAIMS lets source serve the application named exactly app.
func (r *Registry) allowed(source, app string) bool {
	return slices.ContainsFunc(r.settings.TenantClaims, func(c settings.TenantClaim) bool {
		return c.Source == source && c.Application == app
	})
}

// checkHolder refuses a claim on an application that links of another source application serve.
func (r *Registry) checkHolder(e *entry) error {
	for id, o := range r.links {
		if id != e.link.ID && o.held == "" && o.app == e.app && o.group != e.group {
			return fmt.Errorf("application %s is already served by the tenant link from %q; delete that link first",
				e.app, o.link.Source)
		}
	}
	return nil
}

// hold says why e, replacing prev (nil for a new link), may not serve its application; "" when it may.
//
// Hosts name applications exactly, but a source names only the application key, shared by every name that
// normalizes alike: a link claiming one of two such names may have been written by either application. So while
// links serve one exact name, a claim of another exact name with the same key is held. And a link that is not
// already one of those serving its application (a link of another component, or of a colliding application that
// names this one) joins them only with the same settings: it never silently replaces the identity they serve with.
func (r *Registry) hold(e, prev *entry) string {
	key := backend.ApplicationKey(e.app)
	for id, o := range r.links {
		if id != e.link.ID && o.held == "" && o.app != e.app && backend.ApplicationKey(o.app) == key {
			return fmt.Sprintf("application names %q and %q normalize alike (%s), so link sources cannot tell their links "+
				"apart, and the tenant link from %q serves %q; rename one of the applications, or delete that link first",
				o.app, e.app, key, o.link.Source, o.app)
		}
	}
	if prev != nil && prev.held == "" && prev.app == e.app {
		return "" // a link that serves the application, put again: see apply when its siblings disagree
	}
	if cur := r.serving(e.app, e.link.ID); cur != nil && !sameSettings(cur, e) {
		return fmt.Sprintf("application %s is served by the tenant link from %q with other settings; a new link of the "+
			"application must have the same settings (change that link, or delete it first)", e.app, cur.link.Source)
	}
	return ""
}

// serving returns the latest link serving app, other than the link with id except; nil when there is none.
func (r *Registry) serving(app, except string) *entry {
	var latest *entry
	for id, e := range r.links {
		if id != except && e.held == "" && e.app == app && (latest == nil || e.seq > latest.seq) {
			latest = e
		}
	}
	return latest
}

func sameSettings(a, b *entry) bool { return a.tenant == b.tenant && a.refused == b.refused }

// read reads e's settings over the provider's, recording why they are refused.
func (r *Registry) read(e *entry) {
	t, err := settings.LoadTenant(settings.Maps(e.link.Config, e.link.Secrets), r.settings)
	e.tenant, e.refused = t.Infisical, ""
	if e.link.Unreadable != "" {
		e.tenant, err = settings.Infisical{}, errors.New(e.link.Unreadable)
	}
	if err != nil {
		e.refused = err.Error()
	}
}

func (r *Registry) logRefused(e *entry) {
	r.log.Error("tenant link settings refused: its application's requests fail until the link is fixed or deleted",
		"source", e.link.Source, "application", e.app, "error", e.refused)
}

// apply makes the target serve app as the links serving it say, fail closed when they disagree or when only held
// links are left, or fall back to the provider's identity when no link is left.
func (r *Registry) apply(app string) {
	latest := r.serving(app, "")
	switch {
	case latest == nil && r.holds(app):
		r.target.RefuseTenant(app, "its tenant link is held: its name collides with another application's, or other links served it with other settings")
	case latest == nil:
		r.target.RemoveTenant(app)
	case r.disagree(latest):
		r.log.Error("tenant links disagree: the application's requests fail until its links have the same settings, "+
			"or only one is left", "application", app, "sources", r.sources(app))
		r.target.RefuseTenant(app, "its tenant links have different settings")
	case latest.refused != "":
		r.target.RefuseTenant(app, "its tenant link's settings were refused")
	default:
		if err := r.target.SetTenant(app, latest.tenant); err != nil {
			r.log.Error("tenant link cannot be served: its application's requests fail until the link is fixed or deleted",
				"source", latest.link.Source, "application", app, "error", err.Error())
			r.target.RefuseTenant(app, "its tenant link's Infisical client could not be made")
		}
	}
}

// holds reports whether a link, held, holds app.
func (r *Registry) holds(app string) bool {
	for _, e := range r.links {
		if e.app == app {
			return true
		}
	}
	return false
}

// disagree reports whether a link serving latest's application has other settings than latest.
func (r *Registry) disagree(latest *entry) bool {
	for _, e := range r.links {
		if e.held == "" && e.app == latest.app && !sameSettings(e, latest) {
			return true
		}
	}
	return false
}

// sources lists, sorted, the sources of the links serving app.
func (r *Registry) sources(app string) []string {
	var out []string
	for _, e := range r.links {
		if e.held == "" && e.app == app {
			out = append(out, e.link.Source)
		}
	}
	slices.Sort(out)
	return out
}

func (r *Registry) inOrder() []*entry {
	out := slices.Collect(maps.Values(r.links))
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return out
}
