package backend

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cache"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/sharedcache"
)

// The tiers a read goes through, fastest first:
//
//  1. this process's memory: a folder's listing (every secret of it, from one Infisical call), or one secret read
//     exactly (an explicit version, a value the listing could not give, or everything when CACHE_PREFETCH=false),
//     and "not found" answers for CACHE_NOT_FOUND_TTL;
//  2. the shared tier (JetStream KV, sealed), which other replicas filled, with a claim so that a cold fleet sends
//     one call per folder rather than one per replica; its entries are used only within CACHE_TTL of their sealed
//     fetch time, never as a stale fallback (anyone who may write the bucket can put back an entry a replica deleted
//     after a final answer);
//  3. Infisical, a folder at a time, revalidating an expired listing with its ETag (a 304 renews it as it is).
//
// Concurrent requests for one folder or key share one fetch (the cache coalesces), and a failing Infisical is
// answered from what tier 1 still holds within STALE_IF_ERROR, unless Infisical's answer was final.

// Lister is what prefetch needs from an Upstream: one call for a whole folder. Upstreams without it read key by key.
type Lister interface {
	ListSecrets(ctx context.Context, ref infisical.FolderRef, etag string) (infisical.Listing, error)
}

// folderKey names one folder listing of one identity, with the options its values were read with. Values are
// always listed raw: the backend expands references itself (expand.go), checking each.
type folderKey struct {
	identity, project, environment, folder string
	imports                                bool
}

func (k cacheKey) folderKey() folderKey {
	return folderKey{identity: k.identity, project: k.project, environment: k.environment, folder: k.folder,
		imports: k.imports}
}

// Kinds of shared entry, part of what each entry is sealed to.
const (
	kindSecret byte = 's'
	kindFolder byte = 'f'
)

// bytes is the key's canonical form for the shared tier: every field length-prefixed, so no two keys share one.
func (k cacheKey) bytes() []byte {
	b := canonical(kindSecret, k.identity, k.project, k.environment, k.folder, k.name)
	b = binary.AppendUvarint(b, uint64(k.version))
	return append(b, flags(k.imports))
}

func (k folderKey) bytes() []byte {
	return append(canonical(kindFolder, k.identity, k.project, k.environment, k.folder), flags(k.imports))
}

