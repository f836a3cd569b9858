package settings

import (
	"slices"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
)

// A link is written by whoever deploys a manifest: it must never make the provider send its own platform identity
// to a URL the link chose, nor read a file the link named, nor set anything outside the link allow-list.
func TestLoadTenantRefusesWhatALinkMayNotSet(t *testing.T) {
	provider := load(t, with(minimal(), "INFISICAL_KUBERNETES_TOKEN_PATH", "/var/run/k8s-token",
		"INFISICAL_AZURE_RESOURCE", "api://provider", "INFISICAL_ORGANIZATION_SLUG", "provider-org"))
	tests := []struct {
		name    string
		config  map[string]string
		secrets map[string]string
		want    string // the setting the error names
	}{
		{name: "ambient kubernetes login sent to the link's URL", want: "INFISICAL_AUTH_METHOD",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "kubernetes", "INFISICAL_IDENTITY_ID": "id", "INFISICAL_BASE_URL": "https://evil.example"}},
		{name: "ambient aws-iam login", want: "INFISICAL_AUTH_METHOD",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "aws-iam", "INFISICAL_IDENTITY_ID": "id"}},
		{name: "ambient gcp-id-token login", want: "INFISICAL_AUTH_METHOD",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "gcp-id-token", "INFISICAL_IDENTITY_ID": "id"}},
		{name: "ambient azure login", want: "INFISICAL_AUTH_METHOD",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "azure", "INFISICAL_IDENTITY_ID": "id"}},
		{name: "OIDC token read from any file", want: "INFISICAL_OIDC_TOKEN_PATH",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "oidc", "INFISICAL_IDENTITY_ID": "id", "INFISICAL_OIDC_TOKEN_PATH": "/etc/shadow",
				"INFISICAL_BASE_URL": "https://evil.example"}},
		{name: "Kubernetes token path", want: "INFISICAL_KUBERNETES_TOKEN_PATH",
			config:  map[string]string{"INFISICAL_CLIENT_ID": "c", "INFISICAL_KUBERNETES_TOKEN_PATH": "/dev/zero"},
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "s"}},
		{name: "GCP key file", want: "INFISICAL_GCP_KEY_FILE",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "gcp-iam", "INFISICAL_IDENTITY_ID": "id", "INFISICAL_GCP_KEY_FILE": "/root/key.json"}},
		{name: "CA certificate file", want: "INFISICAL_CA_CERT_PATH",
			config:  map[string]string{"INFISICAL_CLIENT_ID": "c", "INFISICAL_CA_CERT_PATH": "/dev/zero"},
			secrets: map[string]string{"INFISICAL_CLIENT_SECRET": "s"}},
		{name: "a provider setting", want: "TRUSTED_ISSUERS",
			config: map[string]string{"TRUSTED_ISSUERS": "*"}},
		{name: "a name that is no setting", want: "INFISICAL_PROJECT",
			config: map[string]string{"INFISICAL_PROJECT": "typo"}},
		// A sub-organization is part of an identity: a link that names one brings its whole identity.
		{name: "the provider's identity in another sub-organization", want: "INFISICAL_CLIENT_SECRET",
			config: map[string]string{"INFISICAL_ORGANIZATION_SLUG": "other-org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn, err := LoadTenant(Maps(tt.config, tt.secrets), provider)
			if err == nil {
				t.Fatalf("link accepted: %v", tn.Infisical)
			}
			var names []string
			for _, p := range problemsOf(t, err) {
				names = append(names, p.Setting)
			}
			if !slices.Contains(names, tt.want) {
				t.Fatalf("problems name %v; want %s (%v)", names, tt.want, err)
			}
		})
	}
}

