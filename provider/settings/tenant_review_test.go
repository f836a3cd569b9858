package settings

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
)

// The link allow-list is what it was before the settings refactor (Credentials embedded in Infisical): nothing more
// may be set on a link.
func TestReviewLinkAllowListUnchanged(t *testing.T) {
	want := []string{"APPLICATION", "INFISICAL_ACCESS_TOKEN", "INFISICAL_AUTH_METHOD", "INFISICAL_BASE_URL",
		"INFISICAL_CA_CERT", "INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET", "INFISICAL_ENVIRONMENT",
		"INFISICAL_IDENTITY_ID", "INFISICAL_JWT", "INFISICAL_OIDC_TOKEN", "INFISICAL_ORGANIZATION_SLUG",
		"INFISICAL_PROJECT_ID", "INFISICAL_SECRET_PATH", "TENANT_INFISICAL_CLIENT_SECRET"}
	if got := LinkSettings(); !slices.Equal(got, want) {
		t.Fatalf("LinkSettings() = %v\nwant %v", got, want)
	}
	for _, name := range []string{"INFISICAL_KUBERNETES_TOKEN_PATH", "INFISICAL_GCP_KEY_FILE", "INFISICAL_OIDC_TOKEN_PATH",
		"INFISICAL_CA_CERT_PATH", "INFISICAL_AZURE_RESOURCE", "TENANT_AMBIENT_AUTH", "SERVER_XKEY_SEED"} {
		_, err := LoadTenant(Maps(map[string]string{name: "/x", "INFISICAL_CLIENT_ID": "c", "INFISICAL_CLIENT_SECRET": "s"}, nil),
			reviewProvider(t))
		if ps := problemsOf(t, err); !slices.ContainsFunc(ps, func(p Problem) bool { return p.Setting == name }) {
			t.Errorf("a link setting %s: problems %+v, want it refused", name, ps)
		}
	}
}

// reviewProvider has every credential field set, to values starting with "P-".
func reviewProvider(t *testing.T) *Settings {
	t.Helper()
	s, err := Load(Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "P-client",
		"INFISICAL_CLIENT_SECRET": "P-secret", "TENANT_AMBIENT_AUTH": "true", "POLICY_OVERRIDES": "project_id,environment,secret_path"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	c := &s.Infisical.Credentials
	c.IdentityID, c.KubernetesTokenPath, c.AzureResource, c.GCPKeyFile = "P-identity", "P-k8s-path", "P-azure", "P-gcp-key"
	c.OIDCToken, c.OIDCTokenPath, c.JWT, c.AccessToken, c.OrganizationSlug = "P-oidc", "P-oidc-path", "P-jwt", "P-token", "P-org"
	return s
}

// A link that brings its own identity, with any method, never logs in with a credential of the provider's: its
// Credentials hold only what the link set, except, for an ambient method the operator allowed, the operator's
// own ambient details (token path, Azure resource, GCP key file). And it never reads as the provider's identity.
func TestReviewOwnIdentityInheritsNoProviderCredential(t *testing.T) {
	provider := reviewProvider(t)
	ambientFromProvider := map[string]bool{"KubernetesTokenPath": true, "AzureResource": true, "GCPKeyFile": true}
	for _, m := range infisical.Methods {
		t.Run(string(m), func(t *testing.T) {
			link := map[string]string{"INFISICAL_AUTH_METHOD": string(m)}
			secrets := map[string]string{}
			switch m {
			case infisical.MethodUniversalAuth:
				link["INFISICAL_CLIENT_ID"], secrets["INFISICAL_CLIENT_SECRET"] = "L-client", "L-secret"
			case infisical.MethodToken:
				secrets["INFISICAL_ACCESS_TOKEN"] = "L-token"
			default:
				link["INFISICAL_IDENTITY_ID"] = "L-identity"
			}
			switch m {
			case infisical.MethodOIDC:
				secrets["INFISICAL_OIDC_TOKEN"] = "L-oidc"
			case infisical.MethodJWT:
				secrets["INFISICAL_JWT"] = "L-jwt"
			}
			tn, err := LoadTenant(Maps(link, secrets), provider)
			if err != nil {
				t.Fatal(err)
			}
			v := reflect.ValueOf(tn.Credentials)
			for i := range v.NumField() {
				name, val := v.Type().Field(i).Name, v.Field(i).String()
				if strings.HasPrefix(val, "P-") && !(m.Ambient() && ambientFromProvider[name]) {
					t.Errorf("%s = %q: the provider's credential on a link's own %s identity", name, val, m)
				}
			}
			if tn.Credentials.Identity() == provider.Infisical.Credentials.Identity() {
				t.Errorf("the link's own identity reads as the provider's")
			}
		})
	}
}

// Identity is the cache key's view of the credentials: changing any field of Credentials changes it, so two
// identities that differ in anything never share cached values.
func TestReviewIdentityCoversEveryCredentialField(t *testing.T) {
	base := reviewProvider(t).Infisical.Credentials
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		c := base
		f := reflect.ValueOf(&c).Elem().Field(i)
		if f.Kind() != reflect.String {
			t.Fatalf("field %s is not a string: extend this test", v.Type().Field(i).Name)
		}
		if v.Type().Field(i).Name == "Method" {
			f.SetString(string(infisical.MethodJWT))
		} else {
			f.SetString(f.String() + "-changed")
		}
		if c.Identity() == base.Identity() {
			t.Errorf("changing %s leaves Identity unchanged", v.Type().Field(i).Name)
		}
	}
}

// A link with an ambient method (TENANT_AMBIENT_AUTH) that names the provider's own machine identity logs in as
// exactly the provider: it keeps the provider's identity in all but name, so it must move it only where
// POLICY_OVERRIDES allows, like a link that sets no identity (docs/security.md, Tenants).
func TestReviewAmbientLinkAsTheProviderKeepsItsPlace(t *testing.T) {
	provider, err := Load(Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_AUTH_METHOD": "kubernetes",
		"INFISICAL_IDENTITY_ID": "provider-identity", "TENANT_AMBIENT_AUTH": "true", "POLICY_OVERRIDES": "none"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	link := map[string]string{"INFISICAL_AUTH_METHOD": "kubernetes", "INFISICAL_IDENTITY_ID": "provider-identity",
		"INFISICAL_PROJECT_ID": "other-project"}
	_, err = LoadTenant(Maps(link, nil), provider)
	if err == nil {
		t.Fatal("a link logged in as the provider's own identity moved it to another project POLICY_OVERRIDES=none keeps it out of")
	}
	if ps := problemsOf(t, err); !slices.ContainsFunc(ps, func(p Problem) bool { return p.Setting == "INFISICAL_PROJECT_ID" }) {
		t.Fatalf("problems %+v; want INFISICAL_PROJECT_ID refused", ps)
	}
	// Its own machine identity (another id) may read where that identity may.
	link["INFISICAL_IDENTITY_ID"] = "tenant-identity"
	if _, err := LoadTenant(Maps(link, nil), provider); err != nil {
		t.Fatalf("an ambient link with its own identity: %v", err)
	}
}
