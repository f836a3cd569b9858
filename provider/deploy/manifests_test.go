package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	repoRoot = "../.."

	secretPolicyType = "policy.secret.wasmcloud.dev/v1alpha1"
	sharedAnnotation = "experimental.wasmcloud.dev/shared"
	providerName     = "infisical-secrets"
	backendName      = "infisical"
	localImage       = "file://./build/infisical-secrets-provider.par.gz"
	witPackage       = "infisical:secrets-provider"

	prodManifest   = "wadm.yaml"
	localManifest  = "local.wadm.yaml"
	examplesGlob   = "docs/examples/*.wadm.yaml"
	appExample     = "docs/examples/app.wadm.yaml"
	tenantExample  = "docs/examples/tenant.wadm.yaml"
	providerSecret = "INFISICAL_CLIENT_SECRET"
)

// providerManifests deploy the provider itself; the examples are applications that use it.
var providerManifests = []string{prodManifest, localManifest}

// The subset of wadm's manifest schema these files use; unknown fields are errors, so typos surface.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
		Labels      map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Policies   []policy    `yaml:"policies"`
		Components []component `yaml:"components"`
	} `yaml:"spec"`
}

type policy struct {
	Name       string         `yaml:"name"`
	Type       string         `yaml:"type"`
	Properties map[string]any `yaml:"properties"`
}

type component struct {
	Name       string `yaml:"name"`
	Type       string `yaml:"type"`
	Properties struct {
		Image       string       `yaml:"image,omitempty"`
		ID          string       `yaml:"id,omitempty"`
		Application *sharedRef   `yaml:"application,omitempty"`
		Config      []namedProps `yaml:"config,omitempty"`
		Secrets     []namedProps `yaml:"secrets,omitempty"`
	} `yaml:"properties"`
	Traits []trait `yaml:"traits,omitempty"`
}

// sharedRef points at a component of another, shared application (wadm's SharedApplicationComponentProperties).
type sharedRef struct {
	Name      string `yaml:"name"`
	Component string `yaml:"component"`
}

// namedProps is a config or secret entry. A config without properties names config managed outside wadm.
type namedProps struct {
	Name       string         `yaml:"name"`
	Properties map[string]any `yaml:"properties"`
}

type trait struct {
	Type       string    `yaml:"type"`
	Properties yaml.Node `yaml:"properties"`
}

type scaler struct {
	Instances *int `yaml:"instances"`
	Replicas  *int `yaml:"replicas"`
	Spread    []struct {
		Name         string            `yaml:"name"`
		Requirements map[string]string `yaml:"requirements"`
		Weight       *int              `yaml:"weight"`
	} `yaml:"spread"`
}

type link struct {
	Namespace  string   `yaml:"namespace"`
	Package    string   `yaml:"package"`
	Interfaces []string `yaml:"interfaces"`
	Name       string   `yaml:"name,omitempty"`
	Target     struct {
		Name    string       `yaml:"name"`
		Config  []namedProps `yaml:"config,omitempty"`
		Secrets []namedProps `yaml:"secrets,omitempty"`
	} `yaml:"target"`
	Source struct {
		Config  []namedProps `yaml:"config,omitempty"`
		Secrets []namedProps `yaml:"secrets,omitempty"`
	} `yaml:"source,omitempty"`
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// decodeTrait decodes a trait's properties strictly: wadm takes a link or scaler with a stray field for a custom
// trait and rejects it (ensure_no_custom_traits).
func decodeTrait(n *yaml.Node, v any) error {
	data, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return decodeStrict(data, v)
}

func loadManifest(t *testing.T, name string) (*manifest, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := decodeStrict(data, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &m, data
}

// shippedManifests lists every manifest the repository ships, relative to its root: the provider's and every
// example, so a new example is checked without being listed here.
func shippedManifests(t *testing.T) []string {
	t.Helper()
	examples, err := filepath.Glob(filepath.Join(repoRoot, examplesGlob))
	if err != nil {
		t.Fatal(err)
	}
	files := slices.Clone(providerManifests)
	for _, e := range examples {
		rel, err := filepath.Rel(repoRoot, e)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.ToSlash(rel))
	}
	for _, want := range []string{appExample, tenantExample} {
		if !slices.Contains(files, want) {
			t.Errorf("%s is missing (found %v)", want, files)
		}
	}
	return files
}

// wadmName is the name wadm gives a component without an explicit id, a config with properties, and (after
// "SECRET_") a secret: manifest and entry name, each lowercased with every character that is not an ASCII letter
// or digit replaced by '_', joined by '-' (compute_component_id in wadm 0.21.1 src/scaler/convert.rs).
func wadmName(manifestName, name string) string {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, strings.ToLower(s))
	}
	return norm(manifestName) + "-" + norm(name)
}

// secretConfigName is wadm's compute_secret_id: the config name under which a secret reference is stored and
// passed to the host (SECRET_PREFIX is "SECRET" in wasmcloud-secrets-types).
func secretConfigName(manifestName, secret string) string {
	return "SECRET_" + wadmName(manifestName, secret)
}

// componentID is the ID wadm starts c under; for a shared component, the ID a link to it targets (link_scaler
// resolves the shared application and component, with this manifest's id for c).
func componentID(m *manifest, c *component) string {
	if c.Properties.ID != "" {
		return c.Properties.ID
	}
	if a := c.Properties.Application; a != nil {
		return wadmName(a.Name, a.Component)
	}
	return wadmName(m.Metadata.Name, c.Name)
}

func findComponent(m *manifest, name string) *component {
	for i := range m.Spec.Components {
		if m.Spec.Components[i].Name == name {
			return &m.Spec.Components[i]
		}
	}
	return nil
}

