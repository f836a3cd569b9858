package settings

import (
	"fmt"
	"slices"
	"strings"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
)

// What a tenant link may set. Anyone who can deploy a manifest or put a link writes a link's config, so the link
// settings are an allow-list: everything else on a link is refused with a message saying why.
var (
	// linkPlace choose what to read and for which application.
	linkPlace = []string{"APPLICATION", "INFISICAL_PROJECT_ID", "INFISICAL_ENVIRONMENT", "INFISICAL_SECRET_PATH"}
	// linkIdentity choose and prove the identity that logs in. A link either sets none of them and uses the
	// provider's identity, or brings its own: then none of the provider's login details are mixed in, so a link can
	// never pair its client ID with the provider's client secret, nor send the provider's details to its own URL.
	linkIdentity = []string{"INFISICAL_AUTH_METHOD", "INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET",
		"TENANT_INFISICAL_CLIENT_SECRET", "INFISICAL_IDENTITY_ID", "INFISICAL_OIDC_TOKEN", "INFISICAL_JWT",
		"INFISICAL_ACCESS_TOKEN", "INFISICAL_ORGANIZATION_SLUG"}
	// linkServer choose the Infisical a link's own identity logs in to; with the provider's identity they cannot
	// change, since that would send the provider's credentials elsewhere.
	linkServer = []string{"INFISICAL_BASE_URL", "INFISICAL_CA_CERT"}
	// linkFiles name files the provider would read, and send to Infisical: only the operator chooses those.
	linkFiles = []string{"INFISICAL_KUBERNETES_TOKEN_PATH", "INFISICAL_GCP_KEY_FILE", "INFISICAL_OIDC_TOKEN_PATH",
		"INFISICAL_CA_CERT_PATH"}
)

// LinkSettings lists, sorted, the names a tenant link may set.
func LinkSettings() []string {
	return slices.Sorted(slices.Values(slices.Concat(linkPlace, linkIdentity, linkServer)))
}

// LoadTenant reads a link's settings (its target config and secrets) over the provider's Infisical settings. It
// refuses, naming each, every setting outside the link allow-list (LinkSettings), a file path, an identity that is
// incomplete, and an ambient login (infisical.Method.Ambient: the provider's platform identity, not anything a link
// brings) unless the provider's TENANT_AMBIENT_AUTH allows it, and then only to the provider's own
// INFISICAL_BASE_URL and CA.
func LoadTenant(src Source, provider *Settings) (Tenant, error) {
	problems := refusedLinkSettings(src)
	own := setsAny(src, linkIdentity)
	t := provider.Infisical
	if own {
		t = withoutIdentity(t)
	}
	if _, ok := lookup(src, "INFISICAL_CA_CERT"); ok {
		t.CACert, t.CACertPath = "", "" // the link's CA replaces the provider's, whichever form that uses
	}
	t, more := applyLinkValues(src, t)
	problems = append(problems, more...)
	if own {
		problems = append(problems, checkOwnIdentity(t, provider)...)
		if t.Method.Ambient() && provider.TenantAmbientAuth {
			t.KubernetesTokenPath, t.AzureResource, t.GCPKeyFile =
				provider.Infisical.KubernetesTokenPath, provider.Infisical.AzureResource, provider.Infisical.GCPKeyFile
		}
		if t.BaseURL == provider.Infisical.BaseURL && t.Credentials.Identity() == provider.Infisical.Credentials.Identity() {
			// An identity of its own that is the provider's (an ambient login naming the provider's machine
			// identity): it keeps the provider's identity in all but name, and the place it may move to with it.
			problems = append(problems, checkKeptIdentityPlace(t, provider)...)
		}
	} else {
		problems = append(problems, checkSameServer(t, provider.Infisical, keepIdentityTodo)...)
		problems = append(problems, checkKeptIdentityPlace(t, provider)...)
	}
	if t.ProjectID == "" {
		problems = append(problems, Problem{"INFISICAL_PROJECT_ID", "required; set it on the link or on the provider to the ID of the Infisical project to read (Project Settings)"})
	}
	problems = append(problems, checkInfisical(t, own)...)
	if len(problems) > 0 {
		return Tenant{}, &Error{Problems: dedupe(problems)}
	}
	app, _ := lookup(src, "APPLICATION")
	return Tenant{Infisical: t, Application: app}, nil
}

