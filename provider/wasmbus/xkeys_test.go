package wasmbus

import (
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

type testKeys struct {
	host, provider, other nkeys.KeyPair
	hostPub, providerPub  string
	providerSeed          Redacted
}

func newTestKeys(t testing.TB) testKeys {
	t.Helper()
	var k testKeys
	for _, kp := range []*nkeys.KeyPair{&k.host, &k.provider, &k.other} {
		var err error
		if *kp, err = nkeys.CreateCurveKeys(); err != nil {
			t.Fatalf("create curve keys: %v", err)
		}
	}
	var err error
	if k.hostPub, err = k.host.PublicKey(); err != nil {
		t.Fatal(err)
	}
	if k.providerPub, err = k.provider.PublicKey(); err != nil {
		t.Fatal(err)
	}
	seed, err := k.provider.Seed()
	if err != nil {
		t.Fatal(err)
	}
	k.providerSeed = Redacted(seed)
	return k
}

// sealRaw seals arbitrary plaintext as the host would, for malformed-content cases.
func sealRaw(t testing.TB, k testKeys, plain string) *[]byte {
	t.Helper()
	sealed, err := k.host.Seal([]byte(plain), k.providerPub)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return &sealed
}

func TestLinkXKeys(t *testing.T) {
	k := newTestKeys(t)
	tests := []struct {
		name          string
		hostPub       string
		providerSeed  Redacted
		wantPresent   bool
		wantErr       string
		errMustNotHas string
	}{
		{name: "both present", hostPub: k.hostPub, providerSeed: k.providerSeed, wantPresent: true},
		{name: "absent (host < 1.1)"},
		{name: "only host key", hostPub: k.hostPub},
		{name: "only provider seed", providerSeed: k.providerSeed},
		{name: "bad seed", hostPub: k.hostPub, providerSeed: "SXNOTASEEDATALL", wantErr: "provider_xkey_private_key", errMustNotHas: "SXNOTASEEDATALL"},
		{name: "user key as host key", hostPub: "UBADKEY", providerSeed: k.providerSeed, wantErr: "host_xkey_public_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd := &HostData{HostXKeyPublicKey: tt.hostPub, ProviderXKeyPrivateKey: tt.providerSeed}
			kp, pub, err := hd.LinkXKeys()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.errMustNotHas != "" && strings.Contains(err.Error(), tt.errMustNotHas) {
					t.Errorf("error leaks the seed: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kp != nil && pub != ""; got != tt.wantPresent {
				t.Fatalf("present = %v, want %v", got, tt.wantPresent)
			}
			if tt.wantPresent {
				if got, _ := kp.PublicKey(); got != k.providerPub || pub != k.hostPub {
					t.Errorf("keys = %s, %s", got, pub)
				}
			}
		})
	}
}

func TestDecryptLinkSecrets(t *testing.T) {
	k := newTestKeys(t)
	secrets := map[string]SecretValue{
		"password": StringSecret("hunter2"),
		"cert":     BytesSecret([]byte{0, 1, 2, 250}),
	}
	sealed, err := SealLinkSecrets(secrets, k.host, k.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	empty := []byte{}
	sealedByOther, err := SealLinkSecrets(secrets, k.other, k.providerPub)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		sealed    *[]byte
		provider  nkeys.KeyPair
		hostPub   string
		want      map[string]SecretValue
		wantErr   string
		notInErr  string
		wantEmpty bool
	}{
		{name: "string and bytes", sealed: sealed, provider: k.provider, hostPub: k.hostPub, want: secrets},
		{name: "nil", sealed: nil, provider: k.provider, hostPub: k.hostPub, wantEmpty: true},
		{name: "nil without keys", sealed: nil, wantEmpty: true},
		{name: "empty slice", sealed: &empty, provider: k.provider, hostPub: k.hostPub, wantEmpty: true},
		{name: "json null inside", sealed: sealRaw(t, k, "null"), provider: k.provider, hostPub: k.hostPub, wantEmpty: true},
		{name: "no keys", sealed: sealed, wantErr: "no xkeys"},
		{name: "wrong sender", sealed: sealedByOther, provider: k.provider, hostPub: k.hostPub, wantErr: "open link secrets"},
		{name: "wrong recipient", sealed: sealed, provider: k.other, hostPub: k.hostPub, wantErr: "open link secrets"},
		{name: "garbage", sealed: ptr([]byte("xkv1 definitely not a box")), provider: k.provider, hostPub: k.hostPub, wantErr: "open link secrets"},
		{name: "not JSON inside", sealed: sealRaw(t, k, "Zsecretish"), provider: k.provider, hostPub: k.hostPub, wantErr: "decode link secrets", notInErr: "Z"},
		{name: "wrong type inside", sealed: sealRaw(t, k, `{"a":{"kind":"String","value":31415926}}`), provider: k.provider, hostPub: k.hostPub, wantErr: "String", notInErr: "31415926"},
		{name: "map of numbers", sealed: sealRaw(t, k, `{"a":27182818}`), provider: k.provider, hostPub: k.hostPub, wantErr: "decode link secrets", notInErr: "27182818"},
		{name: "unknown kind", sealed: sealRaw(t, k, `{"a":{"kind":"Json","value":"x"}}`), provider: k.provider, hostPub: k.hostPub, wantErr: `"Json"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecryptLinkSecrets(tt.sealed, tt.provider, tt.hostPub)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.notInErr != "" && strings.Contains(err.Error(), tt.notInErr) {
					t.Errorf("error %q quotes the plaintext %q", err, tt.notInErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantEmpty {
				if got == nil || len(got) != 0 {
					t.Fatalf("got %#v, want an empty non-nil map", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestSealLinkSecretsEmptyIsNull(t *testing.T) {
	k := newTestKeys(t)
	sealed, err := SealLinkSecrets(map[string]SecretValue{}, k.host, k.providerPub)
	if err != nil || sealed != nil {
		t.Fatalf("SealLinkSecrets(empty) = %v, %v; want nil, nil", sealed, err)
	}
	if _, err := SealLinkSecrets(map[string]SecretValue{"x": {Kind: "Json"}}, k.host, k.providerPub); err == nil {
		t.Error("SealLinkSecrets accepted an unknown kind")
	}
}