func isScaler(traitType string) bool {
	return traitType == "spreadscaler" || traitType == "daemonscaler"
}

// componentLink is a link trait with the component that declares it (its source).
type componentLink struct {
	source *component
	link   link
}

// links decodes every link trait of m, skipping those that do not decode (checkWadm reports them).
func links(m *manifest) []componentLink {
	var out []componentLink
	for i := range m.Spec.Components {
		c := &m.Spec.Components[i]
		for _, tr := range c.Traits {
			var l link
			if tr.Type == "link" && decodeTrait(&tr.Properties, &l) == nil {
				out = append(out, componentLink{c, l})
			}
		}
	}
	return out
}

// A rule reports every way a manifest breaks it.
type rule func(m *manifest) []error

type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

var manifestNameRE = regexp.MustCompile(`^[-\w]+$`)

// checkWadm reports what wadm rejects when the manifest is put (wadm-types 0.8.3 src/validation.rs: names,
// policies, shared components, links, string-only maps), and what wadm accepts but cannot deploy: two secrets or
// two differing configs stored under one name.
func checkWadm(m *manifest) []error {
	var errs problems
	bad := errs.add

	if m.APIVersion != "core.oam.dev/v1beta1" {
		bad("apiVersion %q, want core.oam.dev/v1beta1", m.APIVersion)
	}
	if m.Kind != "Application" {
		bad("kind %q, want Application", m.Kind)
	}
	if m.Metadata.Name == "" {
		bad("metadata.name is empty")
	} else if !manifestNameRE.MatchString(m.Metadata.Name) {
		bad("manifest name [%s] is not allowed (should match regex [%s])", m.Metadata.Name, manifestNameRE)
	}
	switch v := m.Metadata.Annotations["version"]; v {
	case "":
		bad("metadata.annotations.version is empty (wadm versions deployments by it)")
	case "latest":
		bad("version latest is not allowed in wadm")
	}

	policies := map[string]policy{}
	for i, p := range m.Spec.Policies {
		if p.Name == "" {
			bad("policy %d has no name", i)
		}
		if _, dup := policies[p.Name]; dup {
			bad("policy %q declared twice", p.Name)
		}
		policies[p.Name] = p
		checkStrings(&errs, "policy "+p.Name, p.Properties)
		if p.Type == secretPolicyType {
			if b, _ := p.Properties["backend"].(string); b == "" {
				bad("policy %q does not include a 'backend' property", p.Name)
			}
		}
	}

	// Every secret and every config with properties becomes a wadm config named after the manifest; scalers of
	// two entries with one name would overwrite each other's config forever.
	secretNames := map[string]string{} // wadm config name -> where
	type configEntry struct {
		where string
		props map[string]any
	}
	configNames := map[string]configEntry{}
	linkConfigs := map[string]bool{}

	checkSecrets := func(where string, secrets []namedProps) {
		for _, s := range secrets {
			w := where + " secret " + s.Name
			if s.Name == "" {
				bad("%s has no name", w)
			}
			id := secretConfigName(m.Metadata.Name, s.Name)
			if prev, dup := secretNames[id]; dup {
				bad("%s and %s are both stored as wadm config %q; their scalers would overwrite each other forever",
					prev, w, id)
			} else {
				secretNames[id] = w
			}
			checkStrings(&errs, w, s.Properties)
			name, _ := s.Properties["policy"].(string)
			p, ok := policies[name]
			switch {
			case name == "":
				bad("%s names no policy", w)
			case !ok:
				bad("secret '%s' is mapped to unknown policy '%s'", s.Name, name)
			case p.Type != secretPolicyType:
				bad("%s: policy %q is not a secret policy. Expected type '%s'", w, name, secretPolicyType)
			}
			if k, _ := s.Properties["key"].(string); k == "" {
				bad("%s has no key", w)
			}
			for prop := range s.Properties {
				if !slices.Contains([]string{"policy", "key", "field", "version"}, prop) {
					bad("%s: unknown property %q", w, prop)
				}
			}
		}
	}
	checkConfig := func(where string, config []namedProps, isLink bool) {
		for _, c := range config {
			w := where + " config " + c.Name
			if c.Name == "" {
				bad("%s has no name", w)
			}
			// wadm and the host treat config names starting with SECRET as secret references.
			if strings.HasPrefix(strings.ToUpper(c.Name), "SECRET") {
				bad("%s: a config name must not start with SECRET", w)
			}
			checkStrings(&errs, w, c.Properties)
			if c.Properties == nil {
				continue // managed outside wadm, referred to by name
			}
			if isLink {
				if linkConfigs[c.Name] {
					bad("Duplicate link config name found: '%s'", c.Name)
				}
				linkConfigs[c.Name] = true
			}
			id := wadmName(m.Metadata.Name, c.Name)
			if prev, dup := configNames[id]; dup && !reflect.DeepEqual(prev.props, c.Properties) {
				bad("%s and %s are both stored as wadm config %q with different properties; their scalers would "+
					"overwrite each other forever", prev.where, w, id)
			} else if !dup {
				configNames[id] = configEntry{w, c.Properties}
			}
		}
	}

	components := map[string]*component{}
	ids := map[string]bool{}
	for i := range m.Spec.Components {
		c := &m.Spec.Components[i]
		if _, dup := components[c.Name]; dup {
			bad("Duplicate component name in manifest: %s", c.Name)
		}
		components[c.Name] = c
		if id := c.Properties.ID; id != "" {
			if ids[id] {
				bad("Duplicate component identifier in manifest: %s", id)
			}
			ids[id] = true
		}
	}
	for i := range m.Spec.Components {
		c := &m.Spec.Components[i]
		where := fmt.Sprintf("component %d (%s)", i, c.Name)
		if c.Name == "" {
			bad("%s has no name", where)
		}
		if c.Type != "component" && c.Type != "capability" {
			bad("%s: type %q, want component or capability", where, c.Type)
		}
		if shared := c.Properties.Application; shared != nil {
			// A component of a shared application: its own manifest sets its image, config, secrets and scale.
			if c.Properties.Image != "" {
				bad("%s: Component cannot have both 'image' and 'application' properties", where)
			}
			if shared.Name == "" || shared.Component == "" {
				bad("%s: application needs both name and component, got %+v", where, *shared)
			}
			if len(c.Properties.Config) > 0 {
				bad("%s: Shared component '%s' cannot specify additional 'config'", where, shared.Name)
			}
			if len(c.Properties.Secrets) > 0 {
				bad("%s: Shared component '%s' cannot specify additional 'secrets'", where, shared.Name)
			}
			if len(c.Traits) > 0 {
				bad("%s: Shared component '%s' takes no traits (its own application scales it; link to it from the other side)",
					where, shared.Name)
			}
		} else if c.Properties.Image == "" {
			bad("%s has no image: Component must have either 'image' or 'application' property", where)
		}
		checkConfig(where, c.Properties.Config, false)
		checkSecrets(where, c.Properties.Secrets)
		for _, tr := range c.Traits {
			switch tr.Type {
			case "spreadscaler", "daemonscaler":
				var s scaler
				if err := decodeTrait(&tr.Properties, &s); err != nil {
					bad("%s %s: %v", where, tr.Type, err)
					continue
				}
				if n := cmpOr(s.Instances, s.Replicas); n < 1 {
					bad("%s %s: instances %d, want at least 1", where, tr.Type, n)
				}
			case "link":
				var l link
				if err := decodeTrait(&tr.Properties, &l); err != nil {
					bad("%s link: %v", where, err)
					continue
				}
				w := fmt.Sprintf("%s link %s:%s", where, l.Namespace, l.Package)
				if l.Namespace == "" || l.Package == "" || len(l.Interfaces) == 0 {
					bad("%s: namespace, package and interfaces are required", w)
				}
				target, ok := components[l.Target.Name]
				if !ok {
					bad("%s: target %q is not a component of this manifest", w, l.Target.Name)
				} else if c.Type == "capability" && target.Type == "capability" {
					bad("%s: provider to provider links are rejected", w)
				}
				checkConfig(w+" target", l.Target.Config, true)
				checkSecrets(w+" target", l.Target.Secrets)
				checkConfig(w+" source", l.Source.Config, true)
				checkSecrets(w+" source", l.Source.Secrets)
			default:
				bad("%s: unknown trait %q", where, tr.Type)
			}
		}
	}
	return errs
}