func canonical(kind byte, fields ...string) []byte {
	b := []byte{kind}
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// flags is the options byte of a shared key. Bit 1 (expanded values) is never set since the backend stopped asking
// Infisical to expand references; it stays reserved so that entries sealed by older replicas do not open as raw.
func flags(imports bool) byte {
	var f byte
	if imports {
		f |= 2
	}
	return f
}

// read is one secret read exactly, with when Infisical gave it.
type read struct {
	infisical.Secret
	at time.Time
}

// folder is one listing. It is never changed once made: a 304 makes a renewed copy that shares the maps.
type folder struct {
	secrets  map[string]infisical.Secret
	unsure   map[string]bool // listed, but read these exactly (see infisical.Listing)
	complete bool            // a name in neither map does not exist
	etag     string
	at       time.Time // when Infisical last gave or confirmed it
}

func newFolder(l infisical.Listing, at time.Time) *folder {
	return &folder{secrets: l.Secrets, unsure: l.Unsure, complete: l.Complete, etag: l.ETag, at: at}
}

func (f *folder) renewed(at time.Time) *folder {
	c := *f
	c.at = at
	return &c
}

// The shared tier's plaintext (sealed before it leaves the process). Short names: a folder may hold hundreds.
type wireSecret struct {
	Name        string `json:"n"`
	Value       string `json:"v"`
	Path        string `json:"p"`
	Environment string `json:"e"`
	Version     int    `json:"ver"`
}

type wireFolder struct {
	Secrets  []wireSecret `json:"s"`
	Unsure   []string     `json:"u,omitempty"`
	Complete bool         `json:"c"`
	ETag     string       `json:"t,omitempty"`
}

func toWire(s infisical.Secret) wireSecret {
	return wireSecret{Name: s.Name, Value: s.Value, Path: s.Path, Environment: s.Environment, Version: s.Version}
}

func (w wireSecret) secret() infisical.Secret {
	return infisical.Secret{Name: w.Name, Value: w.Value, Path: w.Path, Environment: w.Environment, Version: w.Version}
}

func encodeFolder(f *folder) []byte {
	w := wireFolder{Complete: f.complete, ETag: f.etag, Secrets: make([]wireSecret, 0, len(f.secrets))}
	for _, s := range f.secrets {
		w.Secrets = append(w.Secrets, toWire(s))
	}
	for n := range f.unsure {
		w.Unsure = append(w.Unsure, n)
	}
	b, _ := json.Marshal(w) // strings, ints and bools only: cannot fail
	return b
}

func decodeFolder(e sharedcache.Entry) (*folder, error) {
	var w wireFolder
	if err := json.Unmarshal(e.Data, &w); err != nil {
		return nil, err
	}
	f := &folder{secrets: make(map[string]infisical.Secret, len(w.Secrets)), unsure: map[string]bool{},
		complete: w.Complete, etag: w.ETag, at: e.FetchedAt}
	for _, s := range w.Secrets {
		f.secrets[s.Name] = s.secret()
	}
	for _, n := range w.Unsure {
		f.unsure[n] = true
	}
	return f, nil
}

func encodeRead(r read) []byte {
	b, _ := json.Marshal(toWire(r.Secret))
	return b
}

func decodeRead(e sharedcache.Entry) (read, error) {
	var w wireSecret
	if err := json.Unmarshal(e.Data, &w); err != nil {
		return read{}, err
	}
	return read{Secret: w.secret(), at: e.FetchedAt}, nil
}

// caches are the in-memory tier, built from the cache settings; Reconfigure replaces them when those change.
type caches struct {
	secrets *cache.Cache[cacheKey, read]
	folders *cache.Cache[folderKey, *folder]
	missing *cache.Cache[cacheKey, time.Time] // "not found" answers, by when Infisical gave them

	// shared is the shared tier to read and fill, nil when CACHE_TTL is 0 (nothing is cached). Final answers delete
	// shared entries through Backend.shared whatever this replica caches.
	shared       *sharedcache.Tier
	prefetch     bool
	ttl          time.Duration
	notFoundTTL  time.Duration
	claimWait    time.Duration // how long to wait for another replica's fetch of the same entry
	now          func() time.Time
	sharedMaxAge time.Duration // how old a shared entry may be to serve at all: CACHE_TTL, never stale
}

func newCaches(s *settings.Settings, now func() time.Time, shared *sharedcache.Tier) *caches {
	budget := fetchBudget(s.UpstreamTimeout)
	notFound := min(s.NotFoundTTL, s.CacheTTL)
	if s.CacheTTL <= 0 {
		shared = nil
	}
	return &caches{
		shared: shared,
		secrets: cache.New[cacheKey, read](cache.Options[read]{
			TTL: s.CacheTTL, StaleIfError: s.StaleIfError, FetchTimeout: budget, Now: now,
			// Not found, and credentials or permissions Infisical now refuses, must never be answered from cache:
			// access that was revoked stays revoked.
			Final:     infisical.IsFinal,
			FetchedAt: func(r read) time.Time { return r.at },
		}),
		folders: cache.New[folderKey, *folder](cache.Options[*folder]{
			TTL: s.CacheTTL, StaleIfError: s.StaleIfError, FetchTimeout: budget, Now: now,
			Final:     infisical.IsFinal,
			FetchedAt: func(f *folder) time.Time { return f.at },
			// A listing holds a whole folder: fewer of them fit in the same bound.
			MaxEntries: cache.DefaultMaxEntries / 10,
		}),
		// No stale serving of "not found": it only ever saves a call, never stands in for Infisical.
		missing:      cache.New[cacheKey, time.Time](cache.Options[time.Time]{TTL: notFound, Now: now}),
		prefetch:     s.CachePrefetch && s.CacheTTL > 0,
		ttl:          s.CacheTTL,
		notFoundTTL:  notFound,
		claimWait:    min(s.UpstreamTimeout, 3*time.Second),
		now:          now,
		sharedMaxAge: s.CacheTTL,
	}
}

func (c *caches) len() int { return c.secrets.Len() + c.folders.Len() }

func (c *caches) forget(identity string) {
	c.secrets.DeleteFunc(func(k cacheKey) bool { return k.identity == identity })
	c.folders.DeleteFunc(func(k folderKey) bool { return k.identity == identity })
	c.missing.DeleteFunc(func(k cacheKey) bool { return k.identity == identity })
}

// fromMemory answers key from a value fresh in memory: a fresh listing of its folder that holds it (when reading by
// listing), or a fresh exact read. It is counted and traced as the cache hit it is. The value served is the one
// found fresh, so nothing decided here can go stale before it is used.
func (b *Backend) fromMemory(ctx context.Context, c *caches, key cacheKey, listing bool) (infisical.Secret, bool) {
	var sec infisical.Secret
	held := false
	if listing {
		if f, ok := c.folders.Fresh(key.folderKey()); ok {
			sec, held = f.secrets[key.name]
		}
	} else if r, ok := c.secrets.Fresh(key); ok {
		sec, held = r.Secret, true
	}
	if !held {
		return infisical.Secret{}, false
	}
	_, span := b.startSpan(ctx, spanCache)
	span.SetAttributes(attrCacheResult.String(string(cache.Hit)))
	span.End()
	b.tel.cacheResults.Add(ctx, 1, cacheResultSet(cache.Hit))
	return sec, true
}

// knownMissing reports whether Infisical said key was not found less than CACHE_NOT_FOUND_TTL ago.
func (c *caches) knownMissing(key cacheKey) bool {
	at, _, ok := c.missing.Latest(key)
	return ok && c.now().Sub(at) < c.notFoundTTL
}

func (c *caches) rememberMissing(key cacheKey) {
	if c.notFoundTTL > 0 {
		c.missing.Put(key, c.now(), c.now())
	}
}

// errNotInStaleListing answers a key that a stale listing (Infisical failing) does not hold: Infisical has not said
// it is gone, so it is an upstream failure, not "not found".
var errNotInStaleListing = &infisical.Error{Kind: infisical.KindUnavailable,
	Message: "Infisical is failing, and the folder's last listing does not hold this secret"}

// lookup reads key through the tiers. It returns the value, how the memory tier got it, how long ago a stale value
// expired, and an error wrapping infisical.ErrNotFound when Infisical says there is no such secret.
func (b *Backend) lookup(ctx context.Context, c *caches, id *identity, key cacheKey, ref infisical.SecretRef) (infisical.Secret, cache.Result, time.Duration, error) {
	if c.knownMissing(key) {
		return infisical.Secret{}, cache.Hit, 0, infisical.ErrNotFound
	}
	lister, listing := id.upstream.(Lister)
	listing = listing && c.prefetch && key.version == 0
	// A value fresh in memory is served as found, with nothing to wait for: a cache hit, the common case, costs no
	// timer. Deciding "fresh" here and waiting below on the cache's own later check would leave a value that expires
	// in between waiting for Infisical with neither bound.
	if sec, ok := b.fromMemory(ctx, c, key, listing); ok {
		return sec, cache.Hit, 0, nil
	}
	// Waits for Infisical end replyMargin before the request's deadline, so that a stale value or an error still
	// leaves in time.
	waitCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithDeadline(ctx, dl.Add(-replyMargin))
		defer cancel()
	}
	if listing {
		sec, res, staleFor, err, decided := b.fromFolder(waitCtx, c, lister, key)
		if decided {
			if errors.Is(err, infisical.ErrNotFound) && res != cache.Hit {
				c.rememberMissing(key) // the folder itself is missing: remember the key like an exact read's
			}
			return sec, res, staleFor, err
		}
	}
	return b.exact(waitCtx, c, id, key, ref)
}

