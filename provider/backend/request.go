package backend

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// Policy property names a manifest's secret policy may set (wadm passes every property but `backend` through).
const (
	PropProjectID        = "project_id"
	PropEnvironment      = "environment"
	PropSecretPath       = "secret_path"
	PropEncoding         = "encoding"
	PropExpandReferences = "expand_references"
	PropIncludeImports   = "include_imports"
)

// options is what one request's policy properties say, already validated.
type options struct {
	projectID        string
	environment      string
	secretPath       string
	base64           bool
	expandReferences bool
	includeImports   bool
	ignored          []string
}

// parseOptions validates the policy properties; a bad value is a PolicyError naming the property, and unknown
// properties are reported back so the caller can log them at DEBUG (other backends' properties are legitimate).
func parseOptions(props map[string]string) (options, error) {
	var o options
	for name, value := range props {
		switch name {
		case PropProjectID:
			if strings.TrimSpace(value) == "" {
				return o, policyError(name, "must not be empty")
			}
			o.projectID = strings.TrimSpace(value)
		case PropEnvironment:
			if !validSlug(value) {
				return o, policyError(name, fmt.Sprintf("%q is not an environment slug (lowercase letters, digits and '-')", value))
			}
			o.environment = value
		case PropSecretPath:
			if !strings.HasPrefix(value, "/") {
				return o, policyError(name, fmt.Sprintf("%q must be an absolute folder path starting with '/'", value))
			}
			o.secretPath = path.Clean(value)
		case PropEncoding:
			switch strings.ToLower(value) {
			case "", "utf8", "utf-8", "string", "none":
			case "base64":
				o.base64 = true
			default:
				return o, policyError(name, fmt.Sprintf("%q is not supported (use \"base64\" or leave it unset)", value))
			}
		case PropExpandReferences, PropIncludeImports:
			b, err := strconv.ParseBool(value)
			if err != nil || (value != "true" && value != "false") {
				return o, policyError(name, fmt.Sprintf("%q must be \"true\" or \"false\"", value))
			}
			if name == PropExpandReferences {
				o.expandReferences = b
			} else {
				o.includeImports = b
			}
		default:
			o.ignored = append(o.ignored, name)
		}
	}
	return o, nil
}

// checkOverrides refuses a policy property that moves the read away from the identity's default project,
// environment or folder unless POLICY_OVERRIDES allows it. A value equal to the default moves nothing and passes.
func checkOverrides(o options, inf settings.Infisical, allowed []string) error {
	for _, p := range []struct{ name, value, def string }{
		{PropProjectID, o.projectID, inf.ProjectID},
		{PropEnvironment, o.environment, inf.Environment},
		{PropSecretPath, o.secretPath, inf.SecretPath},
	} {
		if overrideAllowed(allowed, p.name, p.value, p.def) {
			continue
		}
		return policyError(p.name, fmt.Sprintf("%q differs from this backend's %q, and the provider's POLICY_OVERRIDES does not "+
			"allow %s overrides (with ACCESS_RULES set, none are allowed unless listed there); remove the property or ask "+
			"the operator to allow it", p.value, p.def, p.name))
	}
	return nil
}

// overrideAllowed reports whether a read may be made with value for the policy property prop where def is what the
// request would read without it: no value, the same value, or a property POLICY_OVERRIDES allows.
func overrideAllowed(allowed []string, prop, value, def string) bool {
	return value == "" || value == def || slices.Contains(allowed, prop)
}

func policyError(prop, msg string) error {
	return secrets.NewError(secrets.KindPolicyError, fmt.Sprintf("policy property %q: %s", prop, msg))
}

func validSlug(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// resolveKey turns a request key into (folder, name). A key is `NAME`, `sub/folder/NAME` (under base) or
// `/abs/folder/NAME`. The folder is cleaned, so `..` cannot climb above what the access rules see: they are checked
// against the cleaned path, never the raw key.
func resolveKey(base, key string) (folder, name string, err error) {
	if key == "" || strings.TrimSpace(key) != key {
		return "", "", fmt.Errorf("key %q is empty or has surrounding spaces", key)
	}
	if strings.HasSuffix(key, "/") {
		return "", "", fmt.Errorf("key %q names a folder, not a secret", key)
	}
	if strings.ContainsRune(key, ':') || strings.ContainsFunc(key, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", "", fmt.Errorf("key %q contains ':' or a control character, which Infisical does not allow in names", key)
	}
	full := key
	if !strings.HasPrefix(key, "/") {
		full = path.Join(base, key)
	}
	full = path.Clean("/" + full)
	folder, name = path.Split(full)
	if name == "" || name == "." || name == ".." {
		return "", "", fmt.Errorf("key %q does not name a secret", key)
	}
	folder = path.Clean(folder)
	return folder, name, nil
}

// parseVersion accepts a positive decimal integer; nil or "" means latest (0).
func parseVersion(v *string) (int, error) {
	if v == nil || *v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(*v)
	if err != nil || n < 1 || strings.HasPrefix(*v, "+") {
		return 0, fmt.Errorf("version %q is not a positive integer", *v)
	}
	return n, nil
}

// ApplicationKey normalizes an application or link source name the way wadm builds IDs: lowercase, every
// non-alphanumeric character replaced by '_'.
func ApplicationKey(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
