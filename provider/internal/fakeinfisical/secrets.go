package fakeinfisical

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

type project struct {
	id, slug string
	envs     map[string]*folder // environment slug -> root folder
}

type folder struct {
	id       string
	secrets  map[string]*secret
	children map[string]*folder
	imports  []importRef
}

type importRef struct{ env, path string }

type secret struct {
	id       string
	versions []secretVersion // version n is versions[n-1]
	hidden   bool            // identities may see that it exists but not read its value
}

// hiddenMask is what Infisical sends instead of a value the identity may describe but not read.
const hiddenMask = "<hidden-by-infisical>"

// HideValue makes a secret's value unreadable: gets and lists answer "<hidden-by-infisical>" with
// secretValueHidden true, as Infisical does for an identity that may describe a secret but not read it.
func (s *Server) HideValue(project, env, path, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.folderLocked(project, env, path, false); f != nil && f.secrets[strings.TrimSpace(name)] != nil {
		f.secrets[strings.TrimSpace(name)].hidden = true
	}
}

type secretVersion struct {
	value string
	at    time.Time
}

func newFolder() *folder {
	return &folder{id: randomHex(8), secrets: map[string]*secret{}, children: map[string]*folder{}}
}

// AddProject creates a project with an id and a slug (projects are otherwise created on first use, slug = id).
func (s *Server) AddProject(id, slug string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectLocked(id).slug = slug
}

// SetSecret creates or updates a secret and returns its new version (1 for a new secret). Like the real server it
// trims the name and path and trims the value, keeping one trailing newline. Missing projects, environments and
// folders are created.
func (s *Server) SetSecret(project, env, path, name, value string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folderLocked(project, env, path, true)
	name = strings.TrimSpace(name)
	sec := f.secrets[name]
	if sec == nil {
		sec = &secret{id: randomHex(12)}
		f.secrets[name] = sec
	}
	sec.versions = append(sec.versions, secretVersion{value: trimValue(value), at: s.now()})
	return len(sec.versions)
}

// DeleteSecret removes a secret with its history; it reports whether it existed.
func (s *Server) DeleteSecret(project, env, path, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folderLocked(project, env, path, false)
	if f == nil || f.secrets[strings.TrimSpace(name)] == nil {
		return false
	}
	delete(f.secrets, strings.TrimSpace(name))
	return true
}

// AddFolder creates an (empty) folder and its parents.
func (s *Server) AddFolder(project, env, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.folderLocked(project, env, path, true)
}

// AddImport makes folder (project, env, path) import the secrets of (fromEnv, fromPath) in the same project.
func (s *Server) AddImport(project, env, path, fromEnv, fromPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.folderLocked(project, env, path, true)
	s.folderLocked(project, fromEnv, fromPath, true)
	f.imports = append(f.imports, importRef{env: fromEnv, path: normalizePath(fromPath)})
}

// projectLocked finds a project by id or slug, creating it (slug = id) when missing.
func (s *Server) projectLocked(idOrSlug string) *project {
	if p := s.findProjectLocked(idOrSlug, idOrSlug); p != nil {
		return p
	}
	p := &project{id: idOrSlug, slug: idOrSlug, envs: map[string]*folder{}}
	s.projects[idOrSlug] = p
	return p
}

func (s *Server) findProjectLocked(id, slug string) *project {
	if p := s.projects[id]; id != "" && p != nil {
		return p
	}
	if slug == "" {
		return nil
	}
	for _, p := range s.projects {
		if p.slug == slug {
			return p
		}
	}
	return nil
}

func (s *Server) folderLocked(projectName, env, path string, create bool) *folder {
	var p *project
	if create {
		p = s.projectLocked(projectName)
	} else if p = s.findProjectLocked(projectName, projectName); p == nil {
		return nil
	}
	path = normalizePath(path)
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return lookupFolder(p, env, path, create)
}

func lookupFolder(p *project, env, path string, create bool) *folder {
	f := p.envs[env]
	if f == nil {
		if !create {
			return nil
		}
		f = newFolder()
		p.envs[env] = f
	}
	if !strings.HasPrefix(path, "/") {
		return nil
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" {
			continue
		}
		child := f.children[seg]
		if child == nil {
			if !create {
				return nil
			}
			child = newFolder()
			f.children[seg] = child
		}
		f = child
	}
	return f
}

// normalizePath applies the server's secretPath transform: trim, default "/", drop the trailing slash.
func normalizePath(p string) string {
	p = strings.TrimSpace(p)
	for len(p) > 1 && strings.HasSuffix(p, "/") {
		p = strings.TrimSuffix(p, "/")
	}
	if p == "" {
		return "/"
	}
	return p
}

// trimValue trims like secret create/update: surrounding whitespace goes, one trailing newline stays.
func trimValue(v string) string {
	t := strings.TrimSpace(v)
	if strings.HasSuffix(v, "\n") && t != "" {
		t += "\n"
	}
	return t
}

type secretQuery struct {
	projectID, projectSlug string
	env, path, typ         string
	version                int
	expand, imports        bool
	recursive              bool
}