// fromFolder answers key from its folder's listing. decided is false when the listing cannot answer for key (its
// value is hidden or of unknown origin, or the listing may have left it out): then read it exactly.
func (b *Backend) fromFolder(ctx context.Context, c *caches, lister Lister, key cacheKey) (
	sec infisical.Secret, res cache.Result, staleFor time.Duration, err error, decided bool) {
	fk := key.folderKey()
	var listed atomic.Bool // this caller's fetch listed the folder from Infisical just now
	staleCtx, cancel := withStaleWait(ctx, c.folders, fk)
	f, res, err := cached(b, staleCtx, func(ctx context.Context) (*folder, cache.Result, error) {
		return c.folders.Get(ctx, fk, b.fetchFolder(c, lister, fk, c.ttl, &listed))
	})
	cancel()
	for pass := 0; ; pass++ {
		if err != nil {
			return infisical.Secret{}, res, 0, err, true
		}
		if res == cache.Stale {
			_, staleFor, _ = c.folders.Stale(fk)
		}
		if s, ok := f.secrets[key.name]; ok {
			return s, res, staleFor, nil, true
		}
		if f.unsure[key.name] || !f.complete {
			return infisical.Secret{}, res, 0, nil, false
		}
		if res == cache.Stale {
			return infisical.Secret{}, res, 0, errNotInStaleListing, true
		}
		// Absent from a complete listing: not found, if Infisical said so recently enough. An older listing (from
		// memory or another replica) is revalidated once, so that a secret created since is found; a 304 costs no
		// re-decoding.
		if pass > 0 || listed.Load() || b.now().Sub(f.at) < c.notFoundTTL {
			return infisical.Secret{}, res, 0, infisical.ErrNotFound, true
		}
		f, res, err = cached(b, ctx, func(ctx context.Context) (*folder, cache.Result, error) {
			return c.folders.GetWithin(ctx, fk, c.notFoundTTL, b.fetchFolder(c, lister, fk, c.notFoundTTL, &listed))
		})
	}
}

