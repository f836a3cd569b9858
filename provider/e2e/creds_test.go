package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// writeCreds writes a NATS .creds file for a user that expires at exp (zero: never).
func writeCreds(t *testing.T, name string, exp time.Time) string {
	t.Helper()
	account, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	claims := natsjwt.NewUserClaims(userPub)
	claims.Name = name
	if !exp.IsZero() {
		claims.Expires = exp.Unix()
	}
	token, err := claims.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := natsjwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckToolReadsNATSCreds(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name    string
		creds   string
		wantOK  bool
		wantOut string
	}{
		{name: "current", creds: writeCreds(t, "backend", time.Now().Add(time.Hour)), wantOK: true, wantOut: `[ok]   NATS credentials for user "backend"`},
		{name: "expired", creds: writeCreds(t, "old", time.Now().Add(-time.Hour)), wantOut: `[FAIL] NATS Connection Failed: NATS_CREDS user "old" expired at`},
		{name: "not a creds file", creds: "", wantOut: "[FAIL] NATS Connection Failed: NATS_CREDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := tt.creds
			if creds == "" {
				creds = filepath.Join(t.TempDir(), "junk.creds")
				if err := os.WriteFile(creds, []byte("not a creds file"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out, _ := runCommand(t, withEnv(h.env, map[string]string{"NATS_CREDS": creds}), "check")
			if !strings.Contains(out, tt.wantOut) {
				t.Fatalf("check output lacks %q:\n%s", tt.wantOut, out)
			}
			if tt.wantOK != !strings.Contains(out, "[FAIL] NATS Connection Failed") {
				t.Fatalf("exit %d, output:\n%s", code, out)
			}
			for _, leak := range []string{"SUA", "-----BEGIN USER NKEY SEED"} {
				if strings.Contains(out, leak) {
					t.Fatalf("check printed seed material (%q)", leak)
				}
			}
		})
	}
}