// A link that brings its own identity gets none of the provider's login details: they would go to the link's URL.
func TestLoadTenantOwnIdentityInheritsNoLoginDetails(t *testing.T) {
	provider := load(t, with(minimal(), "INFISICAL_KUBERNETES_TOKEN_PATH", "/var/run/k8s-token",
		"INFISICAL_AZURE_RESOURCE", "api://provider", "INFISICAL_ORGANIZATION_SLUG", "provider-org"))
	tn, err := LoadTenant(Maps(map[string]string{"INFISICAL_CLIENT_ID": "c", "INFISICAL_BASE_URL": "https://tenant.example"},
		map[string]string{"INFISICAL_CLIENT_SECRET": "s"}), provider)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"INFISICAL_KUBERNETES_TOKEN_PATH": tn.KubernetesTokenPath,
		"INFISICAL_AZURE_RESOURCE": tn.AzureResource, "INFISICAL_ORGANIZATION_SLUG": tn.OrganizationSlug} {
		if v != "" || strings.Contains(tn.String(), "provider-org") {
			t.Errorf("the tenant inherited the provider's %s (%q)", name, v)
		}
	}
}

// With TENANT_AMBIENT_AUTH the operator lets links log in as other identities with the provider's platform proof,
// which then goes only to the provider's own Infisical, through the provider's own CA.
func TestLoadTenantAmbientOnlyWhereAllowed(t *testing.T) {
	provider := load(t, with(minimal(), "TENANT_AMBIENT_AUTH", "true", "INFISICAL_KUBERNETES_TOKEN_PATH", "/var/run/k8s-token",
		"INFISICAL_AZURE_RESOURCE", "api://provider"))
	k8s := map[string]string{"INFISICAL_AUTH_METHOD": "kubernetes", "INFISICAL_IDENTITY_ID": "tenant-id"}
	tests := []struct {
		name     string
		config   map[string]string
		check    func(tn Tenant) bool
		problems []string
	}{
		{name: "kubernetes to the provider's Infisical", config: k8s, check: func(tn Tenant) bool {
			return tn.Method == infisical.MethodKubernetes && tn.IdentityID == "tenant-id" && tn.KubernetesTokenPath == "/var/run/k8s-token" &&
				tn.BaseURL == provider.Infisical.BaseURL && tn.ClientID == "" && tn.ClientSecret == ""
		}},
		{name: "azure keeps the provider's resource", config: map[string]string{"INFISICAL_AUTH_METHOD": "azure", "INFISICAL_IDENTITY_ID": "x"},
			check: func(tn Tenant) bool { return tn.AzureResource == "api://provider" }},
		{name: "to another Infisical", config: with(k8s, "INFISICAL_BASE_URL", "https://evil.example"), problems: []string{"INFISICAL_BASE_URL"}},
		{name: "through another CA", config: with(k8s, "INFISICAL_CA_CERT", caPEM(t)), problems: []string{"INFISICAL_CA_CERT"}},
		{name: "gcp-iam without a provider key file",
			config: map[string]string{"INFISICAL_AUTH_METHOD": "gcp-iam", "INFISICAL_IDENTITY_ID": "x"}, problems: []string{"INFISICAL_AUTH_METHOD"}},
		{name: "still no file of the link's", config: with(k8s, "INFISICAL_KUBERNETES_TOKEN_PATH", "/etc/shadow"),
			problems: []string{"INFISICAL_KUBERNETES_TOKEN_PATH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn, err := LoadTenant(Maps(tt.config, nil), provider)
			if tt.problems == nil {
				if err != nil || !tt.check(tn) {
					t.Fatalf("tenant %v, %v", tn.Infisical, err)
				}
				return
			}
			var names []string
			for _, p := range problemsOf(t, err) {
				names = append(names, p.Setting)
			}
			if !slices.Equal(names, tt.problems) {
				t.Fatalf("problems name %v; want %v (%v)", names, tt.problems, err)
			}
		})
	}
}

