package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testnet"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func TestXKeyToolMakesTheSeedTheBackendServes(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCommand(t, nil, "xkey")
	if code != 0 {
		t.Fatalf("xkey: %s", describe(code, stdout, stderr))
	}
	seed := strings.TrimSpace(stdout)
	if strings.Count(stdout, "\n") != 1 {
		t.Fatalf("xkey stdout is not one line: %q", stdout)
	}
	kp, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		t.Fatalf("xkey printed %q, not a curve seed: %v", seed, err)
	}
	pub, _ := kp.PublicKey()
	if !strings.Contains(stderr, pub) {
		t.Errorf("xkey stderr does not show the public key %s:\n%s", pub, stderr)
	}
	if strings.Contains(stderr, seed) {
		t.Error("xkey repeated the seed on stderr")
	}

	code, stdout, stderr = runCommand(t, nil, "xkey", "--public", seed)
	if code != 0 || strings.TrimSpace(stdout) != pub {
		t.Fatalf("xkey --public = %q; want %s\n%s", stdout, pub, describe(code, stdout, stderr))
	}

	h := newHarness(t)
	h.env["SERVER_XKEY_SEED"] = seed
	h.start()
	got, err := h.host.Secrets.ServerXKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got != pub {
		t.Fatalf("server_xkey = %s; want the xkey tool's public key %s", got, pub)
	}
	if v := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); v != "v2-password" {
		t.Fatalf("fetch through the generated key = %q", v)
	}
}

func TestXKeyToolRejectsBadInput(t *testing.T) {
	t.Parallel()
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{name: "garbage seed", args: []string{"xkey", "--public", "SXnotaseed"}, wantCode: 1, want: "not a curve seed"},
		{name: "account seed", args: []string{"xkey", "--public", string(accountSeed)}, wantCode: 1, want: "not a curve seed"},
		{name: "public key instead of seed", args: []string{"xkey", "--public", "XAL54S5FE6SRPONXRNVE4ZDAOHOT44GFIY2ZW33DHLR2U3H2HJSXXRKY"}, wantCode: 1, want: "not a curve seed"},
		{name: "positional argument", args: []string{"xkey", "SXAfoo"}, wantCode: 2, want: "--public"},
		{name: "unknown flag", args: []string{"xkey", "--pub"}, wantCode: 2, want: "Usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.want) {
				t.Fatalf("want exit %d and %q on stderr; got %s", tt.wantCode, tt.want, describe(code, stdout, stderr))
			}
			if stdout != "" {
				t.Errorf("stdout = %q; want nothing on failure", stdout)
			}
			if strings.Contains(stderr, string(accountSeed)) {
				t.Error("the seed was echoed on stderr")
			}
		})
	}
}

func TestCheckToolPassesAGoodConfiguration(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start() // so check also compares the running backend's server_xkey with SERVER_XKEY_SEED
	code, stdout, stderr := runCommand(t, h.env, "check", "--secret", "DB_PASSWORD", "--entity-jwt", h.comp.JWT)
	if code != 0 {
		t.Fatalf("check: %s", describe(code, stdout, stderr))
	}
	for _, want := range []string{
		"[ok]   settings are valid",
		"[ok]   connected to NATS",
		"[ok]   a backend answers wasmcloud.secrets.v1alpha1.infisical.server_xkey",
		"[ok]   logged in to Infisical",
		"[ok]   read secret /DB_PASSWORD (version 2; value not shown)",
		"[ok]   entity JWT valid: component \"api\"",
		"all checks passed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	for _, leak := range []string{"v2-password", secret} {
		if strings.Contains(stdout+stderr, leak) {
			t.Errorf("check printed a secret (%q)", leak)
		}
	}
	if strings.Contains(stdout, "[FAIL]") {
		t.Errorf("a passing check printed a failure:\n%s", stdout)
	}
}

func TestCheckToolNamesEachBrokenSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   func(h *harness) map[string]string
		args  func(h *harness) []string
		start bool
		// want lists what the "[FAIL]" line (with its fix line) must say; the first entry finds the line.
		want []string
	}{
		{
			name: "wrong client secret",
			env: func(h *harness) map[string]string {
				return map[string]string{"INFISICAL_CLIENT_SECRET": "wrong-secret-4711"}
			},
			want: []string{"Authentication Failed", "Failed to authenticate with Infisical", "Invalid credentials", "INFISICAL_CLIENT_SECRET"},
		},
		{
			name: "missing secret",
			args: func(h *harness) []string { return []string{"--secret", "NOPE"} },
			want: []string{"Secret Not Found", "Secret 'NOPE' not found", "environment prod", "fix: verify the secret exists"},
		},
		{
			name: "NATS not running",
			env: func(h *harness) map[string]string {
				return map[string]string{"NATS_URL": "nats://" + testnet.ClosedAddr(h.t)}
			},
			want: []string{"NATS Connection Failed", "Failed to connect to NATS at nats://127.0.0.1:", "NATS_URL"},
		},
		{
			name: "expired entity JWT",
			args: func(h *harness) []string { return []string{"--entity-jwt", expiredComponentJWT(h.t, h.issuer)} },
			want: []string{"JWT Validation Failed", "token expired at", "system clock"},
		},
		{
			name: "malformed CACHE_TTL",
			env:  func(h *harness) map[string]string { return map[string]string{"CACHE_TTL": "soon"} },
			want: []string{"CACHE_TTL", "Invalid Setting", "fix: set CACHE_TTL"},
		},
		{
			name: "every settings problem at once",
			env: func(h *harness) map[string]string {
				return map[string]string{"CACHE_TTL": "soon", "INFISICAL_PROJECT_ID": "", "NATS_URL": "http://x"}
			},
			want: []string{"INFISICAL_PROJECT_ID", "Invalid Setting", "CACHE_TTL", "NATS_URL"},
		},
		{
			name: "untrusted entity issuer",
			args: func(h *harness) []string {
				other, err := hostsim.Component(hostsim.NewIssuer(), "intruder")
				if err != nil {
					h.t.Fatal(err)
				}
				return []string{"--entity-jwt", other.JWT}
			},
			want: []string{"Unauthorized", "is not in TRUSTED_ISSUERS", "fix: add A"},
		},
		{
			name: "another replica with another xkey",
			env: func(h *harness) map[string]string {
				return map[string]string{"SERVER_XKEY_SEED": testkeys.CurveSeed(h.t)}
			},
			start: true,
			want:  []string{"Server XKey Mismatch", "SERVER_XKEY_SEED"},
		},
		{
			name: "bad access rules",
			env:  func(h *harness) map[string]string { return map[string]string{"ACCESS_RULES": `[{"colour":"blue"}]`} },
			want: []string{"ACCESS_RULES", "Invalid Setting"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if tt.start {
				h.start()
			}
			env := h.env
			if tt.env != nil {
				env = withEnv(h.env, tt.env(h))
			}
			args := []string{"check"}
			if tt.args != nil {
				args = append(args, tt.args(h)...)
			}
			code, stdout, stderr := runCommand(t, env, args...)
			if code != 1 {
				t.Fatalf("check exit = %d; want 1\n%s", code, describe(code, stdout, stderr))
			}
			block := failBlock(stdout, tt.want[0])
			if block == "" {
				t.Fatalf("no [FAIL] line with %q:\n%s", tt.want[0], stdout)
			}
			if !strings.Contains(block, "fix: ") {
				t.Errorf("failure without a fix:\n%s", block)
			}
			for _, want := range tt.want[1:] {
				if !strings.Contains(block, want) && failBlock(stdout, want) == "" {
					t.Errorf("no failure says %q:\n%s", want, stdout)
				}
			}
			if strings.Contains(stdout, "all checks passed") || !strings.Contains(stdout, "check(s) failed") {
				t.Errorf("summary line wrong:\n%s", stdout)
			}
			if strings.Contains(stdout+stderr, "wrong-secret-4711") || strings.Contains(stdout+stderr, secret) {
				t.Error("check printed a client secret")
			}
		})
	}
}