// LinkApplication returns a link's APPLICATION, or "" when it sets none; it never fails, so a link's claim is known
// even when its other settings are refused.
func LinkApplication(src Source) string {
	app, _ := lookup(src, "APPLICATION")
	return app
}

const keepIdentityTodo = "a link that keeps the provider's identity cannot change it, because that would send the provider's credentials there; " +
	"set the link's own INFISICAL_CLIENT_ID and INFISICAL_CLIENT_SECRET (or another INFISICAL_AUTH_METHOD's settings) too"

// refusedLinkSettings names every setting a link sets outside the allow-list, saying why it is refused.
func refusedLinkSettings(src Source) []Problem {
	names := make([]string, 0, len(table))
	if l, ok := src.(lister); ok {
		names = l.Names()
	} else {
		for _, e := range table {
			if _, ok := lookup(src, e.Name); ok {
				names = append(names, e.Name)
			}
		}
	}
	allowed := LinkSettings()
	var problems []Problem
	for _, name := range names {
		if _, set := lookup(src, name); !set || slices.Contains(allowed, name) {
			continue
		}
		problems = append(problems, Problem{name, whyNotOnALink(name)})
	}
	return problems
}

func whyNotOnALink(name string) string {
	switch {
	case slices.Contains(linkFiles, name):
		return "a link cannot name a file for the provider to read; only the provider's own config can (a link's identity " +
			"brings its tokens as values: INFISICAL_OIDC_TOKEN, INFISICAL_JWT, INFISICAL_ACCESS_TOKEN, INFISICAL_CA_CERT)"
	case name == "INFISICAL_AZURE_RESOURCE":
		return "the audience of the provider's own Azure token is the operator's choice; set it in the provider's own config"
	case byName[name] != nil:
		return "is a provider setting, not a link setting; set it in the provider's own config"
	default:
		return "is not a setting a link may set; a link may set " + strings.Join(LinkSettings(), ", ")
	}
}

func setsAny(src Source, names []string) bool {
	return slices.ContainsFunc(names, func(n string) bool { _, ok := lookup(src, n); return ok })
}

// withoutIdentity keeps where to read, and the provider's CA, and drops every login detail of the provider's.
func withoutIdentity(t Infisical) Infisical {
	return Infisical{BaseURL: t.BaseURL, ProjectID: t.ProjectID, Environment: t.Environment, SecretPath: t.SecretPath,
		Credentials: infisical.Credentials{Method: infisical.MethodUniversalAuth}, CACert: t.CACert, CACertPath: t.CACertPath}
}

// applyLinkValues parses the allowed values a link sets; TENANT_INFISICAL_CLIENT_SECRET is INFISICAL_CLIENT_SECRET.
func applyLinkValues(src Source, t Infisical) (Infisical, []Problem) {
	s := &Settings{Infisical: t}
	var problems []Problem
	for _, name := range slices.Concat(linkPlace, linkIdentity, linkServer) {
		v, ok := lookup(src, name)
		if !ok || name == "APPLICATION" {
			continue
		}
		target := name
		if name == "TENANT_INFISICAL_CLIENT_SECRET" {
			target = "INFISICAL_CLIENT_SECRET"
		}
		if err := byName[target].set(s, v); err != nil {
			problems = append(problems, Problem{name, err.Error()})
		}
	}
	a, okA := lookup(src, "INFISICAL_CLIENT_SECRET")
	b, okB := lookup(src, "TENANT_INFISICAL_CLIENT_SECRET")
	if okA && okB && a != b {
		problems = append(problems, Problem{"TENANT_INFISICAL_CLIENT_SECRET",
			"set together with a different INFISICAL_CLIENT_SECRET; set only one of them (both mean the link's client secret)"})
	}
	return s.Infisical, problems
}

