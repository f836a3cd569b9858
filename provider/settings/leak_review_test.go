package settings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

// secretMarkers are the values of every secret setting; none may ever be printed.
var secretMarkers = []string{"SECRET-client-secret", "SECRET-oidc-token", "SECRET-jwt", "SECRET-access-token"}

func leakySettings(t *testing.T) *Settings {
	t.Helper()
	s, err := Load(Maps(map[string]string{"INFISICAL_PROJECT_ID": "p", "INFISICAL_CLIENT_ID": "c",
		"INFISICAL_CLIENT_SECRET": "SECRET-client-secret", "SERVER_XKEY_SEED": testkeys.CurveSeed(t)}, nil))
	if err != nil {
		t.Fatal(err)
	}
	// Load refuses some combinations; the leak check is about every secret field at once.
	s.Infisical.OIDCToken, s.Infisical.JWT, s.Infisical.AccessToken = "SECRET-oidc-token", "SECRET-jwt", "SECRET-access-token"
	return s
}

func assertNoSecret(t *testing.T, what, out string, extra ...string) {
	t.Helper()
	for _, m := range append(slicesClone(secretMarkers), extra...) {
		if m != "" && strings.Contains(out, m) {
			t.Errorf("%s leaks %q:\n%s", what, m, out)
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// Whatever way a caller prints the settings, the Infisical settings or the credentials (any fmt verb, slog with the
// text or JSON handler, json.Marshal), no secret is shown: not the credentials, not the server xkey seed.
func TestReviewNoSecretInAnyFormatting(t *testing.T) {
	s := leakySettings(t)
	seed := s.ServerXKeySeed
	if seed == "" {
		t.Fatal("no seed loaded")
	}
	tenant := Tenant{Infisical: s.Infisical, Application: "shop"}
	cfg := infisical.Config{BaseURL: s.Infisical.BaseURL, Auth: s.Infisical.Credentials}
	values := map[string]any{
		"*Settings": s, "Settings": *s, "Infisical": s.Infisical, "*Infisical": &s.Infisical,
		"Tenant": tenant, "*Tenant": &tenant, "Credentials": s.Infisical.Credentials,
		"*Credentials": &s.Infisical.Credentials, "infisical.Config": cfg, "*infisical.Config": &cfg,
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			assertNoSecret(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v), seed)
		}
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, nil)).Info("x", "v", v)
		slog.New(slog.NewJSONHandler(&js, nil)).Info("x", "v", v)
		assertNoSecret(t, "slog text of "+name, text.String(), seed)
		assertNoSecret(t, "slog JSON of "+name, js.String(), seed)
		if b, err := json.Marshal(v); err == nil {
			assertNoSecret(t, "json.Marshal of "+name, string(b), seed)
		}
	}
}