func TestCheckToolListsEverySettingsProblem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := withEnv(h.env, map[string]string{"CACHE_TTL": "soon", "INFISICAL_PROJECT_ID": ""})
	code, stdout, stderr := runCommand(t, env, "check")
	if code != 1 {
		t.Fatalf("check: %s", describe(code, stdout, stderr))
	}
	for _, name := range []string{"CACHE_TTL", "INFISICAL_PROJECT_ID"} {
		if failBlock(stdout, "Invalid Setting: "+name) == "" {
			t.Errorf("no [FAIL] line for %s:\n%s", name, stdout)
		}
	}
	if got := strings.Count(stdout, "[FAIL]"); got != 2 {
		t.Errorf("%d failures; want one per problem:\n%s", got, stdout)
	}
}

func TestGetToolPrintsValues(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	seed := seedOf(t, h.issuer)
	seedFile := filepath.Join(t.TempDir(), "issuer.nk")
	if err := os.WriteFile(seedFile, []byte(seed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "plain", args: []string{"DB_PASSWORD", "--issuer-seed", seed}, want: "v2-password\n"},
		{name: "seed from a file", args: []string{"DB_PASSWORD", "--issuer-seed", seedFile}, want: "v2-password\n"},
		{name: "flags before the key", args: []string{"--issuer-seed", seed, "--version", "1", "DB_PASSWORD"}, want: "v1-password\n"},
		{name: "version", args: []string{"DB_PASSWORD", "--version", "1", "--issuer-seed", seed}, want: "v1-password\n"},
		{name: "field", args: []string{"JSON", "--field", "user", "--issuer-seed", seed}, want: "bob\n"},
		{name: "sub-folder and application", args: []string{"payments/API_KEY", "--application", "shop", "--issuer-seed", seed}, want: "pay-key\n"},
		{name: "policy environment", args: []string{"DB_PASSWORD", "--policy", "environment=dev", "--issuer-seed", seed}, want: "dev-password\n"},
		{name: "binary as hex", args: []string{"BLOB", "--policy", "encoding=base64", "--issuer-seed", seed}, want: "000102ff\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCommand(t, h.env, append([]string{"get"}, tt.args...)...)
			if code != 0 || stdout != tt.want {
				t.Fatalf("stdout = %q; want %q\n%s", stdout, tt.want, describe(code, stdout, stderr))
			}
			if strings.Contains(stderr, strings.TrimSpace(tt.want)) {
				t.Errorf("the value reached stderr:\n%s", stderr)
			}
		})
	}

	t.Run("raw bytes to a private file", func(t *testing.T) {
		t.Parallel()
		out := filepath.Join(t.TempDir(), "blob.bin")
		if err := os.WriteFile(out, []byte("old contents, world-readable"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runCommand(t, h.env, "get", "BLOB", "--policy", "encoding=base64", "--issuer-seed", seed, "--out", out)
		if code != 0 || stdout != "" {
			t.Fatalf("get --out: %s", describe(code, stdout, stderr))
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte{0, 1, 2, 0xff}) {
			t.Fatalf("file holds %x; want 000102ff", got)
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Fatalf("file mode %o; want 600", perm)
		}
	})

	t.Run("json reply", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCommand(t, h.env, "get", "BLOB", "--policy", "encoding=base64", "--json", "--issuer-seed", seed)
		if code != 0 {
			t.Fatalf("get --json: %s", describe(code, stdout, stderr))
		}
		var resp secrets.Response
		if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
			t.Fatalf("stdout is not a reply: %v\n%s", err, stdout)
		}
		if resp.Error != nil || resp.Secret == nil || !bytes.Equal(resp.Secret.BinarySecret, []byte{0, 1, 2, 0xff}) ||
			resp.Secret.StringSecret != nil || resp.Secret.Version == "" {
			t.Fatalf("reply = %s", stdout)
		}
	})
}