func cmpOr(ps ...*int) int {
	for _, p := range ps {
		if p != nil {
			return *p
		}
	}
	return 0
}

// checkStrings enforces wadm's BTreeMap<String, String>: an unquoted number or boolean fails deserialization.
func checkStrings(errs *problems, where string, props map[string]any) {
	for k, v := range props {
		if _, ok := v.(string); !ok {
			errs.add("%s: property %s is %T, wadm needs a string (quote it)", where, k, v)
		}
	}
}

func backendOf(m *manifest, policyName string) string {
	for _, p := range m.Spec.Policies {
		if p.Name == policyName {
			b, _ := p.Properties["backend"].(string)
			return b
		}
	}
	return ""
}

func secretBackend(m *manifest, s namedProps) string {
	name, _ := s.Properties["policy"].(string)
	return backendOf(m, name)
}

// checkProvider holds a provider manifest (wadm.yaml, local.wadm.yaml) to this project's rules: a shared
// application whose provider has its settings, its bootstrap secrets from another backend, and one instance per
// host.
func checkProvider(m *manifest) []error {
	var errs problems
	bad := errs.add

	// wadm parses the annotation as a Rust bool: only "true" counts.
	if v, ok := m.Metadata.Annotations[sharedAnnotation]; v != "true" {
		bad("provider manifest annotation %s is %q (set: %v), want \"true\": other applications' tenant links "+
			"need the provider shared", sharedAnnotation, v, ok)
	}

	p := findComponent(m, providerName)
	if p == nil {
		bad("no provider component %q", providerName)
		return errs
	}
	// wadm resolves a link to a shared component to the id it computes from the names, ignoring any `id` the
	// provider's manifest sets: with one, other applications' tenant links would name a provider that does not exist.
	if p.Type != "capability" || p.Properties.ID != "" {
		bad("provider %q: type %q id %q, want capability without an id (shared components are linked by %s)",
			providerName, p.Type, p.Properties.ID, wadmName(m.Metadata.Name, providerName))
	}
	settings := map[string]any{}
	for _, c := range p.Properties.Config {
		maps.Copy(settings, c.Properties)
	}
	for _, k := range []string{"INFISICAL_BASE_URL", "INFISICAL_PROJECT_ID", "INFISICAL_ENVIRONMENT", "TRUSTED_ISSUERS", "BACKEND_NAME"} {
		if s, _ := settings[k].(string); s == "" {
			bad("provider config lacks %s", k)
		}
	}
	if settings["BACKEND_NAME"] != backendName {
		bad("provider BACKEND_NAME %v, want %q (the backend the applications' policies name)", settings["BACKEND_NAME"], backendName)
	}
	own := map[string]string{}
	for _, s := range p.Properties.Secrets {
		own[s.Name] = secretBackend(m, s)
	}
	for _, name := range []string{providerSecret, "SERVER_XKEY_SEED"} {
		b, ok := own[name]
		switch {
		case !ok:
			bad("provider secrets lack %s", name)
		case b == backendName:
			bad("provider secret %s comes from its own backend %q: a secrets backend cannot fetch its own credentials", name, b)
		}
	}

	var scalers []trait
	for _, tr := range p.Traits {
		if isScaler(tr.Type) {
			scalers = append(scalers, tr)
		}
	}
	if len(scalers) != 1 {
		bad("provider has %d scaler traits, want one daemonscaler", len(scalers))
		return errs
	}
	if scalers[0].Type != "daemonscaler" {
		bad("provider scaler is a %s, want a daemonscaler: a host runs at most one instance of a provider, and wadm "+
			"reports a spreadscaler asking for more instances than there are hosts as Failed", scalers[0].Type)
		return errs
	}
	var s scaler
	if err := decodeTrait(&scalers[0].Properties, &s); err == nil {
		if n := cmpOr(s.Instances, s.Replicas); n != 1 {
			bad("provider daemonscaler instances %d, want 1 (one per host; a host runs at most one instance of a provider)", n)
		}
	}
	return errs
}