// parseQuery validates the query like the route's zod schema (422 with an issue list), then the service's checks (400).
func (c *call) parseQuery(list bool) (secretQuery, bool) {
	q := c.r.URL.Query()
	var issues []map[string]any
	boolParam := func(key string) bool {
		v, present := q[key]
		if !present {
			return false
		}
		if v[0] != "true" && v[0] != "false" {
			issues = append(issues, map[string]any{"received": v[0], "code": "invalid_enum_value", "options": []string{"true", "false"},
				"path": []string{key}, "message": fmt.Sprintf("Invalid enum value. Expected 'true' | 'false', received '%s'", v[0])})
		}
		return v[0] == "true"
	}
	sq := secretQuery{
		projectID:   q.Get("workspaceId"),
		projectSlug: q.Get("workspaceSlug"),
		env:         q.Get("environment"),
		path:        normalizePath(q.Get("secretPath")),
		typ:         "shared",
		expand:      boolParam("expandSecretReferences"),
		imports:     boolParam("include_imports"),
	}
	if list {
		sq.recursive = boolParam("recursive")
	}
	if t, present := q["type"]; present && !list {
		if t[0] != "shared" && t[0] != "personal" {
			issues = append(issues, map[string]any{"received": t[0], "code": "invalid_enum_value", "options": []string{"shared", "personal"},
				"path": []string{"type"}, "message": fmt.Sprintf("Invalid enum value. Expected 'shared' | 'personal', received '%s'", t[0])})
		}
		sq.typ = t[0]
	}
	if v, present := q["version"]; present && !list {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			issues = append(issues, map[string]any{"code": "invalid_type", "expected": "number", "received": "nan",
				"path": []string{"version"}, "message": "Expected number, received nan"})
		}
		sq.version = n
	}
	if len(issues) > 0 {
		c.fail(http.StatusUnprocessableEntity, "ValidationFailure", issues)
		return sq, false
	}
	switch {
	case list && (sq.env == "" || (sq.projectID == "" && sq.projectSlug == "")):
		c.fail(http.StatusBadRequest, "BadRequest", "Missing project id or environment")
		return sq, false
	case sq.env == "":
		c.fail(http.StatusBadRequest, "BadRequest", "Missing environment")
		return sq, false
	case sq.projectID == "" && sq.projectSlug == "":
		c.fail(http.StatusBadRequest, "BadRequest", "You must provide workspaceSlug or workspaceId")
		return sq, false
	}
	return sq, true
}

// resolveLocked finds the project the identity may read and the requested folder, or answers 403 / 404.
func (s *Server) resolveLocked(c *call, id *identity, q secretQuery) (*project, *folder, bool) {
	p := s.findProjectLocked(q.projectID, q.projectSlug)
	if p == nil || !id.projects[p.id] {
		name := q.projectID
		if name == "" {
			name = q.projectSlug
		}
		c.fail(http.StatusForbidden, "ForbiddenError", fmt.Sprintf("Identity is not a member of the specified project with ID '%s'", name))
		return nil, nil, false
	}
	f := lookupFolder(p, q.env, q.path, false)
	if f == nil {
		c.fail(http.StatusNotFound, "GetSecretByName", fmt.Sprintf("Folder with path '%s' in environment with slug '%s' not found", q.path, q.env))
		return nil, nil, false
	}
	return p, f, true
}

func (s *Server) getSecret(c *call) {
	id, ok := s.authenticate(c)
	if !ok {
		return
	}
	q, ok := c.parseQuery(false)
	if !ok {
		return
	}
	name := strings.TrimSpace(c.r.PathValue("name"))
	s.mu.Lock()
	defer s.mu.Unlock()
	p, f, ok := s.resolveLocked(c, id, q)
	if !ok {
		return
	}
	env, path := q.env, q.path
	sec := f.secrets[name]
	if sec == nil && q.imports {
		// Imported folders are searched only when asked, before the server reports 404. Like the real server, a
		// secret found through a nested import is reported with the first-level import's environment and path.
		for _, imp := range f.imports {
			if found := findImported(p, imp, name, 0); found != nil {
				sec, env, path = found, imp.env, imp.path
				break
			}
		}
	}
	notFound := fmt.Sprintf("Secret with name '%s' not found", name)
	if sec == nil || q.typ == "personal" {
		c.fail(http.StatusNotFound, "NotFound", notFound)
		return
	}
	v := len(sec.versions)
	if q.version != 0 {
		v = q.version
	}
	if v < 1 || v > len(sec.versions) {
		c.fail(http.StatusNotFound, "NotFound", notFound)
		return
	}
	value := sec.versions[v-1].value
	if q.expand {
		value = expand(p, env, path, value, 0)
	}
	body := secretJSON(p, env, path, name, sec, v, value)
	if s.omitSecretPath {
		delete(body, "secretPath") // as older servers answer
	}
	c.json(http.StatusOK, map[string]any{"secret": body})
}

// findImported looks for name in the folder imp names, then through that folder's own imports (nested imports).
func findImported(p *project, imp importRef, name string, depth int) *secret {
	g := lookupFolder(p, imp.env, imp.path, false)
	if g == nil || depth > 10 {
		return nil
	}
	if sec := g.secrets[name]; sec != nil {
		return sec
	}
	for _, next := range g.imports {
		if sec := findImported(p, next, name, depth+1); sec != nil {
			return sec
		}
	}
	return nil
}

