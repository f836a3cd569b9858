package settings

import (
	"fmt"
	"strings"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
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

// checkInfisical checks what no single setting can: what the auth method needs (as the Infisical client defines
// it), and settings given two ways. link says the settings come from a link that brings its own identity.
func checkInfisical(inf Infisical, link bool) []Problem {
	var problems []Problem
	add := func(name, msg string) { problems = append(problems, Problem{name, msg}) }
	var missing []infisical.Field
	if inf.Method.Supported() { // else INFISICAL_AUTH_METHOD's own problem says so, and nothing else applies
		missing = inf.Credentials.Missing()
	}
	for _, f := range missing {
		if link && f == infisical.FieldGCPKeyFile {
			continue // a link signs with the provider's key file or not at all (checkOwnIdentity)
		}
		name, todo := firstSettingFor(f), missingTodo(f, link)
		if link {
			add(name, fmt.Sprintf("required: this link sets its own identity (INFISICAL_AUTH_METHOD=%s), so it must also set %s; %s", inf.Method, name, todo))
		} else {
			add(name, fmt.Sprintf("required with INFISICAL_AUTH_METHOD=%s; %s", inf.Method, todo))
		}
	}
	if inf.Method == infisical.MethodOIDC && inf.OIDCToken != "" && inf.OIDCTokenPath != "" {
		add("INFISICAL_OIDC_TOKEN_PATH", "set together with INFISICAL_OIDC_TOKEN; set only one of them")
	}
	if inf.CACert != "" && inf.CACertPath != "" {
		add("INFISICAL_CA_CERT_PATH", "set together with INFISICAL_CA_CERT; set only one of them")
	}
	return problems
}

// firstSettingFor is the setting a problem names for a missing field: where a field has two settings (the value or a
// file holding it), the one for the value.
func firstSettingFor(f infisical.Field) string {
	for i := range table {
		if table[i].field == f {
			return table[i].Name
		}
	}
	return f.String()
}

// missingTodo says what to set a missing credential's setting to; a link cannot name files, so it is told only of
// the value.
func missingTodo(f infisical.Field, link bool) string {
	const otherMethod = ", or set INFISICAL_AUTH_METHOD to another login method"
	switch f {
	case infisical.FieldClientID:
		return "set it to the Universal Auth client ID of the machine identity" + otherMethod
	case infisical.FieldClientSecret:
		return "set it to the Universal Auth client secret of the machine identity" + otherMethod
	case infisical.FieldIdentityID:
		return "set it to the ID of the machine identity (Access Control > Identities)"
	case infisical.FieldGCPKeyFile:
		return "set it to the path of the service account's JSON key file"
	case infisical.FieldOIDCToken:
		if link {
			return "set it to the OIDC token"
		}
		return "set it to the OIDC token, or set INFISICAL_OIDC_TOKEN_PATH to a file holding it"
	case infisical.FieldJWT:
		return "set it to the signed JWT to log in with"
	case infisical.FieldAccessToken:
		return "set it to an Infisical access token"
	}
	return "set it"
}