// checkApp holds docs/examples/app.wadm.yaml to its purpose: its components read their secrets through this
// provider.
func checkApp(m *manifest) []error {
	var errs problems
	read := 0
	for _, c := range m.Spec.Components {
		for _, s := range c.Properties.Secrets {
			if b := secretBackend(m, s); b != backendName {
				errs.add("component %s secret %s comes from backend %q, want %q (this provider)", c.Name, s.Name, b, backendName)
				continue
			}
			read++
		}
	}
	if read == 0 {
		errs.add("no component secret is read through backend %q", backendName)
	}
	return errs
}

// providerKey is backend.ApplicationKey: how the provider compares application names.
func providerKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
}

// checkTenant returns the rule for docs/examples/tenant.wadm.yaml: an application linking its component to the
// shared provider of prov (wadm.yaml) on the WIT's tenant interface, with its own Infisical identity.
func checkTenant(prov *manifest, wit witWorld) rule {
	return func(m *manifest) []error {
		var errs problems
		bad := errs.add
		var provComp component
		if p := findComponent(prov, providerName); p != nil {
			provComp = *p
		}
		n := 0
		for _, cl := range links(m) {
			target := findComponent(m, cl.link.Target.Name)
			if target == nil || target.Properties.Application == nil {
				continue
			}
			n++
			l := cl.link
			w := fmt.Sprintf("link from %s to %s", cl.source.Name, target.Name)
			if a := *target.Properties.Application; a.Name != prov.Metadata.Name || a.Component != providerName {
				bad("%s: shared component is %s/%s, want the provider manifest's %s/%s", w, a.Name, a.Component,
					prov.Metadata.Name, providerName)
			}
			if got, want := componentID(m, target), componentID(prov, &provComp); got != want {
				bad("%s: the link resolves to provider id %q, but the provider runs as %q", w, got, want)
			}
			if target.Type != provComp.Type {
				bad("%s: target type %q, want the provider's %q (wadm matches shared components by type)", w, target.Type, provComp.Type)
			}
			if l.Namespace+":"+l.Package != wit.pkg {
				bad("%s: %s:%s, want the WIT package %s", w, l.Namespace, l.Package, wit.pkg)
			}
			for _, iface := range l.Interfaces {
				if !wit.interfaces[iface] {
					bad("%s: interface %q is not declared in wit/world.wit", w, iface)
				}
			}
			names := map[string]bool{}
			for _, s := range l.Target.Secrets {
				names[s.Name] = true
				if b := secretBackend(m, s); b == backendName {
					bad("%s: target secret %s comes from backend %q: the provider would be asked for the credentials "+
						"it needs to answer; use the bootstrap backend", w, s.Name, b)
				}
			}
			for _, want := range []string{"INFISICAL_CLIENT_ID", providerSecret} {
				if !names[want] {
					bad("%s: target secrets lack %s", w, want)
				}
			}
			for _, c := range slices.Concat(l.Target.Config, l.Source.Config) {
				for k := range c.Properties {
					if strings.EqualFold(k, "APPLICATION") {
						bad("%s: config %s sets %s; the provider derives the application from the link source", w, c.Name, k)
					}
				}
			}
			// The provider takes the application from the source ID up to its first '-' (provider/cli tenantKey):
			// wadm names a component without an id {app}-{component}, with '-' in the parts turned into '_'.
			src := componentID(m, cl.source)
			app, _, _ := strings.Cut(src, "-")
			if providerKey(app) != providerKey(m.Metadata.Name) {
				bad("%s: source component ID %q gives the provider application %q, not %q (leave the source's id unset)",
					w, src, providerKey(app), providerKey(m.Metadata.Name))
			}
		}
		if n == 0 {
			bad("no tenant link: no link targets a shared component")
		}
		return errs
	}
}

// witWorld is what the manifests need from wit/world.wit.
type witWorld struct {
	pkg        string // namespace:package
	interfaces map[string]bool
	text       []byte
}

func loadWIT(t *testing.T) witWorld {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot, "wit", "world.wit"))
	if err != nil {
		t.Fatal(err)
	}
	w := witWorld{interfaces: map[string]bool{}, text: text}
	if pkg := regexp.MustCompile(`(?m)^package ([a-z0-9-]+):([a-z0-9-]+)@[0-9.]+;`).FindSubmatch(text); pkg != nil {
		w.pkg = string(pkg[1]) + ":" + string(pkg[2])
	}
	for _, m := range regexp.MustCompile(`(?m)^interface ([a-z0-9-]+) \{`).FindAllSubmatch(text, -1) {
		w.interfaces[string(m[1])] = true
	}
	return w
}

