package settings

import (
	"strings"
	"testing"
)

// checkBaseURL refuses a URL with credentials without quoting it ("the URL holds credentials; remove them"), and
// NATS URLs are redacted; but a URL with credentials that also has a wrong scheme or port is quoted whole in the
// error, which the provider logs at ERROR (and, for a link, also in the link's refusal). docs/security.md: "No log line,
// span, metric or error holds ... a client secret, a token".
func TestAttack_BaseURLCredentialsEchoedInErrors(t *testing.T) {
	provider, err := Load(Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "c"},
		map[string]string{"INFISICAL_CLIENT_SECRET": "s"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://admin:hunter2@infisical.internal:8443x", "http//admin:hunter2@infisical.internal"} {
		_, err := Load(Maps(map[string]string{"INFISICAL_BASE_URL": u, "INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "c"},
			map[string]string{"INFISICAL_CLIENT_SECRET": "s"}))
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("provider setting: the error quotes the URL's password: %v", err)
		}
		_, err = LoadTenant(Maps(map[string]string{"INFISICAL_BASE_URL": u, "INFISICAL_CLIENT_ID": "c"},
			map[string]string{"INFISICAL_CLIENT_SECRET": "s"}), provider)
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("link setting: the refusal quotes the URL's password: %v", err)
		}
	}
}
