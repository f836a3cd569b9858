package settings

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
)

// entry is one row of the table: the documented Spec plus how to parse the value into Settings and show it back.
type entry struct {
	Spec
	set func(s *Settings, v string) error // v is trimmed and non-empty; an error says what is wrong; what to do
	get func(s *Settings) string          // nil = not shown (derived settings)
	// todo completes "required; ..." when a required setting is missing.
	todo string
	// yieldsTo names a setting that, when set, makes this one ignored (RUST_LOG yields to LOG_LEVEL).
	yieldsTo string
	// linkOnly settings are read only from a link (LoadTenant), never by Load.
	linkOnly bool
	// tenant settings may be set on a link to override the provider's (all INFISICAL_* settings).
	tenant bool
	// field is the part of the Infisical client's configuration the setting sets, for SettingFor.
	field infisical.Field
}

// maxUpstreamTimeout leaves a reply time to reach the host before its 10 s request timeout.
const maxUpstreamTimeout = 8 * time.Second

var (
	envSlug      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	subjectToken = `[A-Za-z0-9_-]+`
	oneToken     = regexp.MustCompile(`^` + subjectToken + `$`)
	tokens       = regexp.MustCompile(`^` + subjectToken + `(\.` + subjectToken + `)*$`)
)

// table holds every setting in the order of Specs.
var table = []entry{
	sets(infisical.FieldClientID, text(Spec{Name: "INFISICAL_CLIENT_ID", Required: "with universal-auth",
		Help: "Universal Auth client ID of the machine identity"},
		func(s *Settings) *string { return &s.Infisical.ClientID }, nil)),
	sets(infisical.FieldClientSecret, text(Spec{Name: "INFISICAL_CLIENT_SECRET", Secret: true, Required: "with universal-auth",
		Help: "Universal Auth client secret of the machine identity"},
		func(s *Settings) *string { return &s.Infisical.ClientSecret }, nil)),
	required(text(Spec{Name: "INFISICAL_PROJECT_ID", Required: "yes",
		Help: "ID of the Infisical project to read (Project Settings)"},
		func(s *Settings) *string { return &s.Infisical.ProjectID }, nil),
		"set it to the ID of the Infisical project to read (Project Settings)"),
	sets(infisical.FieldBaseURL, text(Spec{Name: "INFISICAL_BASE_URL", Default: infisical.DefaultBaseURL,
		Help: "Infisical instance URL (Infisical Cloud US, EU, or self-hosted)"},
		func(s *Settings) *string { return &s.Infisical.BaseURL }, checkBaseURL)),
	text(Spec{Name: "INFISICAL_ENVIRONMENT", Default: "prod",
		Help: "environment slug to read from (dev, staging, prod, ...)"},
		func(s *Settings) *string { return &s.Infisical.Environment }, checkEnvironment),
	text(Spec{Name: "INFISICAL_SECRET_PATH", Default: "/",
		Help: "folder that secret keys are relative to"},
		func(s *Settings) *string { return &s.Infisical.SecretPath }, checkSecretPath),
	sets(infisical.FieldMethod, text(Spec{Name: "INFISICAL_AUTH_METHOD", Default: string(infisical.MethodUniversalAuth),
		Help: "how to log in: " + infisical.MethodList()},
		func(s *Settings) *string { return (*string)(&s.Infisical.Method) }, checkAuthMethod)),
	sets(infisical.FieldIdentityID, text(Spec{Name: "INFISICAL_IDENTITY_ID", Required: "with every auth method but universal-auth and token",
		Help: "machine identity ID (Access Control > Identities)"},
		func(s *Settings) *string { return &s.Infisical.IdentityID }, nil)),
	text(Spec{Name: "INFISICAL_KUBERNETES_TOKEN_PATH", Default: infisical.DefaultKubernetesTokenPath,
		Help: "service account token file for kubernetes auth"},
		func(s *Settings) *string { return &s.Infisical.KubernetesTokenPath }, nil),
	text(Spec{Name: "INFISICAL_AZURE_RESOURCE",
		Help: "resource (audience) for azure auth; unset = the SDK's default"},
		func(s *Settings) *string { return &s.Infisical.AzureResource }, nil),
	sets(infisical.FieldGCPKeyFile, text(Spec{Name: "INFISICAL_GCP_KEY_FILE", Required: "with gcp-iam",
		Help: "service account key file for gcp-iam auth"},
		func(s *Settings) *string { return &s.Infisical.GCPKeyFile }, nil)),
	sets(infisical.FieldOIDCToken, text(Spec{Name: "INFISICAL_OIDC_TOKEN", Secret: true, Required: "with oidc (or INFISICAL_OIDC_TOKEN_PATH)",
		Help: "OIDC token for oidc auth"},
		func(s *Settings) *string { return &s.Infisical.OIDCToken }, nil)),
	sets(infisical.FieldOIDCToken, text(Spec{Name: "INFISICAL_OIDC_TOKEN_PATH", Required: "with oidc (or INFISICAL_OIDC_TOKEN)",
		Help: "file holding the OIDC token for oidc auth, read at every login"},
		func(s *Settings) *string { return &s.Infisical.OIDCTokenPath }, nil)),
	sets(infisical.FieldJWT, text(Spec{Name: "INFISICAL_JWT", Secret: true, Required: "with jwt",
		Help: "signed JWT for jwt auth"},
		func(s *Settings) *string { return &s.Infisical.JWT }, nil)),
	sets(infisical.FieldAccessToken, text(Spec{Name: "INFISICAL_ACCESS_TOKEN", Secret: true, Required: "with token",
		Help: "ready-made Infisical access token for token auth"},
		func(s *Settings) *string { return &s.Infisical.AccessToken }, nil)),
	sets(infisical.FieldCACert, text(Spec{Name: "INFISICAL_CA_CERT",
		Help: "PEM CA certificate(s) to trust for Infisical (private CA)"},
		func(s *Settings) *string { return &s.Infisical.CACert }, checkPEM)),
	sets(infisical.FieldCACert, text(Spec{Name: "INFISICAL_CA_CERT_PATH",
		Help: "file of PEM CA certificate(s) to trust for Infisical"},
		func(s *Settings) *string { return &s.Infisical.CACertPath }, nil)),
	text(Spec{Name: "INFISICAL_ORGANIZATION_SLUG",
		Help: "organization slug, to log in to a sub-organization"},
		func(s *Settings) *string { return &s.Infisical.OrganizationSlug }, nil),
	{Spec: Spec{Name: "APPLICATION",
		Help: "link config only: the exact name of the application this link serves; unset = the link source's id up to the first '-' (set it when the manifest name has '-', capitals or other characters wadm normalizes); another application only where TENANT_CLAIMS allows"},
		linkOnly: true},
	{Spec: Spec{Name: "TENANT_INFISICAL_CLIENT_SECRET", Secret: true,
		Help: "link secret only: INFISICAL_CLIENT_SECRET under a name that does not collide with the provider's own secret in one manifest"},
		linkOnly: true},
	boolean(Spec{Name: "TENANT_AMBIENT_AUTH", Default: "false",
		Help: "true lets tenant links log in with the provider's own platform identity (kubernetes, aws-iam, gcp-id-token, azure, gcp-iam), only to the provider's INFISICAL_BASE_URL"},
		func(s *Settings) *bool { return &s.TenantAmbientAuth }),
	{Spec: Spec{Name: "TENANT_CLAIMS",
		Help: "comma-separated SOURCE=APPLICATION pairs: the tenant link from link source (component id) SOURCE may set APPLICATION to exactly APPLICATION to serve it; unset = none may"},
		set: setTenantClaims,
		get: func(s *Settings) string { return tenantClaimsText(s.TenantClaims) }},
	text(Spec{Name: "NATS_URL", Default: "nats://localhost:4222",
		Help: "NATS server URL(s), comma-separated"},
		func(s *Settings) *string { return &s.NATSURL }, checkNATSURL),
	text(Spec{Name: "NATS_CREDS",
		Help: "NATS credentials file (.creds)"},
		func(s *Settings) *string { return &s.NATSCreds }, nil),
	text(Spec{Name: "NATS_TLS_CA",
		Help: "CA certificate file for NATS TLS"},
		func(s *Settings) *string { return &s.NATSTLSCA }, nil),
	text(Spec{Name: "NATS_SUBJECT_PREFIX", Default: "wasmcloud.secrets",
		Help: "NATS subject prefix of the secrets API (the hosts' secrets topic prefix)"},
		func(s *Settings) *string { return &s.SubjectPrefix }, checkSubjectPrefix),
	text(Spec{Name: "BACKEND_NAME", Default: "infisical",
		Help: "backend name that wadm secret policies use"},
		func(s *Settings) *string { return &s.BackendName }, checkToken),
	text(Spec{Name: "API_VERSION", Default: "v1alpha1",
		Help: "secrets API version in the NATS subjects"},
		func(s *Settings) *string { return &s.APIVersion }, checkToken),
	text(Spec{Name: "SERVER_XKEY_SEED", Secret: true,
		Help: "curve seed (SX...) of the server xkey; keeps one key across restarts and replicas"},
		func(s *Settings) *string { return &s.ServerXKeySeed }, checkXKeySeed),
	duration(Spec{Name: "CACHE_TTL", Default: "30s",
		Help: "how long a secret read from Infisical is served from memory; 0 disables caching"},
		func(s *Settings) *time.Duration { return &s.CacheTTL }, notNegative("0 disables caching")),
	duration(Spec{Name: "STALE_IF_ERROR", Default: "10m",
		Help: "how long past CACHE_TTL a cached secret is still served while Infisical fails; 0 disables"},
		func(s *Settings) *time.Duration { return &s.StaleIfError }, notNegative("0 never serves stale values")),
	duration(Spec{Name: "CACHE_NOT_FOUND_TTL", Default: "5s",
		Help: "how long \"not found\" is remembered (at most CACHE_TTL), so absent keys cannot spend Infisical's rate limit; 0 asks every time"},
		func(s *Settings) *time.Duration { return &s.NotFoundTTL }, notNegative("0 never remembers not found")),
	boolean(Spec{Name: "CACHE_PREFETCH", Default: "true",
		Help: "a miss lists the key's whole folder in one Infisical call and caches every secret of it; false reads one secret per call"},
		func(s *Settings) *bool { return &s.CachePrefetch }),
	boolean(Spec{Name: "SHARED_CACHE", Default: "true",
		Help: "share the cache between replicas in a JetStream KV bucket, sealed with a key derived from SERVER_XKEY_SEED (needs both); false keeps it in memory"},
		func(s *Settings) *bool { return &s.SharedCache }),
	text(Spec{Name: "SHARED_CACHE_BUCKET", Default: "infisical-secrets-cache",
		Help: "JetStream KV bucket of the shared cache (created in memory storage if missing)"},
		func(s *Settings) *string { return &s.SharedCacheBucket }, checkBucket),
	boolean(Spec{Name: "JWT_CACHE", Default: "true",
		Help: "remember up to 1024 entity and host JWTs once their signatures verified, so that a repeated token costs no signature check (expiry is checked on every use); false verifies every token in full"},
		func(s *Settings) *bool { return &s.JWTCache }),
	duration(Spec{Name: "UPSTREAM_TIMEOUT", Default: "5s",
		Help: "deadline for one Infisical call, at most 8s (hosts give up after 10s)"},
		func(s *Settings) *time.Duration { return &s.UpstreamTimeout }, checkUpstreamTimeout),
	{Spec: Spec{Name: "TRUSTED_ISSUERS",
		Help: "comma-separated account public keys (A...) whose components and providers may read secrets; * = any; unset = nobody"},
		set: setTrustedIssuers,
		get: func(s *Settings) string { return strings.Join(s.TrustedIssuers, ",") }},
	text(Spec{Name: "ACCESS_RULES",
		Help: "JSON array of access rules; unset = every trusted issuer may read every secret"},
		func(s *Settings) *string { return &s.AccessRules }, checkJSON),
	text(Spec{Name: "POLICY_OVERRIDES",
		Help: "policy properties among project_id, environment, secret_path that a manifest's secret policy may set to other than the identity's default, comma-separated, or none; unset = secret_path only when ACCESS_RULES is set, all three otherwise"},
		func(s *Settings) *string { return &s.PolicyOverrides }, checkPolicyOverrides),
	{Spec: Spec{Name: "LOG_LEVEL", Default: "info",
		Help: "debug, info, warn or error (serve only; managed mode follows the host's log level and format)"},
		set: setLogLevel,
		get: func(s *Settings) string { return levelName(s.LogLevel) }},
	{Spec: Spec{Name: "RUST_LOG",
		Help: "used when LOG_LEVEL is unset: the level for infisical_secrets_provider, else the default level (serve only; managed mode follows the host's log level and format)"},
		set: setRustLog, yieldsTo: "LOG_LEVEL"},
	text(Spec{Name: "LOG_FORMAT", Default: "text",
		Help: "text or json (serve only; managed mode follows the host's log level and format)"},
		func(s *Settings) *string { return &s.LogFormat }, checkLogFormat),
	text(Spec{Name: "HEALTH_ADDR",
		Help: "serve only: host:port for HTTP health probes (GET /livez, /readyz), e.g. :8080; unset = no listener"},
		func(s *Settings) *string { return &s.HealthAddr }, checkHealthAddr),
}