// rulesFor lists the rules a shipped manifest is held to: wadm's for all, the project's by role.
func rulesFor(t *testing.T, file string) []rule {
	t.Helper()
	rules := []rule{checkWadm}
	switch {
	case slices.Contains(providerManifests, file):
		rules = append(rules, checkProvider)
	case file == appExample:
		rules = append(rules, checkApp)
	case file == tenantExample:
		prov, _ := loadManifest(t, prodManifest)
		rules = append(rules, checkTenant(prov, loadWIT(t)))
	}
	return rules
}

func check(m *manifest, rules []rule) []error {
	var errs []error
	for _, r := range rules {
		errs = append(errs, r(m)...)
	}
	return errs
}

func TestManifests(t *testing.T) {
	for _, file := range shippedManifests(t) {
		t.Run(file, func(t *testing.T) {
			m, _ := loadManifest(t, file)
			for _, err := range check(m, rulesFor(t, file)) {
				t.Error(err)
			}
		})
	}
}

// The production manifest pulls the provider from an OCI registry; the local one is identical but for the image.
func TestLocalManifestMatchesProduction(t *testing.T) {
	prod, _ := loadManifest(t, prodManifest)
	local, _ := loadManifest(t, localManifest)
	image := func(m *manifest) *string {
		t.Helper()
		c := findComponent(m, providerName)
		if c == nil {
			t.Fatalf("no component %s", providerName)
		}
		return &c.Properties.Image
	}
	prodImage, localImg := image(prod), image(local)
	if *localImg != localImage {
		t.Errorf("local image %q, want %q", *localImg, localImage)
	}
	if strings.Contains(*prodImage, "://") || !strings.Contains(*prodImage, "/") || !strings.Contains(*prodImage, ":") {
		t.Errorf("production image %q, want an OCI reference registry/repo:tag", *prodImage)
	}
	*localImg = *prodImage
	a, err := yaml.Marshal(prod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(local)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("local.wadm.yaml differs from wadm.yaml beyond the provider image:\n--- wadm.yaml\n%s\n--- local.wadm.yaml\n%s", a, b)
	}
}

// The WIT names the package and interface tenant links use (checkTenant holds the tenant example to it).
func TestWIT(t *testing.T) {
	w := loadWIT(t)
	if w.pkg != witPackage {
		t.Errorf("wit/world.wit: package %q, want %s", w.pkg, witPackage)
	}
	for _, want := range []string{"interface tenant", "world provider", "export tenant;"} {
		if !bytes.Contains(w.text, []byte(want)) {
			t.Errorf("wit/world.wit lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "wit", "deps.toml")); err != nil {
		t.Errorf("wit/deps.toml (keeps wash from fetching): %v", err)
	}
}

func TestWadmName(t *testing.T) {
	tests := []struct {
		name, manifest, entry, want string
	}{
		// wadm 0.21.1 compute_proper_component_id
		{"dash in entry", "mymodel", "echo-component", "mymodel-echo_component"},
		{"spaces in manifest", "some model name with spaces cause yaml", "echo", "some_model_name_with_spaces_cause_yaml-echo"},
		{"lowercased", "My ThInG", "thing.wasm", "my_thing-thing_wasm"},
		{"non-ASCII", "app", "clé", "app-cl_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wadmName(tt.manifest, tt.entry); got != tt.want {
				t.Errorf("wadmName(%q, %q) = %q, want %q", tt.manifest, tt.entry, got, tt.want)
			}
		})
	}
	if got, want := secretConfigName("infisical-secrets", providerSecret), "SECRET_infisical_secrets-infisical_client_secret"; got != want {
		t.Errorf("secretConfigName = %q, want %q", got, want)
	}
}

// previousManifest is wadm.yaml before the provider and the example moved apart (git show e19174d~1:wadm.yaml,
// comments dropped). wadm accepted it, but the provider's INFISICAL_CLIENT_SECRET and the tenant link's were both
// stored as SECRET_infisical_secrets-infisical_client_secret, and their scalers rewrote that config forever.
const previousManifest = `apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: infisical-secrets
  annotations:
    version: v0.1.0
    description: Infisical secrets backend for wasmCloud, with an example component reading secrets through it
spec:
  policies:
    - name: bootstrap
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: nats-kv
    - name: infisical-prod
      type: policy.secret.wasmcloud.dev/v1alpha1
      properties:
        backend: infisical
        environment: prod
        secret_path: /
  components:
    - name: infisical-secrets
      type: capability
      properties:
        image: ghcr.io/infisical-secrets-provider/infisical-secrets-provider:0.1.0
        id: infisical-secrets
        config:
          - name: provider-settings
            properties:
              INFISICAL_BASE_URL: "https://app.infisical.com"
              INFISICAL_PROJECT_ID: "00000000-0000-0000-0000-000000000000"
              INFISICAL_ENVIRONMENT: "prod"
              INFISICAL_CLIENT_ID: "00000000-0000-0000-0000-000000000000"
              TRUSTED_ISSUERS: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW"
              BACKEND_NAME: "infisical"
        secrets:
          - name: INFISICAL_CLIENT_SECRET
            properties:
              policy: bootstrap
              key: infisical-client-secret
          - name: SERVER_XKEY_SEED
            properties:
              policy: bootstrap
              key: infisical-server-xkey-seed
      traits:
        - type: spreadscaler
          properties:
            instances: 2
    - name: hello
      type: component
      properties:
        image: ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0
        secrets:
          - name: DB_PASSWORD
            properties:
              policy: infisical-prod
              key: DB_PASSWORD
          - name: API_KEY
            properties:
              policy: infisical-prod
              key: /payments/API_KEY
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            namespace: infisical
            package: secrets-provider
            interfaces: [tenant]
            target:
              name: infisical-secrets
              config:
                - name: tenant-settings
                  properties:
                    APPLICATION: "infisical-secrets"
                    INFISICAL_PROJECT_ID: "11111111-1111-1111-1111-111111111111"
                    INFISICAL_ENVIRONMENT: "prod"
              secrets:
                - name: INFISICAL_CLIENT_ID
                  properties:
                    policy: bootstrap
                    key: hello-infisical-client-id
                - name: INFISICAL_CLIENT_SECRET
                  properties:
                    policy: bootstrap
                    key: hello-infisical-client-secret
`

