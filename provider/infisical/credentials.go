package infisical

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	sdk "github.com/infisical/go-sdk"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
)

// Method is how a Client logs in to Infisical: one of Infisical's machine-identity auth methods.
type Method string

// The auth methods, spelled as Infisical's documentation names them.
const (
	MethodUniversalAuth Method = "universal-auth"
	MethodKubernetes    Method = "kubernetes"
	MethodAWSIAM        Method = "aws-iam"
	MethodGCPIDToken    Method = "gcp-id-token"
	MethodGCPIAM        Method = "gcp-iam"
	MethodAzure         Method = "azure"
	MethodOIDC          Method = "oidc"
	MethodJWT           Method = "jwt"
	MethodToken         Method = "token" // a static access token: never refreshed
)

// Methods lists every supported auth method.
var Methods = []Method{MethodUniversalAuth, MethodKubernetes, MethodAWSIAM, MethodGCPIDToken, MethodGCPIAM,
	MethodAzure, MethodOIDC, MethodJWT, MethodToken}

// MethodList is Methods as text, for help and error messages.
func MethodList() string {
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// Supported reports whether m is one of Methods.
func (m Method) Supported() bool { return slices.Contains(Methods, m) }

// Ambient reports whether m logs in with what the platform or its operator gave the process (a service account
// token, an IAM role, a metadata server, a managed identity, a key file) rather than with a secret the Credentials
// carry.
func (m Method) Ambient() bool {
	switch m {
	case MethodKubernetes, MethodAWSIAM, MethodGCPIDToken, MethodAzure, MethodGCPIAM:
		return true
	}
	return false
}

// DefaultKubernetesTokenPath is where Kubernetes mounts a pod's service account token.
const DefaultKubernetesTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Credentials say how to log in to Infisical. Only the fields of the chosen Method are used.
type Credentials struct {
	Method Method // one of Methods; "" = universal-auth

	ClientID, ClientSecret string // universal-auth
	IdentityID             string // every method but universal-auth and token
	KubernetesTokenPath    string // kubernetes; "" = DefaultKubernetesTokenPath; read at every login
	AzureResource          string // azure; "" = the SDK's default (https://management.azure.com/)
	GCPKeyFile             string // gcp-iam: service account key JSON file
	OIDCToken              string // oidc: the token itself, or
	OIDCTokenPath          string // oidc: a file holding it, read at every login (tokens rotate)
	JWT                    string // jwt
	AccessToken            string // token
	OrganizationSlug       string // optional: log in to this sub-organization
}

func (c Credentials) method() Method {
	if c.Method == "" {
		return MethodUniversalAuth
	}
	return c.Method
}

// needs lists the credential fields each method logs in with, in the order errors name them when missing.
var needs = map[Method][]Field{
	MethodUniversalAuth: {FieldClientID, FieldClientSecret},
	MethodKubernetes:    {FieldIdentityID},
	MethodAWSIAM:        {FieldIdentityID},
	MethodGCPIDToken:    {FieldIdentityID},
	MethodGCPIAM:        {FieldIdentityID, FieldGCPKeyFile},
	MethodAzure:         {FieldIdentityID},
	MethodOIDC:          {FieldIdentityID, FieldOIDCToken},
	MethodJWT:           {FieldIdentityID, FieldJWT},
	MethodToken:         {FieldAccessToken},
}

// Missing lists the fields the chosen method needs and c leaves empty (none for an unsupported method, which
// New refuses on its own).
func (c Credentials) Missing() []Field {
	var missing []Field
	for _, f := range needs[c.method()] {
		if strings.TrimSpace(c.value(f)) == "" {
			missing = append(missing, f)
		}
	}
	return missing
}

// value is what c holds for a credential field: for FieldOIDCToken, the token or the file holding it.
func (c Credentials) value(f Field) string {
	switch f {
	case FieldClientID:
		return c.ClientID
	case FieldClientSecret:
		return c.ClientSecret
	case FieldIdentityID:
		return c.IdentityID
	case FieldGCPKeyFile:
		return c.GCPKeyFile
	case FieldOIDCToken:
		return c.OIDCToken + c.OIDCTokenPath
	case FieldJWT:
		return c.JWT
	case FieldAccessToken:
		return c.AccessToken
	}
	return ""
}

// check refuses credentials that cannot log in, naming fields with names.
func (c Credentials) check(names namer) error {
	if !c.method().Supported() {
		return fmt.Errorf("%s %q is not supported; use one of %s", names.of(FieldMethod), c.Method, MethodList())
	}
	if missing := c.Missing(); len(missing) > 0 {
		return fmt.Errorf("auth method %s needs %s", c.method(), names.list(missing))
	}
	return nil
}

// Identity returns a stable, non-secret name for these credentials, fit for cache keys and logs: a truncated
// SHA-256 over the method, the ids and a hash of the secret material, so different secrets for one client id (say,
// a wrong one) never share an entry, and no credential can be recovered from it.
func (c Credentials) Identity() string {
	secret := sha256.Sum256([]byte(strings.Join([]string{c.ClientSecret, c.OIDCToken, c.JWT, c.AccessToken}, "\x00")))
	h := sha256.New()
	for _, part := range []string{string(c.method()), c.ClientID, c.IdentityID, c.OrganizationSlug, c.KubernetesTokenPath,
		c.AzureResource, c.GCPKeyFile, c.OIDCTokenPath, hex.EncodeToString(secret[:])} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// String names the credentials by method and Identity, so that printing them never shows a secret.
func (c Credentials) String() string { return string(c.method()) + " identity " + c.Identity() }

// LogValue is String for slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// GoString is String for %#v, which does not use String and would otherwise print every secret field.
func (c Credentials) GoString() string { return "infisical.Credentials{" + c.String() + "}" }

// MarshalJSON is String as a JSON string, so that a JSON log handler or encoder never writes a secret field.
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// login logs in on client (a fresh SDK client nobody else uses) with the chosen method.
func (c Credentials) login(client sdk.InfisicalClientInterface) (sdk.MachineIdentityCredential, error) {
	auth := client.Auth()
	if c.OrganizationSlug != "" {
		auth = auth.WithOrganizationSlug(c.OrganizationSlug)
	}
	switch c.method() {
	case MethodUniversalAuth:
		return auth.UniversalAuthLogin(c.ClientID, c.ClientSecret)
	case MethodKubernetes:
		path := c.KubernetesTokenPath
		if path == "" {
			path = DefaultKubernetesTokenPath
		}
		token, err := readToken(path, "Kubernetes service account token")
		if err != nil {
			return sdk.MachineIdentityCredential{}, err
		}
		return auth.KubernetesRawServiceAccountTokenLogin(c.IdentityID, token)
	case MethodAWSIAM:
		return auth.AwsIamAuthLogin(c.IdentityID)
	case MethodGCPIDToken:
		return auth.GcpIdTokenAuthLogin(c.IdentityID)
	case MethodGCPIAM:
		// The SDK reads the key file itself, without a limit: read it capped first so a huge or endless file fails
		// here with a clear error.
		if _, err := files.Read(c.GCPKeyFile); err != nil {
			return sdk.MachineIdentityCredential{}, fmt.Errorf("read the GCP service account key file: %w", err)
		}
		return auth.GcpIamAuthLogin(c.IdentityID, c.GCPKeyFile)
	case MethodAzure:
		return auth.AzureAuthLogin(c.IdentityID, c.AzureResource)
	case MethodOIDC:
		token := c.OIDCToken
		if c.OIDCTokenPath != "" {
			var err error
			if token, err = readToken(c.OIDCTokenPath, "OIDC token"); err != nil {
				return sdk.MachineIdentityCredential{}, err
			}
		}
		return auth.OidcAuthLogin(c.IdentityID, token)
	case MethodJWT:
		return auth.JwtAuthLogin(c.IdentityID, c.JWT)
	default:
		return sdk.MachineIdentityCredential{}, fmt.Errorf("auth method %q cannot log in", c.Method)
	}
}

// readToken reads a token file, at most files.MaxSize of it; errors name the file, never its content.
func readToken(path, what string) (string, error) {
	b, err := files.Read(path)
	if err != nil {
		return "", fmt.Errorf("read %s from %s: %w", what, path, err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", errors.New(what + " file " + path + " is empty")
	}
	return token, nil
}