// byName indexes table by setting name.
var byName = func() map[string]*entry {
	m := make(map[string]*entry, len(table))
	for i := range table {
		e := &table[i]
		e.tenant = strings.HasPrefix(e.Name, "INFISICAL_")
		m[e.Name] = e
	}
	return m
}()

// text is a string setting; check (optional) validates and normalizes the value.
func text(sp Spec, field func(*Settings) *string, check func(string) (string, error)) entry {
	return entry{
		Spec: sp,
		set: func(s *Settings, v string) error {
			if check != nil {
				var err error
				if v, err = check(v); err != nil {
					return err
				}
			}
			*field(s) = v
			return nil
		},
		get: func(s *Settings) string { return *field(s) },
	}
}

func duration(sp Spec, field func(*Settings) *time.Duration, check func(time.Duration) error) entry {
	return entry{
		Spec: sp,
		set: func(s *Settings, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%q is not a duration; use a Go duration such as 30s, 5m or 1h", v)
			}
			if err := check(d); err != nil {
				return err
			}
			*field(s) = d
			return nil
		},
		get: func(s *Settings) string { return field(s).String() },
	}
}

func boolean(sp Spec, field func(*Settings) *bool) entry {
	return entry{
		Spec: sp,
		set: func(s *Settings, v string) error {
			switch strings.ToLower(v) {
			case "true":
				*field(s) = true
			case "false":
				*field(s) = false
			default:
				return fmt.Errorf("%q is not a boolean; use true or false", v)
			}
			return nil
		},
		get: func(s *Settings) string { return strconv.FormatBool(*field(s)) },
	}
}