// The rules that motivated the split catch the previous wadm.yaml.
func TestPreviousManifestRejected(t *testing.T) {
	var m manifest
	if err := decodeStrict([]byte(previousManifest), &m); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rule rule
		want string
	}{
		{"secret collision", checkWadm, `component 0 (infisical-secrets) secret INFISICAL_CLIENT_SECRET and component 1 (hello) link ` +
			`infisical:secrets-provider target secret INFISICAL_CLIENT_SECRET are both stored as wadm config "SECRET_infisical_secrets-infisical_client_secret"`},
		{"not shared", checkProvider, "annotation " + sharedAnnotation},
		{"spreadscaler", checkProvider, "provider scaler is a spreadscaler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errors.Join(tt.rule(&m)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("rule = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func mustComponent(t *testing.T, m *manifest, name string) *component {
	t.Helper()
	c := findComponent(m, name)
	if c == nil {
		t.Fatalf("%s has no component %q", m.Metadata.Name, name)
	}
	return c
}

// editLink changes c's first link trait.
func editLink(t *testing.T, c *component, edit func(l *link)) {
	t.Helper()
	for i := range c.Traits {
		if c.Traits[i].Type != "link" {
			continue
		}
		var l link
		if err := decodeTrait(&c.Traits[i].Properties, &l); err != nil {
			t.Fatal(err)
		}
		edit(&l)
		c.Traits[i].Properties = encodeNode(t, l)
		return
	}
	t.Fatalf("component %s has no link", c.Name)
}

func encodeNode(t *testing.T, v any) yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		t.Fatal(err)
	}
	return n
}

// setScaler replaces c's scaler traits with one of the given type and instances.
func setScaler(t *testing.T, c *component, traitType string, instances int) {
	t.Helper()
	c.Traits = slices.DeleteFunc(c.Traits, func(tr trait) bool { return isScaler(tr.Type) })
	c.Traits = append(c.Traits, trait{Type: traitType, Properties: encodeNode(t, map[string]int{"instances": instances})})
}

