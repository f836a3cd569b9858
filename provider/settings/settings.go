// Package settings names, documents, parses and validates every setting of the provider, in one table (see
// Specs). A setting has one name everywhere: an environment variable for `serve`, a HostData config key or secret
// for a managed provider, and a link's target config key or secret for a tenant (see LoadTenant).
//
// Values are trimmed; an empty value counts as unset, so the default applies. Load reports every problem at once,
// each naming the setting, what is wrong and what to do, and never quotes a secret setting's value.
package settings

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
)

// Settings is the provider's validated configuration.
type Settings struct {
	Infisical Infisical

	NATSURL, NATSCreds, NATSTLSCA          string
	SubjectPrefix, BackendName, APIVersion string
	ServerXKeySeed                         string // "" when unset (the caller generates a key and warns)

	CacheTTL, StaleIfError, UpstreamTimeout time.Duration
	NotFoundTTL                             time.Duration // how long "not found" is remembered (at most CacheTTL)
	CachePrefetch                           bool          // a miss lists the whole folder
	JWTCache                                bool          // remember verified entity and host JWTs
	SharedCache                             bool          // share the cache across replicas in JetStream
	SharedCacheBucket                       string        // its KV bucket

	TrustedIssuers []string // nil = nobody; ["*"] = anyone
	AccessRules    string   // raw JSON, validated by access.New
	// PolicyOverrides is POLICY_OVERRIDES as given ("" = unset); AllowedOverrides says what it allows.
	PolicyOverrides string

	TenantAmbientAuth bool          // tenant links may log in with the provider's platform identity
	TenantClaims      []TenantClaim // which link sources may serve an application other than their own

	LogLevel  slog.Level
	LogFormat string // "text" | "json"

	HealthAddr string // serve's health listener (host:port); "" = none
}

// Infisical is where and how to read secrets: the instance, the identity that logs in, and what to read by default.
// It is comparable, so callers can tell whether a reconfiguration changed it.
type Infisical struct {
	BaseURL     string // no trailing slash
	ProjectID   string
	Environment string // slug
	SecretPath  string // clean, absolute folder path

	// Credentials are the identity that logs in, in the Infisical client's own terms: the INFISICAL_AUTH_METHOD
	// settings fill them (see the table), and the client says what each method needs (Credentials.Missing).
	infisical.Credentials

	CACert     string // PEM text
	CACertPath string // PEM file
}

// Tenant is what a link configures: Infisical settings (over the provider's) plus the application they serve.
type Tenant struct {
	Infisical
	Application string // APPLICATION: the wadm application name, or "" to let the caller derive it from the link
}

// AllowedOverrides returns the policy properties (of OverrideProperties) a request may set to other than the
// default: POLICY_OVERRIDES, or when it is unset and ACCESS_RULES restricts reads, only secret_path. Rules that do
// not name a project or environment would let a requester choose any the identity can read; secret_path only moves
// the base of relative keys, and rules see the resolved key, which an absolute key could name anyway.
func (s *Settings) AllowedOverrides() []string {
	switch {
	case s.PolicyOverrides == "none":
		return nil
	case s.PolicyOverrides != "":
		return strings.Split(s.PolicyOverrides, ",")
	case strings.TrimSpace(s.AccessRules) != "":
		return []string{"secret_path"}
	default:
		return slices.Clone(OverrideProperties)
	}
}

// TenantClaim lets the tenant link from one source serve an application other than the source's own.
type TenantClaim struct {
	Source      string // link source id, exactly as the host reports it
	Application string // application name as APPLICATION writes it
}

// Redacted returns value fit for a log line: "***" for a secret setting's non-empty value, else value itself.
func Redacted(name, value string) string {
	if value == "" {
		return ""
	}
	if e, ok := byName[strings.ToUpper(name)]; ok && e.Secret {
		return "***"
	}
	return value
}

// LogValue lists the settings with secrets redacted, so logging a Settings (or a *Settings) never leaks one.
func (s Settings) LogValue() slog.Value {
	return slog.GroupValue(attrs(&s, func(*entry) bool { return true })...)
}

// String is LogValue for fmt: never prints a secret.
func (s Settings) String() string { return s.LogValue().String() }

// GoString is String for %#v, which would otherwise print every field, secrets included.
func (s Settings) GoString() string { return "settings.Settings" + s.String() }

// MarshalJSON writes the settings by name with secrets redacted.
func (s Settings) MarshalJSON() ([]byte, error) { return marshalAttrs(s.LogValue()) }

// LogValue lists the Infisical settings with secrets redacted.
func (i Infisical) LogValue() slog.Value {
	s := &Settings{Infisical: i}
	return slog.GroupValue(attrs(s, func(e *entry) bool { return e.tenant })...)
}

// String is LogValue for fmt: never prints a secret.
func (i Infisical) String() string { return i.LogValue().String() }

// GoString is String for %#v, which would otherwise print every field, secrets included.
func (i Infisical) GoString() string { return "settings.Infisical" + i.String() }

// MarshalJSON writes the Infisical settings by name with secrets redacted (not the embedded Credentials' form).
func (i Infisical) MarshalJSON() ([]byte, error) { return marshalAttrs(i.LogValue()) }

// LogValue is the Infisical settings with secrets redacted, and the application.
func (t Tenant) LogValue() slog.Value {
	return slog.GroupValue(append(t.Infisical.LogValue().Group(), slog.String("APPLICATION", t.Application))...)
}

// String is LogValue for fmt: never prints a secret.
func (t Tenant) String() string { return t.LogValue().String() }

// GoString is String for %#v.
func (t Tenant) GoString() string { return "settings.Tenant" + t.String() }

// MarshalJSON writes the tenant's settings by name with secrets redacted.
func (t Tenant) MarshalJSON() ([]byte, error) { return marshalAttrs(t.LogValue()) }

func marshalAttrs(v slog.Value) ([]byte, error) {
	m := map[string]string{}
	for _, a := range v.Group() {
		m[a.Key] = a.Value.String()
	}
	return json.Marshal(m)
}

func attrs(s *Settings, include func(*entry) bool) []slog.Attr {
	var out []slog.Attr
	for i := range table {
		e := &table[i]
		if e.get == nil || !include(e) {
			continue
		}
		out = append(out, slog.String(e.Name, Redacted(e.Name, e.get(s))))
	}
	return out
}

// Spec documents one setting.
type Spec struct {
	Name    string
	Default string // "" = no default
	Help    string // one line
	Secret  bool   // never logged; should come from a secret store
	// Required is "" for optional settings, "yes", or the condition that makes the setting required.
	Required string
}

// Specs returns every setting in a stable order (the order of --help and of docs/configuration.md).
func Specs() []Spec {
	out := make([]Spec, len(table))
	for i, e := range table {
		out[i] = e.Spec
	}
	return out
}

// Problem is one bad or missing setting.
type Problem struct {
	Setting string // the setting's name, e.g. INFISICAL_PROJECT_ID
	Message string // what is wrong; what to do
}

func (p Problem) String() string { return p.Setting + ": " + p.Message }

// Error lists every problem Load or LoadTenant found.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d settings need fixing:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}