// withStaleWait shortens the wait for a refresh when a stale value is there to fall back on: the host fetches
// secrets one after another, so during an outage every secret would otherwise cost the whole fetch budget. A value
// still fresh here gets the bound too: it may expire before the cache checks it again (a cache hit never comes here:
// lookup serves it first).
func withStaleWait[K comparable, V any](ctx context.Context, c *cache.Cache[K, V], key K) (context.Context, context.CancelFunc) {
	if _, _, stale := c.Stale(key); stale {
		return context.WithTimeout(ctx, staleWait)
	}
	return ctx, func() {}
}

// fetchFolder fills a folder's listing for the memory tier: from the shared tier if another replica listed it less
// than maxAge ago, else from Infisical (one replica of the fleet at a time), revalidating what is held with its
// ETag; listed is set when the listing came from Infisical.
func (b *Backend) fetchFolder(c *caches, lister Lister, fk folderKey, maxAge time.Duration, listed *atomic.Bool) func(context.Context) (*folder, error) {
	return func(ctx context.Context) (*folder, error) {
		skey := fk.bytes()
		prev, _, _ := c.folders.Latest(fk)
		if f := b.sharedFolder(ctx, c, skey); f != nil {
			if c.now().Sub(f.at) < maxAge {
				return f, nil
			}
			if prev == nil || f.at.After(prev.at) {
				prev = f
			}
		}
		e, filled, release := c.shared.Claim(ctx, skey, maxAge, c.claimWait)
		defer release()
		if filled {
			if f, err := decodeFolder(e); err == nil {
				return f, nil
			}
		}
		etag := ""
		if prev != nil {
			etag = prev.etag
		}
		l, err := lister.ListSecrets(ctx, infisical.FolderRef{ProjectID: fk.project, Environment: fk.environment,
			Path: fk.folder, IncludeImports: fk.imports}, etag)
		err = withPrefetchHint(err)
		now := c.now()
		var f *folder
		switch {
		case errors.Is(err, infisical.ErrNotModified) && prev != nil:
			f = prev.renewed(now)
		case err != nil:
			b.failed(err, func() { b.forgetFinal(ctx, c, fk.identity, err, func() { b.forgetFolder(ctx, c, fk) }) }, func() {
				if prev != nil {
					c.folders.Put(fk, prev, prev.at) // so that the cache can serve it stale
				}
			})
			return nil, err
		default:
			if err := checkListing(fk.folder, l); err != nil {
				return nil, err
			}
			f = newFolder(l, now)
		}
		c.shared.Put(ctx, skey, encodeFolder(f), now, c.sharedMaxAge)
		return f, nil
	}
}