// TENANT_INFISICAL_CLIENT_SECRET is the link's client secret under a name that does not collide with the provider's
// own INFISICAL_CLIENT_SECRET when both come from one manifest.
func TestLoadTenantClientSecretAlias(t *testing.T) {
	provider := load(t, minimal())
	tests := []struct {
		name    string
		secrets map[string]string
		want    string // client secret; "" = refused
	}{
		{name: "alias", secrets: map[string]string{"TENANT_INFISICAL_CLIENT_SECRET": "tenant-secret"}, want: "tenant-secret"},
		{name: "both, equal", secrets: map[string]string{"TENANT_INFISICAL_CLIENT_SECRET": "x", "INFISICAL_CLIENT_SECRET": "x"}, want: "x"},
		{name: "both, different", secrets: map[string]string{"TENANT_INFISICAL_CLIENT_SECRET": "x", "INFISICAL_CLIENT_SECRET": "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn, err := LoadTenant(Maps(map[string]string{"INFISICAL_CLIENT_ID": "tenant-client"}, tt.secrets), provider)
			switch {
			case tt.want == "" && err == nil:
				t.Fatal("two different client secrets accepted")
			case tt.want == "" && (strings.Contains(err.Error(), "\"x\"") || strings.Contains(err.Error(), "\"y\"")):
				t.Fatalf("the error quotes a secret: %v", err)
			case tt.want != "" && (err != nil || tn.ClientSecret != tt.want || tn.ClientID != "tenant-client"):
				t.Fatalf("tenant %v, %v", tn.Infisical, err)
			}
		})
	}
}

// A link that keeps the provider's identity sets its application's defaults, which policy overrides are checked
// against: it may move the provider's identity only as far as POLICY_OVERRIDES lets a policy move it. A link with an
// identity of its own may read wherever that identity can.
func TestLoadTenantKeptIdentityMovesOnlyWherePolicyOverridesAllow(t *testing.T) {
	place := map[string]string{"INFISICAL_PROJECT_ID": "other-project", "INFISICAL_ENVIRONMENT": "staging",
		"INFISICAL_SECRET_PATH": "/other"}
	tests := []struct {
		name     string
		provider map[string]string
		link     map[string]string
		refused  []string
	}{
		{name: "unset POLICY_OVERRIDES without ACCESS_RULES allows every move", provider: minimal(), link: place},
		{name: "ACCESS_RULES allow only the folder", provider: with(minimal(), "ACCESS_RULES", `[{"key":"/*"}]`),
			link: place, refused: []string{"INFISICAL_ENVIRONMENT", "INFISICAL_PROJECT_ID"}},
		{name: "POLICY_OVERRIDES=none", provider: with(minimal(), "POLICY_OVERRIDES", "none"),
			link: place, refused: []string{"INFISICAL_ENVIRONMENT", "INFISICAL_PROJECT_ID", "INFISICAL_SECRET_PATH"}},
		{name: "POLICY_OVERRIDES=environment", provider: with(minimal(), "POLICY_OVERRIDES", "environment"),
			link: place, refused: []string{"INFISICAL_PROJECT_ID", "INFISICAL_SECRET_PATH"}},
		{name: "the provider's own values move nothing", provider: with(minimal(), "POLICY_OVERRIDES", "none"),
			link: map[string]string{"INFISICAL_PROJECT_ID": "proj-1", "INFISICAL_ENVIRONMENT": "prod", "INFISICAL_SECRET_PATH": "/./"}},
		{name: "an identity of its own", provider: with(minimal(), "POLICY_OVERRIDES", "none"),
			link: with(place, "INFISICAL_CLIENT_ID", "c", "INFISICAL_CLIENT_SECRET", "s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTenant(Maps(tt.link, nil), load(t, tt.provider))
			var names []string
			if err != nil {
				for _, p := range problemsOf(t, err) {
					names = append(names, p.Setting)
					if !strings.Contains(p.Message, "POLICY_OVERRIDES") {
						t.Errorf("%s: %q does not say what would allow it", p.Setting, p.Message)
					}
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, tt.refused) {
				t.Fatalf("refused %v; want %v (%v)", names, tt.refused, err)
			}
		})
	}
}
