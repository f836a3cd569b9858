package settings

import (
	"fmt"
	"strings"
)

// lookup returns a setting's trimmed value; an empty value counts as unset.
func lookup(src Source, name string) (string, bool) {
	v, ok := src.Lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// Load reads and validates every provider setting. On failure it returns an *Error listing every problem.
func Load(src Source) (*Settings, error) {
	s := &Settings{}
	var problems []Problem
	for i := range table {
		e := &table[i]
		if e.linkOnly || e.set == nil {
			continue
		}
		if e.yieldsTo != "" {
			if _, ok := lookup(src, e.yieldsTo); ok {
				continue
			}
		}
		v, ok := lookup(src, e.Name)
		if !ok {
			if e.todo != "" {
				problems = append(problems, Problem{e.Name, "required; " + e.todo})
				continue
			}
			if e.Default == "" {
				continue
			}
			v = e.Default
		}
		if err := e.set(s, v); err != nil {
			problems = append(problems, Problem{e.Name, err.Error()})
		}
	}
	problems = append(problems, checkInfisical(s.Infisical, false)...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return s, nil
}

// identitySettings choose and prove the identity that logs in to Infisical. A link either sets none of them and
// uses the provider's identity, or brings its own: the provider's are then not mixed in, so a link can never pair
// its client ID with the provider's client secret.
var identitySettings = []string{
	"INFISICAL_AUTH_METHOD", "INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET", "INFISICAL_IDENTITY_ID",
	"INFISICAL_GCP_KEY_FILE", "INFISICAL_OIDC_TOKEN", "INFISICAL_OIDC_TOKEN_PATH", "INFISICAL_JWT",
	"INFISICAL_ACCESS_TOKEN",
}

// LoadTenant reads a link's settings (its target config and secrets) over the provider's Infisical settings,
// field by field, plus APPLICATION. Only INFISICAL_* settings and APPLICATION are read; other names are ignored.
//
// Rules that keep one tenant from borrowing the provider's credentials in unsafe ways:
//   - a link that sets any identity setting (auth method, client ID or secret, identity ID, tokens, key files)
//     brings its whole identity, and must set everything its auth method needs;
//   - a link that keeps the provider's identity may not point it at another Infisical (INFISICAL_BASE_URL) or change
//     whom it trusts for TLS (INFISICAL_CA_CERT, INFISICAL_CA_CERT_PATH), since that would send the provider's
//     credentials elsewhere.
func LoadTenant(src Source, defaults Infisical) (Tenant, error) {
	t := defaults
	own := false
	for _, name := range identitySettings {
		if _, ok := lookup(src, name); ok {
			own = true
		}
	}
	if own {
		t.AuthMethod, t.ClientID, t.ClientSecret, t.IdentityID = UniversalAuth, "", "", ""
		t.GCPKeyFile, t.OIDCToken, t.OIDCTokenPath, t.JWT, t.AccessToken = "", "", "", "", ""
	}
	_, ca := lookup(src, "INFISICAL_CA_CERT")
	_, caPath := lookup(src, "INFISICAL_CA_CERT_PATH")
	if ca || caPath {
		t.CACert, t.CACertPath = "", "" // the link's CA replaces the provider's, whichever form either uses
	}

	s := &Settings{Infisical: t}
	var problems []Problem
	for i := range table {
		e := &table[i]
		if !e.tenant {
			continue
		}
		v, ok := lookup(src, e.Name)
		if !ok {
			continue
		}
		if err := e.set(s, v); err != nil {
			problems = append(problems, Problem{e.Name, err.Error()})
		}
	}
	t = s.Infisical

	if !own {
		const bring = "a link that keeps the provider's identity cannot change it, because that would send the provider's credentials there; " +
			"set the link's own INFISICAL_CLIENT_ID and INFISICAL_CLIENT_SECRET (or another INFISICAL_AUTH_METHOD's settings) too"
		if t.BaseURL != defaults.BaseURL {
			problems = append(problems, Problem{"INFISICAL_BASE_URL", bring})
		}
		if t.CACert != defaults.CACert || t.CACertPath != defaults.CACertPath {
			name := "INFISICAL_CA_CERT"
			if caPath {
				name = "INFISICAL_CA_CERT_PATH"
			}
			problems = append(problems, Problem{name, bring})
		}
	}
	if t.ProjectID == "" {
		problems = append(problems, Problem{"INFISICAL_PROJECT_ID", "required; set it on the link or on the provider to the ID of the Infisical project to read (Project Settings)"})
	}
	problems = append(problems, checkInfisical(t, own)...)
	if len(problems) > 0 {
		return Tenant{}, &Error{Problems: problems}
	}
	app, _ := lookup(src, "APPLICATION")
	return Tenant{Infisical: t, Application: app}, nil
}

// checkInfisical checks what no single setting can: what the auth method needs, and settings given two ways.
// link says the settings come from a link that brings its own identity.
func checkInfisical(inf Infisical, link bool) []Problem {
	var problems []Problem
	add := func(name, msg string) { problems = append(problems, Problem{name, msg}) }
	need := func(name, value, todo string) {
		if value != "" {
			return
		}
		if link {
			add(name, fmt.Sprintf("required: this link sets its own identity (INFISICAL_AUTH_METHOD=%s), so it must also set %s; %s", inf.AuthMethod, name, todo))
			return
		}
		add(name, fmt.Sprintf("required with INFISICAL_AUTH_METHOD=%s; %s", inf.AuthMethod, todo))
	}
	const identityTodo = "set it to the ID of the machine identity (Access Control > Identities)"
	switch inf.AuthMethod {
	case UniversalAuth:
		const other = ", or set INFISICAL_AUTH_METHOD to another login method"
		need("INFISICAL_CLIENT_ID", inf.ClientID, "set it to the Universal Auth client ID of the machine identity"+other)
		need("INFISICAL_CLIENT_SECRET", inf.ClientSecret, "set it to the Universal Auth client secret of the machine identity"+other)
	case Token:
		need("INFISICAL_ACCESS_TOKEN", inf.AccessToken, "set it to an Infisical access token")
	case Kubernetes, AWSIAM, GCPIDToken, Azure:
		need("INFISICAL_IDENTITY_ID", inf.IdentityID, identityTodo)
	case GCPIAM:
		need("INFISICAL_IDENTITY_ID", inf.IdentityID, identityTodo)
		need("INFISICAL_GCP_KEY_FILE", inf.GCPKeyFile, "set it to the path of the service account's JSON key file")
	case OIDC:
		need("INFISICAL_IDENTITY_ID", inf.IdentityID, identityTodo)
		switch {
		case inf.OIDCToken == "" && inf.OIDCTokenPath == "":
			need("INFISICAL_OIDC_TOKEN", "", "set it to the OIDC token, or set INFISICAL_OIDC_TOKEN_PATH to a file holding it")
		case inf.OIDCToken != "" && inf.OIDCTokenPath != "":
			add("INFISICAL_OIDC_TOKEN_PATH", "set together with INFISICAL_OIDC_TOKEN; set only one of them")
		}
	case JWTAuth:
		need("INFISICAL_IDENTITY_ID", inf.IdentityID, identityTodo)
		need("INFISICAL_JWT", inf.JWT, "set it to the signed JWT to log in with")
	}
	if inf.CACert != "" && inf.CACertPath != "" {
		add("INFISICAL_CA_CERT_PATH", "set together with INFISICAL_CA_CERT; set only one of them")
	}
	return problems
}
