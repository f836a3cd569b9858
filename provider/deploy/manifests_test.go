package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	repoRoot = "../.."

	secretPolicyType = "policy.secret.wasmcloud.dev/v1alpha1"
	providerName     = "infisical-secrets"
	backendName      = "infisical"
	localImage       = "file://./build/infisical-secrets-provider.par.gz"
	witPackage       = "infisical:secrets-provider"
)

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
		Image       string         `yaml:"image"`
		ID          string         `yaml:"id"`
		Application map[string]any `yaml:"application"`
		Config      []namedProps   `yaml:"config"`
		Secrets     []namedProps   `yaml:"secrets"`
	} `yaml:"properties"`
	Traits []trait `yaml:"traits"`
}

// namedProps is a config or secret entry.
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
	Name       string   `yaml:"name"`
	Target     struct {
		Name    string       `yaml:"name"`
		Config  []namedProps `yaml:"config"`
		Secrets []namedProps `yaml:"secrets"`
	} `yaml:"target"`
	Source struct {
		Config  []namedProps `yaml:"config"`
		Secrets []namedProps `yaml:"secrets"`
	} `yaml:"source"`
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
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

// validate reports every way m breaks wadm's rules (validate_policies, string-only maps, config naming) or this
// project's deployment rules.
func validate(m *manifest) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if m.APIVersion != "core.oam.dev/v1beta1" {
		bad("apiVersion %q, want core.oam.dev/v1beta1", m.APIVersion)
	}
	if m.Kind != "Application" {
		bad("kind %q, want Application", m.Kind)
	}
	if m.Metadata.Name == "" {
		bad("metadata.name is empty")
	}
	if m.Metadata.Annotations["version"] == "" {
		bad("metadata.annotations.version is empty (wadm versions deployments by it)")
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
	backendOf := func(policyName string) string {
		b, _ := policies[policyName].Properties["backend"].(string)
		return b
	}

	checkSecrets := func(where string, secrets []namedProps) {
		for _, s := range secrets {
			w := where + " secret " + s.Name
			if s.Name == "" {
				bad("%s has no name", w)
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
	checkConfig := func(where string, config []namedProps) {
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
		}
	}

	components := map[string]component{}
	for _, c := range m.Spec.Components {
		if _, dup := components[c.Name]; dup {
			bad("component %q declared twice", c.Name)
		}
		components[c.Name] = c
	}
	for i, c := range m.Spec.Components {
		where := fmt.Sprintf("component %d (%s)", i, c.Name)
		if c.Name == "" {
			bad("%s has no name", where)
		}
		if c.Type != "component" && c.Type != "capability" {
			bad("%s: type %q, want component or capability", where, c.Type)
		}
		if c.Properties.Image == "" && c.Properties.Application == nil {
			bad("%s has no image", where)
		}
		checkConfig(where, c.Properties.Config)
		checkSecrets(where, c.Properties.Secrets)
		for _, tr := range c.Traits {
			switch tr.Type {
			case "spreadscaler", "daemonscaler":
				var s scaler
				if err := tr.Properties.Decode(&s); err != nil {
					bad("%s %s: %v", where, tr.Type, err)
					continue
				}
				if n := cmpOr(s.Instances, s.Replicas); n < 1 {
					bad("%s %s: instances %d, want at least 1", where, tr.Type, n)
				}
			case "link":
				var l link
				if err := tr.Properties.Decode(&l); err != nil {
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
				checkConfig(w+" target", l.Target.Config)
				checkSecrets(w+" target", l.Target.Secrets)
				checkConfig(w+" source", l.Source.Config)
				checkSecrets(w+" source", l.Source.Secrets)
			default:
				bad("%s: unknown trait %q", where, tr.Type)
			}
		}
	}

	// Project rules: the provider, its settings, its bootstrap, and the backend it serves.
	p, ok := components[providerName]
	if !ok {
		bad("no provider component %q", providerName)
		return errs
	}
	if p.Type != "capability" || p.Properties.ID != providerName {
		bad("provider %q: type %q id %q, want capability with id %q", providerName, p.Type, p.Properties.ID, providerName)
	}
	settings := map[string]any{}
	for _, c := range p.Properties.Config {
		for k, v := range c.Properties {
			settings[k] = v
		}
	}
	for _, k := range []string{"INFISICAL_BASE_URL", "INFISICAL_PROJECT_ID", "INFISICAL_ENVIRONMENT", "TRUSTED_ISSUERS", "BACKEND_NAME"} {
		if s, _ := settings[k].(string); s == "" {
			bad("provider config lacks %s", k)
		}
	}
	if settings["BACKEND_NAME"] != backendName {
		bad("provider BACKEND_NAME %v, want %q (the backend the policies name)", settings["BACKEND_NAME"], backendName)
	}
	own := map[string]string{}
	for _, s := range p.Properties.Secrets {
		pol, _ := s.Properties["policy"].(string)
		own[s.Name] = backendOf(pol)
	}
	for _, name := range []string{"INFISICAL_CLIENT_SECRET", "SERVER_XKEY_SEED"} {
		b, ok := own[name]
		switch {
		case !ok:
			bad("provider secrets lack %s", name)
		case b == backendName:
			bad("provider secret %s comes from its own backend %q: a secrets backend cannot fetch its own credentials", name, b)
		}
	}
	served := false
	for _, pol := range m.Spec.Policies {
		served = served || (pol.Type == secretPolicyType && backendOf(pol.Name) == backendName)
	}
	if !served {
		bad("no secret policy with backend %q", backendName)
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
func checkStrings(errs *[]error, where string, props map[string]any) {
	for k, v := range props {
		if _, ok := v.(string); !ok {
			*errs = append(*errs, fmt.Errorf("%s: property %s is %T, wadm needs a string (quote it)", where, k, v))
		}
	}
}

func TestManifests(t *testing.T) {
	for _, name := range []string{"wadm.yaml", "local.wadm.yaml"} {
		t.Run(name, func(t *testing.T) {
			m, _ := loadManifest(t, name)
			for _, err := range validate(m) {
				t.Error(err)
			}
		})
	}
}

// The production manifest pulls the provider from an OCI registry; the local one is identical but for the image.
func TestLocalManifestMatchesProduction(t *testing.T) {
	prod, _ := loadManifest(t, "wadm.yaml")
	local, _ := loadManifest(t, "local.wadm.yaml")
	image := func(m *manifest) *string {
		for i := range m.Spec.Components {
			if m.Spec.Components[i].Name == providerName {
				return &m.Spec.Components[i].Properties.Image
			}
		}
		t.Fatalf("no component %s", providerName)
		return nil
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

// The tenant link must name the interface the WIT declares and the application it serves.
func TestTenantLinkMatchesWIT(t *testing.T) {
	m, _ := loadManifest(t, "wadm.yaml")
	wit, err := os.ReadFile(filepath.Join(repoRoot, "wit", "world.wit"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := regexp.MustCompile(`(?m)^package ([a-z0-9-]+):([a-z0-9-]+)@[0-9.]+;`).FindSubmatch(wit)
	if pkg == nil || string(pkg[1])+":"+string(pkg[2]) != witPackage {
		t.Fatalf("wit/world.wit: package line missing or not %s", witPackage)
	}
	for _, want := range []string{"interface tenant", "world provider", "export tenant;"} {
		if !bytes.Contains(wit, []byte(want)) {
			t.Errorf("wit/world.wit lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "wit", "deps.toml")); err != nil {
		t.Errorf("wit/deps.toml (keeps wash from fetching): %v", err)
	}

	var links []link
	for _, c := range m.Spec.Components {
		for _, tr := range c.Traits {
			var l link
			if tr.Type != "link" {
				continue
			}
			if err := tr.Properties.Decode(&l); err != nil {
				t.Fatal(err)
			}
			if l.Target.Name == providerName {
				links = append(links, l)
			}
		}
	}
	if len(links) == 0 {
		t.Fatal("no link to the provider")
	}
	for _, l := range links {
		if l.Namespace+":"+l.Package != string(pkg[1])+":"+string(pkg[2]) {
			t.Errorf("link %s:%s, want the WIT package %s", l.Namespace, l.Package, witPackage)
		}
		for _, iface := range l.Interfaces {
			if !regexp.MustCompile(`(?m)^interface ` + regexp.QuoteMeta(iface) + ` \{`).Match(wit) {
				t.Errorf("link interface %q is not declared in wit/world.wit", iface)
			}
		}
		app := ""
		for _, c := range l.Target.Config {
			if v, ok := c.Properties["APPLICATION"].(string); ok {
				app = v
			}
		}
		if app != m.Metadata.Name {
			t.Errorf("tenant link APPLICATION %q, want the manifest's name %q (what hosts send as application.name)", app, m.Metadata.Name)
		}
		names := map[string]bool{}
		for _, s := range l.Target.Secrets {
			names[s.Name] = true
		}
		if !names["INFISICAL_CLIENT_ID"] || !names["INFISICAL_CLIENT_SECRET"] {
			t.Errorf("tenant link secrets %v, want INFISICAL_CLIENT_ID and INFISICAL_CLIENT_SECRET", names)
		}
	}
}

// Each rule must be able to fail: break a good manifest one way at a time.
func TestValidateCatchesMistakes(t *testing.T) {
	_, data := loadManifest(t, "wadm.yaml")
	fresh := func(t *testing.T) *manifest {
		t.Helper()
		var m manifest
		if err := decodeStrict(data, &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	provider := func(m *manifest) *component {
		for i := range m.Spec.Components {
			if m.Spec.Components[i].Name == providerName {
				return &m.Spec.Components[i]
			}
		}
		return &component{}
	}
	example := func(m *manifest) *component {
		for i := range m.Spec.Components {
			if m.Spec.Components[i].Type == "component" {
				return &m.Spec.Components[i]
			}
		}
		return &component{}
	}
	tests := []struct {
		name   string
		mutate func(m *manifest)
		want   string
	}{
		{"wrong apiVersion", func(m *manifest) { m.APIVersion = "v1" }, "apiVersion"},
		{"wrong kind", func(m *manifest) { m.Kind = "Deployment" }, "kind"},
		{"no name", func(m *manifest) { m.Metadata.Name = "" }, "metadata.name"},
		{"unknown component type", func(m *manifest) { example(m).Type = "actor" }, "want component or capability"},
		{"no image", func(m *manifest) { example(m).Properties.Image = "" }, "has no image"},
		{"secret names unknown policy", func(m *manifest) { example(m).Properties.Secrets[0].Properties["policy"] = "nope" }, "unknown policy 'nope'"},
		{"policy of wrong type", func(m *manifest) { m.Spec.Policies[1].Type = "policy.other/v1" }, "is not a secret policy"},
		{"policy without backend", func(m *manifest) { delete(m.Spec.Policies[0].Properties, "backend") }, "does not include a 'backend' property"},
		{"secret without key", func(m *manifest) { delete(example(m).Properties.Secrets[1].Properties, "key") }, "has no key"},
		{"numeric version", func(m *manifest) { example(m).Properties.Secrets[0].Properties["version"] = 3 }, "wadm needs a string"},
		{"config without name", func(m *manifest) { provider(m).Properties.Config[0].Name = "" }, "has no name"},
		{"config named SECRET", func(m *manifest) { provider(m).Properties.Config[0].Name = "secret-settings" }, "must not start with SECRET"},
		{"boolean config value", func(m *manifest) { provider(m).Properties.Config[0].Properties["CACHE"] = true }, "wadm needs a string"},
		{"provider secret from itself", func(m *manifest) { provider(m).Properties.Secrets[0].Properties["policy"] = "infisical-prod" }, "cannot fetch its own credentials"},
		{"provider lacks xkey seed", func(m *manifest) { provider(m).Properties.Secrets = provider(m).Properties.Secrets[:1] }, "lack SERVER_XKEY_SEED"},
		{"provider lacks project", func(m *manifest) { delete(provider(m).Properties.Config[0].Properties, "INFISICAL_PROJECT_ID") }, "lacks INFISICAL_PROJECT_ID"},
		{"provider renamed backend", func(m *manifest) { provider(m).Properties.Config[0].Properties["BACKEND_NAME"] = "vault" }, "BACKEND_NAME"},
		{"no infisical policy", func(m *manifest) { m.Spec.Policies = m.Spec.Policies[:1] }, "no secret policy with backend"},
		{"link to a missing component", func(m *manifest) {
			for i, tr := range example(m).Traits {
				if tr.Type == "link" {
					var l link
					_ = tr.Properties.Decode(&l)
					l.Target.Name = "ghost"
					var n yaml.Node
					_ = n.Encode(l)
					example(m).Traits[i].Properties = n
				}
			}
		}, `target "ghost"`},
		{"zero instances", func(m *manifest) {
			var n yaml.Node
			_ = n.Encode(map[string]int{"instances": 0})
			provider(m).Traits[0].Properties = n
		}, "want at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fresh(t)
			if errs := validate(m); len(errs) != 0 {
				t.Fatalf("good manifest rejected: %v", errors.Join(errs...))
			}
			tt.mutate(m)
			err := errors.Join(validate(m)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("validate = %v, want an error mentioning %q", err, tt.want)
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