// sharedFolder returns the folder another replica stored, if it was listed less than CACHE_TTL ago.
func (b *Backend) sharedFolder(ctx context.Context, c *caches, skey []byte) *folder {
	e, ok := c.shared.Get(ctx, skey, c.sharedMaxAge)
	if !ok {
		return nil
	}
	f, err := decodeFolder(e)
	if err != nil {
		b.log.Warn("shared cache entry opened but does not decode; ignoring it", "error", err.Error())
		return nil
	}
	return f
}

// failed handles a failed Infisical call: a final answer runs forget, so that nothing here or in the shared tier
// serves what it is about stale; otherwise keepStale puts what the tiers still hold where the memory cache can serve
// it stale.
func (b *Backend) failed(err error, forget, keepStale func()) {
	if infisical.IsFinal(err) {
		forget()
		return
	}
	keepStale()
}

// A final answer (not found, access or credentials refused) is about a secret or a whole folder, not only about the
// entry whose fetch got it: a folder's listing, a secret's exact read and each of its version reads are entries of
// their own, and any one left behind would serve the secret stale again as soon as Infisical fails. So a final answer
// drops every entry that could serve what it is about, from memory and from the shared tier. The shared tier can
// only be asked by key: besides the listings and the asked keys, it loses the entries this replica held in memory.

// forgetFinal applies a final answer: refused credentials, or access refused, are about the identity, not the one
// folder or secret whose fetch heard it (a revoked token or a project-wide permission change reaches every folder
// alike), so every entry of the identity goes; "not found" is about what was asked, which narrow forgets.
func (b *Backend) forgetFinal(ctx context.Context, c *caches, identity string, err error, narrow func()) {
	var ie *infisical.Error
	if errors.As(err, &ie) && (ie.Kind == infisical.KindAuth || ie.Kind == infisical.KindPermission) {
		b.forgetIdentity(ctx, c, identity)
		return
	}
	narrow()
}

// forgetIdentity drops every entry of identity from memory, and from the shared tier those this replica held.
func (b *Backend) forgetIdentity(ctx context.Context, c *caches, identity string) {
	var shared [][]byte
	c.secrets.DeleteFunc(func(k cacheKey) bool {
		if k.identity != identity {
			return false
		}
		shared = append(shared, k.bytes())
		return true
	})
	c.folders.DeleteFunc(func(k folderKey) bool {
		if k.identity != identity {
			return false
		}
		shared = append(shared, k.bytes())
		return true
	})
	c.missing.DeleteFunc(func(k cacheKey) bool { return k.identity == identity })
	for _, skey := range shared {
		b.shared.Delete(ctx, skey)
	}
}

// forgetFolder is for a final answer to a listing: the folder (or its environment) is gone, or the identity may no
// longer read it. The folder's listings go (with and without imports), with every exact and version read in it.
func (b *Backend) forgetFolder(ctx context.Context, c *caches, fk folderKey) {
	b.forget(ctx, c, fk, true, func(cacheKey) bool { return true })
}

