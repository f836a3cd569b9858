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
		if !link { // a link signs with the provider's key file or not at all (checkOwnIdentity)
			need("INFISICAL_GCP_KEY_FILE", inf.GCPKeyFile, "set it to the path of the service account's JSON key file")
		}
	case OIDC:
		need("INFISICAL_IDENTITY_ID", inf.IdentityID, identityTodo)
		switch {
		case inf.OIDCToken == "" && inf.OIDCTokenPath == "" && link:
			need("INFISICAL_OIDC_TOKEN", "", "set it to the OIDC token")
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