func required(e entry, todo string) entry {
	e.todo = todo
	return e
}

// sets tags e as the setting (or one of the settings) of an Infisical client's configuration field.
func sets(f infisical.Field, e entry) entry {
	e.field = f
	return e
}

// SettingFor names the setting, or the settings joined with "or", that set an Infisical client's configuration
// field: the one translation from the client's terms to the settings', for its errors and hints (pass it as
// infisical.Config.Names). It returns "" for a field no setting sets.
func SettingFor(f infisical.Field) string {
	var names []string
	for i := range table {
		if table[i].field == f && f != 0 {
			names = append(names, table[i].Name)
		}
	}
	return strings.Join(names, " or ")
}

func notNegative(zero string) func(time.Duration) error {
	return func(d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("%s is negative; use 0 or more (%s)", d, zero)
		}
		return nil
	}
}

func checkUpstreamTimeout(d time.Duration) error {
	if d <= 0 || d > maxUpstreamTimeout {
		return fmt.Errorf("%s is out of range; use more than 0 and at most %s, so a reply reaches the host before its 10s request timeout", d, maxUpstreamTimeout)
	}
	return nil
}

// checkBaseURL quotes the value only through redactURL: a malformed URL may still hold credentials.
func checkBaseURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL; set it to your Infisical address, such as https://app.infisical.com", redactURL(v))
	}
	if u.User != nil {
		return "", errors.New("the URL holds credentials; remove them and use INFISICAL_AUTH_METHOD's settings instead")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q has a query or fragment; use the bare address, such as https://app.infisical.com", redactURL(v))
	}
	return strings.TrimRight(v, "/"), nil
}

