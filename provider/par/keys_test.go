package par

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestKeysCreatedOnFirstUseAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	noEnv := func(string) string { return "" }

	first, err := LoadOrCreateKeys(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{filepath.Join(dir, IssuerFile), filepath.Join(dir, SubjectFile)}
	if strings.Join(first.Created, ",") != strings.Join(wantFiles, ",") {
		t.Errorf("Created = %v, want %v", first.Created, wantFiles)
	}
	for _, f := range wantFiles {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("key dir: %v %v, want mode 0700", st, err)
	}
	subjectSeed, err := os.ReadFile(wantFiles[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(subjectSeed), "SV") {
		t.Errorf("subject file holds %.2s..., want a wash-style SV seed", subjectSeed)
	}
	issuerSeed, err := os.ReadFile(wantFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(issuerSeed), "SA") {
		t.Errorf("issuer file holds %.2s..., want an SA seed", issuerSeed)
	}

	second, err := LoadOrCreateKeys(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Created) != 0 {
		t.Errorf("second load created %v", second.Created)
	}
	pub1, _ := first.Issuer.PublicKey()
	pub2, _ := second.Issuer.PublicKey()
	if pub1 != pub2 || first.Subject.PublicKey() != second.Subject.PublicKey() {
		t.Error("keys changed between loads")
	}
}

func TestKeysFromEnvironment(t *testing.T) {
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountSeed, _ := account.Seed()
	accountPub, _ := account.PublicKey()
	service, err := NewServiceKey()
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userSeed, _ := user.Seed()

	files := t.TempDir()
	issuerPath := filepath.Join(files, "me_account.nk")
	subjectPath := filepath.Join(files, "provider_service.nk")
	if err := os.WriteFile(issuerPath, append(accountSeed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(subjectPath, []byte(service.Seed()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		env         map[string]string
		wantSubject string // "" = don't care
		wantErr     string
	}{
		{name: "seeds as text", env: map[string]string{EnvIssuerKey: string(accountSeed), EnvSubjectKey: service.Seed()}, wantSubject: service.PublicKey()},
		{name: "seeds in files", env: map[string]string{EnvIssuerKey: issuerPath, EnvSubjectKey: subjectPath}, wantSubject: service.PublicKey()},
		{name: "issuer from env, subject generated", env: map[string]string{EnvIssuerKey: string(accountSeed)}},
		{name: "issuer is a user seed", env: map[string]string{EnvIssuerKey: string(userSeed)}, wantErr: "not an account seed"},
		{name: "missing file", env: map[string]string{EnvIssuerKey: filepath.Join(files, "nope.nk")}, wantErr: "cannot be read"},
		{name: "corrupt issuer seed", env: map[string]string{EnvIssuerKey: corrupt(string(accountSeed))}, wantErr: "issuer key"},
		{name: "corrupt subject seed", env: map[string]string{EnvIssuerKey: string(accountSeed), EnvSubjectKey: corrupt(service.Seed())}, wantErr: "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			k, err := LoadOrCreateKeys(dir, func(n string) string { return tt.env[n] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
				}
				for _, v := range tt.env {
					if strings.HasPrefix(v, "S") && strings.Contains(err.Error(), v) {
						t.Errorf("error %q leaks the seed", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pub, _ := k.Issuer.PublicKey(); pub != accountPub {
				t.Errorf("issuer %s, want %s", pub, accountPub)
			}
			if tt.wantSubject != "" && k.Subject.PublicKey() != tt.wantSubject {
				t.Errorf("subject %s, want %s", k.Subject.PublicKey(), tt.wantSubject)
			}
			for _, f := range k.Created {
				if filepath.Base(f) == IssuerFile {
					t.Errorf("created %s although the issuer came from the environment", f)
				}
			}
		})
	}
}

// corrupt changes one character in the middle of a seed, keeping its shape.
func corrupt(seed string) string {
	b := []byte(seed)
	if b[20] == 'A' {
		b[20] = 'B'
	} else {
		b[20] = 'A'
	}
	return string(b)
}

func TestServiceKeyEncoding(t *testing.T) {
	// A real provider subject (wasmCloud's httpserver provider, as `wash inspect` prints it).
	if err := CheckServiceKey("VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M"); err != nil {
		t.Errorf("real service key rejected: %v", err)
	}
	// The CRC and base32 layout must match nkeys' own: encode a user key by hand and compare.
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userPub, _ := user.PublicKey()
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(userPub))
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeKey([]byte{byte(nkeys.PrefixByteUser)}, raw); got != userPub {
		t.Fatalf("hand encoding %s, nkeys %s", got, userPub)
	}

	v, err := EncodeServiceKey(ed25519.PublicKey(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckServiceKey(v); err != nil {
		t.Fatalf("CheckServiceKey(%s): %v", v, err)
	}
	if v[0] != 'V' || len(v) != 56 || v[1:] == userPub[1:] {
		t.Errorf("service key %s: want V + 55 chars with its own checksum", v)
	}

	// A user seed parsed as a service seed keeps its ed25519 key and re-encodes it as V...
	userSeed, _ := user.Seed()
	sk, err := ParseServiceSeed(string(userSeed))
	if err != nil {
		t.Fatal(err)
	}
	if sk.PublicKey() != v {
		t.Errorf("re-encoded user seed gives %s, want %s", sk.PublicKey(), v)
	}
	// The SV seed text round-trips and starts like wash's.
	again, err := ParseServiceSeed(sk.Seed())
	if err != nil || again.PublicKey() != v || !strings.HasPrefix(sk.Seed(), "SV") {
		t.Errorf("SV seed round trip: %v %v", again, err)
	}

	tests := []struct {
		name, key, want string
	}{
		{"wrong checksum", corrupt(v), "checksum"},
		{"too short", v[:55], "length 55"},
		{"account key", "A" + v[1:], `prefix "A"`},
		{"V with a foreign prefix byte", encodeKey([]byte{prefixService | 1}, raw), "prefix"},
		{"not base32", v[:55] + "1", "base32"},
		{"lowercase", strings.ToLower(v), "base32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckServiceKey(tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckServiceKey(%s) = %v, want it to mention %q", tt.key, err, tt.want)
			}
		})
	}
}
