package settings

import (
	"maps"
	"os"
	"slices"
	"strings"
)

// Source looks up a setting's raw value by its canonical (upper-case) name.
type Source interface {
	Lookup(name string) (string, bool)
}

type envSource struct{}

func (envSource) Lookup(name string) (string, bool) { return os.LookupEnv(name) }

// Env reads settings from the process environment.
func Env() Source { return envSource{} }

type mapSource map[string]string

func (m mapSource) Lookup(name string) (string, bool) {
	v, ok := m[strings.ToUpper(name)]
	return v, ok
}

// Names lists the canonical names set, so LoadTenant can refuse every name outside the link allow-list.
func (m mapSource) Names() []string {
	return slices.Sorted(maps.Keys(m))
}

// lister is a Source that can list the names it sets.
type lister interface{ Names() []string }

// Maps reads settings from a provider's config and secrets (HostData, or a link's target config and secrets). Names
// match case-insensitively, so "infisical_project_id" sets INFISICAL_PROJECT_ID; a secret wins over a config value
// of the same name, and an empty value counts as unset. When one map holds a name in several spellings, the
// upper-case one wins, then the first in sorted order, so the result never depends on map iteration.
func Maps(config, secrets map[string]string) Source {
	m := mapSource{}
	add := func(src map[string]string) {
		spelled := map[string]string{} // canonical name -> spelling taken from src
		for k, v := range src {
			if strings.TrimSpace(v) == "" {
				continue // unset here: a value from the other map, or the default, applies
			}
			name := strings.ToUpper(k)
			if prev, ok := spelled[name]; ok && (prev == name || (k != name && prev < k)) {
				continue
			}
			spelled[name] = k
			m[name] = v
		}
	}
	add(config)
	add(secrets)
	return m
}