func checkEnvironment(v string) (string, error) {
	if !envSlug.MatchString(v) {
		return "", fmt.Errorf("%q is not an environment slug (lowercase letters, digits and hyphens); use the slug shown in the project's settings, such as prod or dev", v)
	}
	return v, nil
}

func checkSecretPath(v string) (string, error) {
	if !strings.HasPrefix(v, "/") {
		return "", fmt.Errorf("%q does not start with /; use an absolute folder path such as / or /apps/shop", v)
	}
	return path.Clean(v), nil
}

func checkAuthMethod(v string) (string, error) {
	m := infisical.Method(strings.ToLower(v))
	if !m.Supported() {
		return "", fmt.Errorf("%q is not a supported auth method; use one of %s", v, infisical.MethodList())
	}
	return string(m), nil
}

// checkPEM also accepts PEM whose line breaks were written as literal \n, as happens in env files and YAML.
func checkPEM(v string) (string, error) {
	if !strings.Contains(v, "\n") {
		v = strings.ReplaceAll(v, `\n`, "\n")
	}
	if !x509.NewCertPool().AppendCertsFromPEM([]byte(v)) {
		return "", errors.New("holds no PEM certificate; paste the CA certificate from its -----BEGIN CERTIFICATE----- line, or use INFISICAL_CA_CERT_PATH")
	}
	return v, nil
}