func (s *Server) listSecrets(c *call) {
	id, ok := s.authenticate(c)
	if !ok {
		return
	}
	q, ok := c.parseQuery(true)
	if !ok {
		return
	}
	s.mu.Lock()
	p, f, ok := s.resolveLocked(c, id, q)
	if !ok {
		s.mu.Unlock()
		return
	}
	out := map[string]any{"secrets": listFolder(p, q.env, q.path, f, q.expand, q.recursive, 0)}
	if q.imports {
		imports := []map[string]any{}
		for _, imp := range f.imports {
			if g := lookupFolder(p, imp.env, imp.path, false); g != nil {
				imports = append(imports, map[string]any{"secretPath": imp.path, "environment": imp.env, "folderId": g.id,
					"secrets": listImported(p, imp, g, q.expand)})
			}
		}
		out["imports"] = imports
	}
	s.mu.Unlock()

	body, _ := json.Marshal(out)
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	c.w.Header().Set("ETag", etag)
	if c.r.Header.Get("If-None-Match") == etag {
		c.w.WriteHeader(http.StatusNotModified)
		c.status = http.StatusNotModified
		return
	}
	c.json(http.StatusOK, json.RawMessage(body))
}

// listImported lists a first-level import as the real server does: its own secrets, then those of the folders it
// imports in turn (at most 10 deep, a name already listed wins), all reported with the first-level import's
// environment and path, like getSecret does.
func listImported(p *project, imp importRef, g *folder, expandRefs bool) []map[string]any {
	out := listFolder(p, imp.env, imp.path, g, expandRefs, false, 0)
	seen := map[string]bool{}
	for _, sec := range out {
		seen[sec["secretKey"].(string)] = true
	}
	var nested func(f *folder, depth int)
	nested = func(f *folder, depth int) {
		if depth > 10 {
			return
		}
		for _, next := range f.imports {
			h := lookupFolder(p, next.env, next.path, false)
			if h == nil {
				continue
			}
			for _, sec := range listFolder(p, imp.env, imp.path, h, expandRefs, false, 0) {
				if name := sec["secretKey"].(string); !seen[name] {
					seen[name] = true
					out = append(out, sec)
				}
			}
			nested(h, depth+1)
		}
	}
	nested(g, 1)
	return out
}

// listFolder returns the latest version of every secret in f, sorted by key; recursive goes at most 20 levels deep.
func listFolder(p *project, env, path string, f *folder, expandRefs, recursive bool, depth int) []map[string]any {
	out := []map[string]any{}
	names := make([]string, 0, len(f.secrets))
	for n := range f.secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sec := f.secrets[n]
		value := sec.versions[len(sec.versions)-1].value
		if expandRefs {
			value = expand(p, env, path, value, 0)
		}
		out = append(out, secretJSON(p, env, path, n, sec, len(sec.versions), value))
	}
	if recursive && depth < 20 {
		children := make([]string, 0, len(f.children))
		for n := range f.children {
			children = append(children, n)
		}
		slices.Sort(children)
		for _, n := range children {
			out = append(out, listFolder(p, env, strings.TrimSuffix(path, "/")+"/"+n, f.children[n], expandRefs, true, depth+1)...)
		}
	}
	return out
}

func secretJSON(p *project, env, path, name string, sec *secret, version int, value string) map[string]any {
	created := sec.versions[0].at.UTC().Format(time.RFC3339Nano)
	updated := sec.versions[version-1].at.UTC().Format(time.RFC3339Nano)
	if sec.hidden {
		value = hiddenMask
	}
	return map[string]any{
		"id": sec.id, "_id": sec.id, "workspace": p.id, "environment": env, "version": version, "type": "shared",
		"secretKey": name, "secretValue": value, "secretComment": "", "secretPath": path, "secretValueHidden": sec.hidden,
		"tags": []any{}, "secretMetadata": []any{}, "createdAt": created, "updatedAt": updated,
	}
}

var refPattern = regexp.MustCompile(`\$\{([^}]+)\}`)

// expand replaces ${KEY} (same folder), ${env.KEY} (root of env) and ${env.a.b.KEY} (folder /a/b of env);
// references that resolve to nothing stay as written.
func expand(p *project, env, path, value string, depth int) string {
	if depth > 5 {
		return value
	}
	return refPattern.ReplaceAllStringFunc(value, func(ref string) string {
		parts := strings.Split(strings.TrimSpace(ref[2:len(ref)-1]), ".")
		refEnv, refPath := env, path
		if len(parts) > 1 {
			refEnv, refPath = parts[0], "/"+strings.Join(parts[1:len(parts)-1], "/")
		}
		f := lookupFolder(p, refEnv, refPath, false)
		if f == nil || f.secrets[parts[len(parts)-1]] == nil {
			return ref
		}
		sec := f.secrets[parts[len(parts)-1]]
		return expand(p, refEnv, refPath, sec.versions[len(sec.versions)-1].value, depth+1)
	})
}