// checkOwnIdentity checks a link's own identity: an ambient method only where the operator allows it, and then
// only towards the provider's own Infisical.
func checkOwnIdentity(t Infisical, provider *Settings) []Problem {
	if !t.Method.Ambient() {
		return nil
	}
	if !provider.TenantAmbientAuth {
		return []Problem{{"INFISICAL_AUTH_METHOD", fmt.Sprintf("%s logs in with the provider's own platform identity, which a link may "+
			"use only when the provider's TENANT_AMBIENT_AUTH is true; give the link an identity of its own "+
			"(universal-auth, oidc with INFISICAL_OIDC_TOKEN, jwt or token)", t.Method)}}
	}
	var problems []Problem
	if t.Method == infisical.MethodGCPIAM && provider.Infisical.GCPKeyFile == "" {
		problems = append(problems, Problem{"INFISICAL_AUTH_METHOD",
			"gcp-iam on a link signs with the provider's own INFISICAL_GCP_KEY_FILE, and the provider has none"})
	}
	const todo = "a link's ambient login (the provider's platform identity) goes only to the provider's own Infisical"
	return append(problems, checkSameServer(t, provider.Infisical, todo)...)
}

// checkKeptIdentityPlace refuses a link that keeps the provider's identity and moves it to another project,
// environment or folder than the provider's own, unless POLICY_OVERRIDES allows that override. Such a link's place
// becomes its application's defaults, which policy overrides are checked against: without this a manifest could
// reach, with the provider's identity, the project or environment POLICY_OVERRIDES keeps its policies out of. A
// link with its own identity is bounded by that identity's Infisical permissions instead.
func checkKeptIdentityPlace(t Infisical, provider *Settings) []Problem {
	allowed := provider.AllowedOverrides()
	var problems []Problem
	for _, p := range []struct{ setting, property, value, def string }{
		{"INFISICAL_PROJECT_ID", "project_id", t.ProjectID, provider.Infisical.ProjectID},
		{"INFISICAL_ENVIRONMENT", "environment", t.Environment, provider.Infisical.Environment},
		{"INFISICAL_SECRET_PATH", "secret_path", t.SecretPath, provider.Infisical.SecretPath},
	} {
		if p.value == p.def || slices.Contains(allowed, p.property) {
			continue
		}
		problems = append(problems, Problem{p.setting, fmt.Sprintf("%q differs from the provider's %q, and a link that keeps the "+
			"provider's identity may move it only where the provider's POLICY_OVERRIDES allows %s overrides (with "+
			"ACCESS_RULES set, none are allowed unless listed there); unset it, give the link an identity of its own, "+
			"or ask the operator to allow it", p.value, p.def, p.property)})
	}
	return problems
}

// checkSameServer refuses a base URL or CA other than the provider's.
func checkSameServer(t, provider Infisical, todo string) []Problem {
	var problems []Problem
	if t.BaseURL != provider.BaseURL {
		problems = append(problems, Problem{"INFISICAL_BASE_URL", todo})
	}
	if t.CACert != provider.CACert || t.CACertPath != provider.CACertPath {
		problems = append(problems, Problem{"INFISICAL_CA_CERT", todo})
	}
	return problems
}

// dedupe keeps the first problem for each setting, in order: one message per setting is enough to fix it.
func dedupe(problems []Problem) []Problem {
	seen := map[string]bool{}
	out := problems[:0]
	for _, p := range problems {
		if !seen[p.Setting] {
			seen[p.Setting] = true
			out = append(out, p)
		}
	}
	return out
}