func checkNATSURL(v string) (string, error) {
	for raw := range strings.SplitSeq(v, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return "", errors.New("has an empty entry; list URLs separated by commas, such as nats://n1:4222,nats://n2:4222")
		}
		if !strings.Contains(raw, "://") {
			continue // nats.go reads host:port as nats://host:port
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			return "", fmt.Errorf("%q is not a NATS URL; use nats://host:4222 (or tls://, ws://, wss://)", redactURL(raw))
		}
	}
	return v, nil
}

// redactURL drops a password from a URL before it goes into a message. A value with an '@' that does not parse as
// a URL with a user part (a bad port, a missing "://", "user:pass@host" without a scheme) is hidden whole: what
// precedes the '@' may be credentials.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case (err != nil || u.User == nil) && strings.Contains(raw, "@"):
		return "<URL with credentials>"
	case err != nil || u.User == nil:
		return raw
	default:
		// A NATS URL's user part may be a token, so all of it goes, not only a password.
		u.User = url.User("redacted")
		return u.String()
	}
}

// RedactURLs hides the credentials of every URL in a comma-separated list (NATS_URL), for logs and messages.
func RedactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, raw := range parts {
		parts[i] = redactURL(strings.TrimSpace(raw))
	}
	return strings.Join(parts, ",")
}

func checkSubjectPrefix(v string) (string, error) {
	if !tokens.MatchString(v) {
		return "", fmt.Errorf("%q is not a NATS subject prefix; use tokens of letters, digits, _ or - separated by dots, without wildcards, such as wasmcloud.secrets", v)
	}
	return v, nil
}

func checkToken(v string) (string, error) {
	if !oneToken.MatchString(v) {
		return "", fmt.Errorf("%q is not a single NATS subject token; use letters, digits, _ or - only", v)
	}
	return v, nil
}