// Each rule must be able to fail: break a good manifest one way at a time.
func TestValidateCatchesMistakes(t *testing.T) {
	const (
		app    = appExample
		prod   = prodManifest
		tenant = tenantExample
		// components of the examples
		api    = "api"
		shared = "secrets-provider"
	)
	secret := func(name, policy, key string) namedProps {
		return namedProps{Name: name, Properties: map[string]any{"policy": policy, "key": key}}
	}
	tests := []struct {
		name   string
		file   string
		mutate func(t *testing.T, m *manifest)
		want   string
	}{
		// wadm's rules
		{"wrong apiVersion", prod, func(t *testing.T, m *manifest) { m.APIVersion = "v1" }, "apiVersion"},
		{"wrong kind", prod, func(t *testing.T, m *manifest) { m.Kind = "Deployment" }, "kind"},
		{"no name", prod, func(t *testing.T, m *manifest) { m.Metadata.Name = "" }, "metadata.name"},
		{"name with a dot", app, func(t *testing.T, m *manifest) { m.Metadata.Name = "my.shop" }, "manifest name [my.shop] is not allowed"},
		{"no version", app, func(t *testing.T, m *manifest) { delete(m.Metadata.Annotations, "version") }, "version is empty"},
		{"version latest", app, func(t *testing.T, m *manifest) { m.Metadata.Annotations["version"] = "latest" }, "latest is not allowed"},
		{"unknown component type", app, func(t *testing.T, m *manifest) { mustComponent(t, m, api).Type = "actor" }, "want component or capability"},
		{"no image", app, func(t *testing.T, m *manifest) { mustComponent(t, m, api).Properties.Image = "" }, "has no image"},
		{"duplicate component name", app, func(t *testing.T, m *manifest) {
			m.Spec.Components = append(m.Spec.Components, *mustComponent(t, m, api))
		}, "Duplicate component name in manifest: api"},
		{"duplicate component id", prod, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, providerName)
			c.Properties.ID = "twice"
			again := *c
			again.Name, again.Traits, again.Properties.Secrets = "again", nil, nil
			m.Spec.Components = append(m.Spec.Components, again)
		}, "Duplicate component identifier in manifest: twice"},
		{"secret names unknown policy", app, func(t *testing.T, m *manifest) {
			mustComponent(t, m, api).Properties.Secrets[0].Properties["policy"] = "nope"
		}, "unknown policy 'nope'"},
		{"policy of wrong type", app, func(t *testing.T, m *manifest) { m.Spec.Policies[0].Type = "policy.other/v1" }, "is not a secret policy"},
		{"policy without backend", prod, func(t *testing.T, m *manifest) { delete(m.Spec.Policies[0].Properties, "backend") }, "does not include a 'backend' property"},
		{"secret without key", app, func(t *testing.T, m *manifest) {
			delete(mustComponent(t, m, api).Properties.Secrets[1].Properties, "key")
		}, "has no key"},
		{"unknown secret property", app, func(t *testing.T, m *manifest) {
			mustComponent(t, m, api).Properties.Secrets[0].Properties["path"] = "/x"
		}, `unknown property "path"`},
		{"numeric version", app, func(t *testing.T, m *manifest) {
			mustComponent(t, m, api).Properties.Secrets[0].Properties["version"] = 3
		}, "wadm needs a string"},
		{"config without name", prod, func(t *testing.T, m *manifest) { mustComponent(t, m, providerName).Properties.Config[0].Name = "" }, "has no name"},
		{"config named SECRET", prod, func(t *testing.T, m *manifest) {
			mustComponent(t, m, providerName).Properties.Config[0].Name = "secret-settings"
		}, "must not start with SECRET"},
		{"boolean config value", prod, func(t *testing.T, m *manifest) {
			mustComponent(t, m, providerName).Properties.Config[0].Properties["CACHE"] = true
		}, "wadm needs a string"},
		{"zero instances", app, func(t *testing.T, m *manifest) { setScaler(t, mustComponent(t, m, api), "spreadscaler", 0) }, "want at least 1"},
		{"unknown trait", app, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, api)
			c.Traits = append(c.Traits, trait{Type: "autoscaler", Properties: encodeNode(t, map[string]int{"max": 3})})
		}, `unknown trait "autoscaler"`},
		{"misspelled scaler field", app, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, api)
			c.Traits[0].Properties = encodeNode(t, map[string]int{"instance": 1})
		}, "field instance not found"},
		{"misspelled link field", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, api)
			for i := range c.Traits {
				if c.Traits[i].Type == "link" {
					c.Traits[i].Properties = encodeNode(t, map[string]any{"namespace": "infisical", "package": "secrets-provider",
						"interfaces": []string{"tenant"}, "targets": map[string]string{"name": shared}})
				}
			}
		}, "field targets not found"},
		{"link to a missing component", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Target.Name = "ghost" })
		}, `target "ghost"`},
		{"link without interfaces", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Interfaces = nil })
		}, "namespace, package and interfaces are required"},
		{"provider to provider link", tenant, func(t *testing.T, m *manifest) { mustComponent(t, m, api).Type = "capability" }, "provider to provider links are rejected"},
		{"shared component with image", tenant, func(t *testing.T, m *manifest) {
			mustComponent(t, m, shared).Properties.Image = "ghcr.io/x/y:1"
		}, "both 'image' and 'application'"},
		{"shared component without component", tenant, func(t *testing.T, m *manifest) {
			mustComponent(t, m, shared).Properties.Application.Component = ""
		}, "application needs both name and component"},
		{"shared component with config", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, shared)
			c.Properties.Config = []namedProps{{Name: "more", Properties: map[string]any{"LOG_LEVEL": "debug"}}}
		}, "cannot specify additional 'config'"},
		{"shared component with secrets", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, shared)
			c.Properties.Secrets = []namedProps{secret("EXTRA", "bootstrap", "extra")}
		}, "cannot specify additional 'secrets'"},
		{"shared component with a scaler", tenant, func(t *testing.T, m *manifest) {
			setScaler(t, mustComponent(t, m, shared), "daemonscaler", 1)
		}, "takes no traits"},
		{"two secrets of one name", app, func(t *testing.T, m *manifest) {
			mustComponent(t, m, api).Properties.Secrets[1].Name = "DB_PASSWORD"
		}, `are both stored as wadm config "SECRET_shop-db_password"`},
		{"secret names equal after wadm's normalization", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) {
				l.Source.Secrets = append(l.Source.Secrets, secret("db.password", "bootstrap", "db"))
			})
		}, `are both stored as wadm config "SECRET_shop-db_password"`},
		{"provider and link secret of one name", prod, func(t *testing.T, m *manifest) {
			// The previous wadm.yaml: a component linking to the provider in the provider's manifest.
			m.Spec.Components = append(m.Spec.Components, component{Name: "hello", Type: "component"})
			c := &m.Spec.Components[len(m.Spec.Components)-1]
			c.Properties.Image = "ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0"
			var l link
			l.Namespace, l.Package, l.Interfaces = "infisical", "secrets-provider", []string{"tenant"}
			l.Target.Name = providerName
			l.Target.Secrets = []namedProps{secret(providerSecret, "bootstrap", "hello-secret")}
			c.Traits = []trait{{Type: "link", Properties: encodeNode(t, l)}}
		}, `are both stored as wadm config "SECRET_infisical_secrets-infisical_client_secret"`},
		{"two link configs of one name", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) {
				l.Source.Config = []namedProps{{Name: "tenant-settings", Properties: map[string]any{"X": "y"}}}
			})
		}, "Duplicate link config name found: 'tenant-settings'"},
		{"configs equal after wadm's normalization", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, api)
			c.Properties.Config = []namedProps{{Name: "Tenant.Settings", Properties: map[string]any{"GREETING": "hi"}}}
		}, `are both stored as wadm config "shop-tenant_settings" with different properties`},

		// the provider manifests
		{"not shared", prod, func(t *testing.T, m *manifest) { delete(m.Metadata.Annotations, sharedAnnotation) }, "annotation " + sharedAnnotation},
		{"shared but not a Rust bool", prod, func(t *testing.T, m *manifest) { m.Metadata.Annotations[sharedAnnotation] = "yes" }, `is "yes"`},
		{"spreadscaler instances: 2", prod, func(t *testing.T, m *manifest) {
			setScaler(t, mustComponent(t, m, providerName), "spreadscaler", 2)
		}, "provider scaler is a spreadscaler, want a daemonscaler"},
		{"daemonscaler instances: 2", prod, func(t *testing.T, m *manifest) {
			setScaler(t, mustComponent(t, m, providerName), "daemonscaler", 2)
		}, "daemonscaler instances 2, want 1"},
		{"no scaler", prod, func(t *testing.T, m *manifest) { mustComponent(t, m, providerName).Traits = nil }, "0 scaler traits"},
		{"no provider", prod, func(t *testing.T, m *manifest) { mustComponent(t, m, providerName).Name = "other" }, "no provider component"},
		{"provider id", prod, func(t *testing.T, m *manifest) { mustComponent(t, m, providerName).Properties.ID = "infisical-secrets" }, `id "infisical-secrets"`},
		{"provider secret from itself", prod, func(t *testing.T, m *manifest) { m.Spec.Policies[0].Properties["backend"] = backendName }, "cannot fetch its own credentials"},
		{"provider lacks xkey seed", prod, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, providerName)
			c.Properties.Secrets = c.Properties.Secrets[:1]
		}, "lack SERVER_XKEY_SEED"},
		{"provider lacks project", prod, func(t *testing.T, m *manifest) {
			delete(mustComponent(t, m, providerName).Properties.Config[0].Properties, "INFISICAL_PROJECT_ID")
		}, "lacks INFISICAL_PROJECT_ID"},
		{"provider renamed backend", prod, func(t *testing.T, m *manifest) {
			mustComponent(t, m, providerName).Properties.Config[0].Properties["BACKEND_NAME"] = "vault"
		}, "BACKEND_NAME"},

		// the app example
		{"app secret from another backend", app, func(t *testing.T, m *manifest) { m.Spec.Policies[0].Properties["backend"] = "nats-kv" }, `comes from backend "nats-kv", want "infisical"`},
		{"app reads no secret", app, func(t *testing.T, m *manifest) { mustComponent(t, m, api).Properties.Secrets = nil }, "no component secret is read"},

		// the tenant example
		{"no tenant link", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, api)
			c.Traits = slices.DeleteFunc(c.Traits, func(tr trait) bool { return tr.Type == "link" })
		}, "no tenant link"},
		{"tenant link to a local component", tenant, func(t *testing.T, m *manifest) {
			c := mustComponent(t, m, shared)
			c.Properties.Application, c.Properties.Image = nil, "ghcr.io/x/y:1"
		}, "no tenant link"},
		{"tenant link to another application", tenant, func(t *testing.T, m *manifest) {
			mustComponent(t, m, shared).Properties.Application.Name = "infisical"
		}, "shared component is infisical/infisical-secrets"},
		{"tenant link to another component", tenant, func(t *testing.T, m *manifest) {
			mustComponent(t, m, shared).Properties.Application.Component = "provider"
		}, "shared component is infisical-secrets/provider"},
		{"tenant link target of another type", tenant, func(t *testing.T, m *manifest) { mustComponent(t, m, shared).Type = "component" }, `target type "component"`},
		{"tenant link package not the WIT's", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Package = "secrets" })
		}, "want the WIT package " + witPackage},
		{"tenant link interface not in the WIT", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Interfaces = []string{"tenants"} })
		}, `interface "tenants" is not declared`},
		{"tenant link lacks client secret", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Target.Secrets = l.Target.Secrets[:1] })
		}, "target secrets lack " + providerSecret},
		{"tenant secrets from the provider itself", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Target.Secrets[1].Properties["policy"] = "infisical" })
		}, "target secret INFISICAL_CLIENT_SECRET comes from backend \"infisical\""},
		{"tenant link sets APPLICATION", tenant, func(t *testing.T, m *manifest) {
			editLink(t, mustComponent(t, m, api), func(l *link) { l.Target.Config[0].Properties["APPLICATION"] = "shop" })
		}, "sets APPLICATION"},
		{"tenant link source with an id", tenant, func(t *testing.T, m *manifest) { mustComponent(t, m, api).Properties.ID = "shop_api" }, `gives the provider application "shop_api", not "shop"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := rulesFor(t, tt.file)
			m, _ := loadManifest(t, tt.file)
			if errs := check(m, rules); len(errs) != 0 {
				t.Fatalf("good manifest %s rejected: %v", tt.file, errors.Join(errs...))
			}
			tt.mutate(t, m)
			err := errors.Join(check(m, rules)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("check = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// wash build needs these keys for a Go provider; there is no TOML parser among the dependencies, and the file is
// flat enough to read by line.
func TestWasmcloudToml(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, "wasmcloud.toml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	got := map[string]string{} // "section.key" -> value
	section := ""
	line := regexp.MustCompile(`^([a-z_]+)\s*=\s*(.+?)\s*$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			section = strings.Trim(s, "[]") + "."
			continue
		}
		m := line.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("wasmcloud.toml: cannot read line %q", s)
			continue
		}
		if _, dup := got[section+m[1]]; dup {
			t.Errorf("wasmcloud.toml: %s%s set twice", section, m[1])
		}
		got[section+m[1]] = strings.Trim(m[2], `"`)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ key, want string }{
		{"name", "Infisical Secrets Provider"},
		{"language", "go"},
		{"type", "provider"},
		{"version", "0.1.0"},
		{"provider.vendor", "infisical-secrets-provider"},
		{"provider.bin_name", "infisical-secrets-provider"},
		{"go.disable_go_generate", "true"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got[tt.key] != tt.want {
				t.Errorf("%s = %q, want %q", tt.key, got[tt.key], tt.want)
			}
		})
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+`).MatchString(got["version"]) {
		t.Errorf("version %q is not semver", got["version"])
	}
}
