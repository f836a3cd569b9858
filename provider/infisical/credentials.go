package infisical

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/infisical/go-sdk"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/files"
)

// Auth methods, spelled as INFISICAL_AUTH_METHOD takes them.
const (
	MethodUniversalAuth = "universal-auth"
	MethodKubernetes    = "kubernetes"
	MethodAWSIAM        = "aws-iam"
	MethodGCPIDToken    = "gcp-id-token"
	MethodGCPIAM        = "gcp-iam"
	MethodAzure         = "azure"
	MethodOIDC          = "oidc"
	MethodJWT           = "jwt"
	MethodToken         = "token" // a static access token: never refreshed
)

// Methods lists every supported auth method.
var Methods = []string{MethodUniversalAuth, MethodKubernetes, MethodAWSIAM, MethodGCPIDToken, MethodGCPIAM,
	MethodAzure, MethodOIDC, MethodJWT, MethodToken}

// DefaultKubernetesTokenPath is where Kubernetes mounts a pod's service account token.
const DefaultKubernetesTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// Credentials say how to log in to Infisical. Only the fields of the chosen Method are used.
type Credentials struct {
	Method string // one of Methods; "" = universal-auth

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

func (c Credentials) method() string {
	if c.Method == "" {
		return MethodUniversalAuth
	}
	return c.Method
}

// Validate names, by its setting name, every setting the chosen method needs and lacks.
func (c Credentials) Validate() error {
	var missing []string
	need := func(value, setting string) {
		if strings.TrimSpace(value) == "" {
			missing = append(missing, setting)
		}
	}
	switch c.method() {
	case MethodUniversalAuth:
		need(c.ClientID, "INFISICAL_CLIENT_ID")
		need(c.ClientSecret, "INFISICAL_CLIENT_SECRET")
	case MethodKubernetes, MethodAWSIAM, MethodGCPIDToken, MethodAzure:
		need(c.IdentityID, "INFISICAL_IDENTITY_ID")
	case MethodGCPIAM:
		need(c.IdentityID, "INFISICAL_IDENTITY_ID")
		need(c.GCPKeyFile, "INFISICAL_GCP_KEY_FILE")
	case MethodOIDC:
		need(c.IdentityID, "INFISICAL_IDENTITY_ID")
		need(c.OIDCToken+c.OIDCTokenPath, "INFISICAL_OIDC_TOKEN or INFISICAL_OIDC_TOKEN_PATH")
	case MethodJWT:
		need(c.IdentityID, "INFISICAL_IDENTITY_ID")
		need(c.JWT, "INFISICAL_JWT")
	case MethodToken:
		need(c.AccessToken, "INFISICAL_ACCESS_TOKEN")
	default:
		return fmt.Errorf("INFISICAL_AUTH_METHOD %q is not supported; use one of %s", c.Method, strings.Join(Methods, ", "))
	}
	if len(missing) > 0 {
		return fmt.Errorf("auth method %s needs %s", c.method(), strings.Join(missing, " and "))
	}
	return nil
}

// Identity returns a stable, non-secret name for these credentials, fit for cache keys and logs: a truncated
// SHA-256 over the method, the ids and a hash of the secret material, so different secrets for one client id (say,
// a wrong one) never share an entry, and no credential can be recovered from it.
func (c Credentials) Identity() string {
	secret := sha256.Sum256([]byte(strings.Join([]string{c.ClientSecret, c.OIDCToken, c.JWT, c.AccessToken}, "\x00")))
	h := sha256.New()
	for _, part := range []string{c.method(), c.ClientID, c.IdentityID, c.OrganizationSlug, c.KubernetesTokenPath,
		c.AzureResource, c.GCPKeyFile, c.OIDCTokenPath, hex.EncodeToString(secret[:])} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

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