// checkXKeySeed never quotes the value: it is a private key.
func checkXKeySeed(v string) (string, error) {
	if _, err := nkeys.FromCurveSeed([]byte(v)); err != nil {
		return "", errors.New("is not a curve seed (SX...); generate one with `infisical-secrets-provider xkey`, or unset it to use a new key on every start")
	}
	return v, nil
}

// bucketName is what JetStream accepts as a KV bucket name.
var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func checkBucket(v string) (string, error) {
	if !bucketName.MatchString(v) {
		return "", fmt.Errorf("%q is not a JetStream bucket name; use letters, digits, _ and - only", v)
	}
	return v, nil
}

func checkJSON(v string) (string, error) {
	if !json.Valid([]byte(v)) {
		return "", errors.New(`is not valid JSON; use a JSON array of rules such as [{"application":"shop","key":"/shop/**"}]`)
	}
	return v, nil
}

func checkLogFormat(v string) (string, error) {
	f := strings.ToLower(v)
	if f != "text" && f != "json" {
		return "", fmt.Errorf("%q is not a log format; use text or json", v)
	}
	return f, nil
}

// setTrustedIssuers checks the format cheaply; access.New checks each key fully.
func setTrustedIssuers(s *Settings, v string) error {
	var issuers []string
	for iss := range strings.SplitSeq(v, ",") {
		iss = strings.TrimSpace(iss)
		switch {
		case iss == "":
			continue
		case iss == "*":
		case strings.HasPrefix(iss, "S"):
			// Whatever follows is probably a seed, valid or mistyped: never echo it.
			return errors.New("an entry is a secret seed (S...), not a public key; remove it at once and rotate that key, then list account public keys (A...)")
		case !nkeys.IsValidPublicAccountKey(iss):
			return fmt.Errorf("%q is not an account public key (A...); list the keys that sign your components and providers (wash inspect shows them), or * to trust any issuer", iss)
		}
		issuers = append(issuers, iss)
	}
	s.TrustedIssuers = issuers
	return nil
}

// setTenantClaims reads SOURCE=APPLICATION pairs. Sources are link source ids as the host reports them, compared
// exactly; applications are compared the way request application names are (lowercase, non-alphanumerics as '_').
func setTenantClaims(s *Settings, v string) error {
	var claims []TenantClaim
	for pair := range strings.SplitSeq(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		source, app, ok := strings.Cut(pair, "=")
		source, app = strings.TrimSpace(source), strings.TrimSpace(app)
		if !ok || source == "" || app == "" || strings.ContainsAny(source+app, "= \t") {
			return fmt.Errorf("%q is not SOURCE=APPLICATION; list pairs such as storefront-api=shop, where storefront-api is the id of the link's source component", pair)
		}
		claims = append(claims, TenantClaim{Source: source, Application: app})
	}
	s.TenantClaims = claims
	return nil
}

func tenantClaimsText(claims []TenantClaim) string {
	parts := make([]string, len(claims))
	for i, c := range claims {
		parts[i] = c.Source + "=" + c.Application
	}
	return strings.Join(parts, ",")
}

// OverrideProperties are the policy properties that change where a request reads, which POLICY_OVERRIDES governs.
var OverrideProperties = []string{"project_id", "environment", "secret_path"}

func checkPolicyOverrides(v string) (string, error) {
	if strings.EqualFold(v, "none") {
		return "none", nil
	}
	var props []string
	for p := range strings.SplitSeq(v, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "":
		case !slices.Contains(OverrideProperties, p):
			return "", fmt.Errorf("%q is not an override property; list some of %s, or write none", p, strings.Join(OverrideProperties, ", "))
		case !slices.Contains(props, p):
			props = append(props, p)
		}
	}
	if len(props) == 0 {
		return "none", nil
	}
	return strings.Join(props, ","), nil
}

func checkHealthAddr(v string) (string, error) {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var n uint64
		if n, err = strconv.ParseUint(port, 10, 16); err == nil && n > 65535 {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a host:port with a numeric port; use :8080 (every interface) or 127.0.0.1:8080", v)
	}
	return v, nil
}
