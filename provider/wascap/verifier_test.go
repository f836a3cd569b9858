package wascap

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// signedEntity signs a component token with optional exp and nbf (0 = absent).
func signedEntity(t *testing.T, exp, nbf int64) string {
	t.Helper()
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	c := map[string]any{"jti": "j", "iat": testNow.Unix(), "iss": iss, "sub": newKey(t, PrefixModule),
		"wascap": map[string]any{"hash": "AB", "name": "echo"}}
	if exp != 0 {
		c["exp"] = exp
	}
	if nbf != 0 {
		c["nbf"] = nbf
	}
	tok, err := Sign(c, acct)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A remembered token answers exactly as a full parse does, with claims of its own.
func TestVerifierRemembersAndAnswersAsParse(t *testing.T) {
	v := NewVerifier(8)
	for _, tc := range []struct {
		name  string
		tok   string
		parse func(string, time.Time) (*Claims, error)
		via   func(string, time.Time) (*Claims, error)
	}{
		{"entity", realComponentJWT, ParseEntity, v.ParseEntity},
		{"host", realHostJWT, ParseHost, v.ParseHost},
	} {
		want, err := tc.parse(tc.tok, testNow)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			got, err := tc.via(tc.tok, testNow)
			if err != nil {
				t.Fatalf("%s call %d: %v", tc.name, i, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s call %d: claims %+v, want %+v", tc.name, i, got, want)
			}
			got.Subject = "changed by the caller"
		}
	}
	if v.Len() != 2 {
		t.Fatalf("remembered %d tokens, want 2", v.Len())
	}
}

// A remembered token's expiry and not-before are checked on every use, with the full parse's errors, and an
// expired token is forgotten.
func TestVerifierChecksTimesOnEveryUse(t *testing.T) {
	v := NewVerifier(8)
	expiring := signedEntity(t, testNow.Unix()+60, 0)
	if _, err := v.ParseEntity(expiring, testNow); err != nil {
		t.Fatal(err)
	}
	later := testNow.Add(2 * time.Minute)
	_, want := ParseEntity(expiring, later)
	_, err := v.ParseEntity(expiring, later)
	if !errors.Is(err, ErrExpired) || err.Error() != want.Error() {
		t.Fatalf("expired remembered token: err = %v, want %v", err, want)
	}
	if v.Len() != 0 {
		t.Fatalf("an expired token is still remembered (%d)", v.Len())
	}

	notBefore := testNow.Unix() - 10
	early := signedEntity(t, 0, notBefore)
	if _, err := v.ParseEntity(early, testNow); err != nil {
		t.Fatal(err)
	}
	before := time.Unix(notBefore, 0).Add(-NotBeforeLeeway - 5*time.Second)
	if _, err := v.ParseEntity(early, before); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("remembered token used before its nbf: err = %v, want %v", err, ErrNotYetValid)
	}
}

// Failures are never remembered, and a token remembered as a host is not taken for an entity (nor the reverse).
func TestVerifierRemembersOnlySuccessPerKind(t *testing.T) {
	v := NewVerifier(8)
	tampered := realComponentJWT[:len(realComponentJWT)-4] + "AAAA"
	for range 2 {
		if _, err := v.ParseEntity(tampered, testNow); !errors.Is(err, ErrSignature) {
			t.Fatalf("tampered token: err = %v, want %v", err, ErrSignature)
		}
	}
	if v.Len() != 0 {
		t.Fatalf("a failed token was remembered")
	}
	if _, err := v.ParseHost(realHostJWT, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ParseEntity(realHostJWT, testNow); !errors.Is(err, ErrNotEntity) {
		t.Fatalf("host token remembered as a host, asked as an entity: err = %v, want %v", err, ErrNotEntity)
	}
	host, err := v.ParseHost(realComponentJWT, testNow)
	if err != nil {
		t.Fatal(err) // ParseHost accepts any wascap token's metadata shape only if it fits hostMeta
	}
	if host.Kind != KindHost {
		t.Fatalf("kind %v, want host", host.Kind)
	}
	entity, err := v.ParseEntity(realComponentJWT, testNow)
	if err != nil || entity.Kind != KindComponent {
		t.Fatalf("component remembered as a host answers as %v, %v; want a component", entity, err)
	}
}

// The memory is bounded: in entries, and in the size of a token it keeps; with no room it verifies every time.
func TestVerifierBounds(t *testing.T) {
	v := NewVerifier(2)
	for range 5 {
		if _, err := v.ParseEntity(signedEntity(t, 0, 0), testNow); err != nil {
			t.Fatal(err)
		}
	}
	if v.Len() != 2 {
		t.Fatalf("remembered %d tokens, want the bound 2", v.Len())
	}

	big := NewVerifier(8)
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	long, err := Sign(map[string]any{"jti": "j", "iat": testNow.Unix(), "iss": iss, "sub": newKey(t, PrefixModule),
		"wascap": map[string]any{"hash": "AB", "name": strings.Repeat("n", MaxRememberedToken)}}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := big.ParseEntity(long, testNow); err != nil {
		t.Fatal(err)
	}
	if big.Len() != 0 {
		t.Fatalf("a token over %d bytes was remembered", MaxRememberedToken)
	}

	off := NewVerifier(0)
	if _, err := off.ParseEntity(realComponentJWT, testNow); err != nil {
		t.Fatal(err)
	}
	if off.Len() != 0 {
		t.Fatalf("a verifier without room remembered a token")
	}
}
