package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// withEnv copies env and applies overrides; an empty override value removes the setting.
func withEnv(env, overrides map[string]string) map[string]string {
	out := make(map[string]string, len(env)+len(overrides))
	for k, v := range env {
		out[k] = v
	}
	for k, v := range overrides {
		if v == "" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// expiredComponentJWT signs a component token that expired an hour ago, as a stale `wash build` would leave.
func expiredComponentJWT(t *testing.T, issuer nkeys.KeyPair) string {
	t.Helper()
	iss, _ := issuer.PublicKey()
	sub, err := wascap.NewPublicKey(wascap.PrefixModule)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{
		"jti": "expiredtoken0000000000",
		"iat": now.Add(-48 * time.Hour).Unix(),
		"exp": now.Add(-time.Hour).Unix(),
		"iss": iss,
		"sub": sub,
		"wascap": map[string]any{
			"name": "stale", "hash": strings.Repeat("AB", 32), "tags": []string{}, "rev": 0, "ver": "0.1.0", "prov": false,
		},
		"wascap_revision": wascap.Revision,
	}
	tok, err := wascap.Sign(claims, issuer)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// seedOf returns an issuer's seed as the string an operator would pass to --issuer-seed.
func seedOf(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

// failBlock returns the "[FAIL]" line of a checklist that contains what, with its "fix:" line, or "".
func failBlock(out, what string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "[FAIL]") && strings.Contains(l, what) {
			block := l
			if i+1 < len(lines) {
				block += "\n" + lines[i+1]
			}
			return block
		}
	}
	return ""
}

// describe formats a command's result for failure messages.
func describe(code int, stdout, stderr string) string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", code, stdout, stderr)
}

// userSeed returns a user nkey seed (SU...), which is not an account and cannot issue component JWTs.
func userSeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return seedOf(t, kp)
}
