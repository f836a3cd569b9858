// Package tenants owns the tenant links: which application each link serves, whether it may, and what the backend
// does for that application (read with the link's identity, refuse, or fall back to the provider's identity).
//
// Anyone who can deploy a manifest or put a link writes a link, so a link is trusted only for its own source:
//
//   - A link serves the application its source belongs to: wadm names components {app}-{component} (each part
//     lowercased, non-alphanumerics as '_'), so the source id up to its first '-', normalized like request
//     application names (backend.ApplicationKey). APPLICATION may name that same application, or another one only
//     where the provider's TENANT_CLAIMS lists this exact source for it.
//   - No link takes over an application that links from another source application already serve: the first
//     serves until its links are gone. Among the links of one source application (one per component), the latest
//     put wins, as links are re-put when a manifest changes.
//   - A refused claim is logged and changes nothing. A link refused for its settings still holds its application,
//     which then fails closed: its requests get an error, never the provider's or another identity's values.
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

// Target is what the registry drives: the backend's per-application identities, keyed by application key.
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

// entry is an accepted claim: the link, the application it serves, and its settings or why they were refused.
type entry struct {
	link    Link
	app     string // the application it serves (key)
	group   string // the application its source belongs to (key)
	tenant  settings.Infisical
	refused string // why its settings were refused; "" = accepted
	seq     uint64 // put order: the latest link of an application wins
}

// New returns an empty registry for a provider with settings s.
func New(s *settings.Settings, target Target, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{log: log, target: target, settings: s, links: map[string]*entry{}}
}

// SourceApplication is the application key of a link source: its id up to the first '-' (all of it without one).
func SourceApplication(source string) string {
	app, _, _ := strings.Cut(source, "-")
	return backend.ApplicationKey(app)
}

// Put applies a link put. It returns an error when the claim or the settings are refused; in the second case the
// link's application fails closed until the link is fixed or deleted.
func (r *Registry) Put(l Link) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	app, group, err := r.claim(l)
	if err == nil {
		err = r.checkHolder(l, app, group)
	}
	if err != nil {
		r.log.Warn("tenant link refused: it may not serve that application, which stays as it was",
			"source", l.Source, "error", err.Error())
		return err
	}
	e := &entry{link: l, app: app, group: group}
	r.load(e)
	r.seq++
	e.seq = r.seq
	prev := r.links[l.ID]
	r.links[l.ID] = e
	r.apply(app)
	if prev != nil && prev.app != app {
		r.apply(prev.app)
	}
	if e.refused != "" {
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

// Reconfigure re-reads every link over new provider settings, which links inherit from and whose TENANT_CLAIMS and
// TENANT_AMBIENT_AUTH decide what links may do: a claim no longer allowed is dropped, a link whose settings no
// longer load fails closed.
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
		r.load(e)
	}
	for _, app := range slices.Sorted(maps.Keys(apps)) {
		r.apply(app)
	}
}

// claim returns the application l serves and the one its source belongs to, or why it may not serve it.
func (r *Registry) claim(l Link) (app, group string, err error) {
	group = SourceApplication(l.Source)
	if group == "" {
		return "", "", fmt.Errorf("the link has no source id, or one that starts with '-', so it belongs to no application")
	}
	named := settings.LinkApplication(settings.Maps(l.Config, l.Secrets))
	if named == "" {
		return group, group, nil
	}
	app = backend.ApplicationKey(named)
	if app == group || r.allowed(l.Source, app) {
		return app, group, nil
	}
	return "", group, fmt.Errorf("APPLICATION %q is not the application of link source %q (%s); "+
		"to let this source serve it, add %s=%s to the provider's TENANT_CLAIMS", named, l.Source, group, l.Source, named)
}

func (r *Registry) allowed(source, app string) bool {
	return slices.ContainsFunc(r.settings.TenantClaims, func(c settings.TenantClaim) bool {
		return c.Source == source && backend.ApplicationKey(c.Application) == app
	})
}

// checkHolder refuses a claim on an application that links of another source application serve.
func (r *Registry) checkHolder(l Link, app, group string) error {
	for id, e := range r.links {
		if id != l.ID && e.app == app && e.group != group {
			return fmt.Errorf("application %s is already served by the tenant link from %q; delete that link first",
				app, e.link.Source)
		}
	}
	return nil
}

// load reads e's settings over the provider's, recording why they are refused.
func (r *Registry) load(e *entry) {
	t, err := settings.LoadTenant(settings.Maps(e.link.Config, e.link.Secrets), r.settings)
	e.tenant, e.refused = t.Infisical, ""
	if e.link.Unreadable != "" {
		e.tenant, err = settings.Infisical{}, errors.New(e.link.Unreadable)
	}
	if err != nil {
		e.refused = err.Error()
		r.log.Error("tenant link settings refused: its application's requests fail until the link is fixed or deleted",
			"source", e.link.Source, "application", e.app, "error", e.refused)
	}
}

// apply makes the target serve app as its latest link says, or with the provider's identity when none is left.
func (r *Registry) apply(app string) {
	var latest *entry
	for _, e := range r.links {
		if e.app == app && (latest == nil || e.seq > latest.seq) {
			latest = e
		}
	}
	switch {
	case latest == nil:
		r.target.RemoveTenant(app)
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

func (r *Registry) inOrder() []*entry {
	out := slices.Collect(maps.Values(r.links))
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return out
}