func TestGetToolReportsEachErrorVariant(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	seed := seedOf(t, h.issuer)
	tests := []struct {
		name string
		args []string
		kind secrets.ErrorKind
		host string // what the host would show after "server error: "
	}{
		{name: "not found", args: []string{"NOPE", "--issuer-seed", seed}, kind: secrets.KindSecretNotFound, host: "Secret not found"},
		{name: "missing field", args: []string{"JSON", "--field", "nope", "--issuer-seed", seed}, kind: secrets.KindSecretNotFound, host: "Secret not found"},
		{name: "throwaway issuer", args: []string{"DB_PASSWORD"}, kind: secrets.KindUnauthorized, host: "Error fetching secret: unauthorized"},
		{name: "version not a number", args: []string{"DB_PASSWORD", "--version", "x", "--issuer-seed", seed}, kind: secrets.KindInvalidRequest, host: "Invalid request"},
		{name: "bad policy property", args: []string{"DB_PASSWORD", "--policy", "include_imports=maybe", "--issuer-seed", seed}, kind: secrets.KindPolicyError, host: "Error processing policies: $"},
		{name: "garbage entity JWT", args: []string{"DB_PASSWORD", "--entity-jwt", "garbage"}, kind: secrets.KindInvalidEntityJWT, host: "Invalid Entity JWT: "},
		{name: "expired entity JWT", args: []string{"DB_PASSWORD", "--entity-jwt", expiredComponentJWT(t, h.issuer)}, kind: secrets.KindInvalidEntityJWT, host: "Invalid Entity JWT: token expired at "},
		{name: "garbage host JWT", args: []string{"DB_PASSWORD", "--host-jwt", "garbage", "--issuer-seed", seed}, kind: secrets.KindInvalidHostJWT, host: "Invalid Host JWT: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCommand(t, h.env, append([]string{"get"}, tt.args...)...)
			wantErrorOutput(t, code, stdout, stderr, tt.kind, tt.host)
		})
	}

	t.Run("policy error names the property", func(t *testing.T) {
		t.Parallel()
		_, _, stderr := runCommand(t, h.env, "get", "DB_PASSWORD", "--policy", "include_imports=maybe", "--issuer-seed", seed)
		if !strings.Contains(stderr, "include_imports") {
			t.Fatalf("the policy error does not name include_imports:\n%s", stderr)
		}
	})

	t.Run("json error reply", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runCommand(t, h.env, "get", "NOPE", "--json", "--issuer-seed", seed)
		if code != 1 {
			t.Fatalf("get --json: %s", describe(code, stdout, stderr))
		}
		var resp secrets.Response
		if err := json.Unmarshal([]byte(stdout), &resp); err != nil || resp.Error == nil || resp.Error.Kind != secrets.KindSecretNotFound {
			t.Fatalf("stdout = %q (%v); want the SecretNotFound reply", stdout, err)
		}
	})
}

func TestGetToolReportsUpstreamError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.fake.FailNext(fakeinfisical.RouteAll, 1000, 500, "Something went wrong", nil)
	t.Cleanup(func() { h.fake.FailNext(fakeinfisical.RouteAll, 0, 0, "", nil) })
	code, stdout, stderr := runCommand(t, h.env, "get", "DB_PASSWORD", "--issuer-seed", seedOf(t, h.issuer))
	wantErrorOutput(t, code, stdout, stderr, secrets.KindUpstreamError, "Error fetching secret: ")
}

func TestGetToolWithoutABackend(t *testing.T) {
	t.Parallel()
	h := newHarness(t) // NATS runs, the backend does not
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{name: "nobody answers server_xkey", env: h.env, want: []string{"failed to fetch server xkey", "failed to create secrets client", "BACKEND_NAME"}},
		{name: "other backend name", env: withEnv(h.env, map[string]string{"BACKEND_NAME": "vault"}), want: []string{"failed to fetch server xkey"}},
		{name: "no NATS", env: withEnv(h.env, map[string]string{"NATS_URL": "nats://user:hunter2@" + testnet.ClosedAddr(t)}), want: []string{"NATS Connection Failed", "NATS_URL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCommand(t, tt.env, "get", "DB_PASSWORD", "--timeout", "5s")
			if code != 1 || stdout != "" {
				t.Fatalf("want exit 1 and empty stdout; %s", describe(code, stdout, stderr))
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "hunter2") {
				t.Error("the NATS password was printed")
			}
			if n := strings.Count(stderr, "failed to fetch server xkey"); n > 1 {
				t.Errorf("the error is repeated %d times:\n%s", n, stderr)
			}
		})
	}
}

func TestToolUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no key", args: []string{"get"}, want: "get needs a KEY"},
		{name: "only flags", args: []string{"get", "--version", "1"}, want: "get needs a KEY"},
		{name: "two keys", args: []string{"get", "A", "B"}, want: "one KEY"},
		{name: "policy without =", args: []string{"get", "A", "--policy", "encoding"}, want: "is not k=v"},
		{name: "unknown flag", args: []string{"get", "A", "--colour", "blue"}, want: "Usage"},
		{name: "issuer seed not a seed", args: []string{"get", "A", "--issuer-seed", "SAnotaseed"}, want: "--issuer-seed"},
		{name: "issuer seed of a user", args: []string{"get", "A", "--issuer-seed", userSeed(t)}, want: "not an account seed"},
		{name: "check with a positional key", args: []string{"check", "DB_PASSWORD"}, want: "--secret DB_PASSWORD"},
		{name: "check unknown flag", args: []string{"check", "--secrets", "A"}, want: "Usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, nil, tt.args...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Fatalf("want exit 2, empty stdout and %q; %s", tt.want, describe(code, stdout, stderr))
			}
		})
	}
}

func TestToolsHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "check", args: []string{"check", "--help"}, want: []string{"Usage: infisical-secrets-provider check", "-secret", "-entity-jwt"}},
		{name: "get", args: []string{"get", "--help"}, want: []string{"Usage: infisical-secrets-provider get KEY", "-field", "-version", "-policy", "-application", "-json", "-out", "-issuer-seed", "-entity-jwt", "-host-jwt"}},
		{name: "get KEY --help", args: []string{"get", "DB_PASSWORD", "-h"}, want: []string{"Usage: infisical-secrets-provider get KEY"}},
		{name: "xkey", args: []string{"xkey", "--help"}, want: []string{"Usage: infisical-secrets-provider xkey", "-public"}},
		{name: "serve", args: []string{"serve", "--help"}, want: []string{"Usage: infisical-secrets-provider serve", "NATS_URL"}},
		{name: "top level", args: []string{"--help"}, want: []string{"check", "get", "xkey"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, nil, tt.args...)
			if code != 0 {
				t.Fatalf("--help: %s", describe(code, stdout, stderr))
			}
			for _, want := range tt.want {
				if !strings.Contains(stdout+stderr, want) {
					t.Errorf("help lacks %q:\n%s", want, stdout+stderr)
				}
			}
		})
	}
}

// wantErrorOutput requires get's report of a wire error: exit 1, nothing on stdout, the variant and host wording.
func wantErrorOutput(t *testing.T, code int, stdout, stderr string, kind secrets.ErrorKind, host string) {
	t.Helper()
	if code != 1 || stdout != "" {
		t.Fatalf("want exit 1 and empty stdout; %s", describe(code, stdout, stderr))
	}
	if want := "error variant: " + string(kind) + "\n"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if want := "host would say: Unable to fetch requested secrets: server error: " + host; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if !strings.Contains(stderr, "cause: ") {
		t.Errorf("stderr names no cause:\n%s", stderr)
	}
}

// check must reach Infisical the way serve does: with a private CA given as a file, serve works, so check must too
// (it once built its client on a path that never read INFISICAL_CA_CERT_PATH and reported Authentication Failed).
func TestCheckToolTrustsTheCACertPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tlsFake := fakeinfisical.NewTLS(t)
	tlsFake.AddIdentity(clientID, secret, project)
	tlsFake.SetSecret(project, "prod", "/", "DB_PASSWORD", "tls-password")
	env := withEnv(h.env, map[string]string{
		"INFISICAL_BASE_URL":     tlsFake.URL,
		"INFISICAL_CA_CERT_PATH": writeFile(t, filepath.Join(t.TempDir(), "ca.pem"), tlsFake.CACertPEM()),
	})
	code, stdout, stderr := runCommand(t, env, "check", "--secret", "DB_PASSWORD")
	if code != 0 || !strings.Contains(stdout, "[ok]   logged in to Infisical") || !strings.Contains(stdout, "[ok]   read secret /DB_PASSWORD") {
		t.Fatalf("check with INFISICAL_CA_CERT_PATH: %s", describe(code, stdout, stderr))
	}
}
