package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

// brokenWriter is a stdout that cannot be written, like a closed pipe.
type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// get must not exit 0 when what it fetched never reached stdout: a script would go on without the value.
func TestGetReportsOutputItCannotWrite(t *testing.T) {
	value := "v"
	secret := &secrets.Secret{Version: "1", StringSecret: &value}
	tests := []struct {
		name string
		run  func(e *env) error
	}{
		{name: "value", run: func(e *env) error { return (&getOptions{key: "K"}).print(e, secret) }},
		{name: "json reply", run: func(e *env) error { return (&getOptions{key: "K", asJSON: true}).print(e, secret) }},
		{name: "json error reply", run: func(e *env) error {
			return wireFailure(e, secrets.NewError(secrets.KindSecretNotFound, ""), true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			e := &env{stdout: brokenWriter{}, stderr: &stderr}
			if code := exitCode(e, tt.run(e)); code != exitFailure || !strings.Contains(stderr.String(), "broken pipe") {
				t.Fatalf("exit %d, stderr %q; want exit %d naming the write error", code, stderr.String(), exitFailure)
			}
		})
	}
}