// forgetSecret is for a final answer to an exact read of key. Access or credentials refused, or the latest value not
// found, are about the secret: its folder's listings go (they hold its latest value, and a listing is one entry,
// listed again whole on the next request), with every exact and version read of it. A version not found is about
// that version only.
func (b *Backend) forgetSecret(ctx context.Context, c *caches, key cacheKey, err error) {
	variants := func(versions ...int) []cacheKey {
		var ks []cacheKey
		for _, v := range versions {
			for _, imports := range []bool{false, true} {
				k := key
				k.version, k.imports = v, imports
				ks = append(ks, k)
			}
		}
		return ks
	}
	if key.version > 0 && errors.Is(err, infisical.ErrNotFound) {
		b.forget(ctx, c, key.folderKey(), false, func(k cacheKey) bool { return k.name == key.name && k.version == key.version },
			variants(key.version)...)
		return
	}
	b.forget(ctx, c, key.folderKey(), true, func(k cacheKey) bool { return k.name == key.name },
		variants(0, key.version)...)
}

// forget drops from memory, in fk's folder (with and without imports), its listings when listings is set and the
// exact reads that match, and deletes from the shared tier those entries and the entries of also. It deletes through
// Backend.shared, whatever this replica caches.
func (b *Backend) forget(ctx context.Context, c *caches, fk folderKey, listings bool, match func(cacheKey) bool, also ...cacheKey) {
	shared := map[string][]byte{}
	drop := func(skey []byte) { shared[string(skey)] = skey }
	if listings {
		for _, imports := range []bool{false, true} {
			k := fk
			k.imports = imports
			c.folders.Delete(k)
			drop(k.bytes())
		}
	}
	c.secrets.DeleteFunc(func(k cacheKey) bool {
		if k.identity != fk.identity || k.project != fk.project || k.environment != fk.environment ||
			k.folder != fk.folder || !match(k) {
			return false
		}
		drop(k.bytes())
		return true
	})
	for _, k := range also {
		drop(k.bytes())
	}
	for _, skey := range shared {
		b.shared.Delete(ctx, skey)
	}
}

// exact reads one secret as asked: an explicit version, or what a listing could not answer.
func (b *Backend) exact(ctx context.Context, c *caches, id *identity, key cacheKey, ref infisical.SecretRef) (infisical.Secret, cache.Result, time.Duration, error) {
	skey := key.bytes()
	fetch := func(fctx context.Context) (read, error) {
		prev, _, hadPrev := c.secrets.Latest(key)
		if e, ok := c.shared.Get(fctx, skey, c.sharedMaxAge); ok {
			if r, err := decodeRead(e); err == nil {
				return r, nil
			}
		}
		e, filled, release := c.shared.Claim(fctx, skey, c.ttl, c.claimWait)
		defer release()
		if filled {
			if r, err := decodeRead(e); err == nil {
				return r, nil
			}
		}
		sec, err := id.upstream.GetSecret(fctx, ref)
		if err != nil {
			b.failed(err, func() { b.forgetFinal(fctx, c, key.identity, err, func() { b.forgetSecret(fctx, c, key, err) }) }, func() {
				if hadPrev {
					c.secrets.Put(key, prev, prev.at)
				}
			})
			return read{}, err
		}
		r := read{Secret: sec, at: c.now()}
		c.shared.Put(fctx, skey, encodeRead(r), r.at, c.sharedMaxAge)
		return r, nil
	}
	staleCtx, cancel := withStaleWait(ctx, c.secrets, key)
	r, res, err := cached(b, staleCtx, func(ctx context.Context) (read, cache.Result, error) {
		return c.secrets.Get(ctx, key, fetch)
	})
	cancel()
	if errors.Is(err, infisical.ErrNotFound) {
		c.rememberMissing(key)
	}
	var staleFor time.Duration
	if res == cache.Stale {
		_, staleFor, _ = c.secrets.Stale(key)
	}
	return r.Secret, res, staleFor, err
}
