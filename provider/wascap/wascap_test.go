package wascap

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// Real tokens from wasmCloud tooling (see /work/shared/spec/wascap-test-vectors.md).
const (
	realComponentJWT = "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.eyJqdGkiOiJxdmVOakZjcW51dWhQaVJUMkU1YWJXIiwiaWF0IjoxNzIxODM0ODg5LCJpc3MiOiJBQk9HQjRXNURPWDNVTzNSVldXUUdZU01WWEhSUFFZWFZaUDVVNFZGTUpEQ1lDV0FSN1M1Q1lNTyIsInN1YiI6Ik1DNUNDNFVENUxQRFo0QzdaTkFFQTRPWlEzQkVGTFNWUTc0MlczVEVUM09OS1M0RFJCVk5NNUlDIiwid2FzY2FwIjp7Im5hbWUiOiJodHRwLWhlbGxvLXdvcmxkIiwiaGFzaCI6IkNFOTAxOTJDOTlDMEIyQzYwOEIyRTJDQjYxOUE5MjUxRkI2ODE4NTZDMTU2ODFCMUJDRDYyRUVEQTJENTEyOEUiLCJ0YWdzIjpbIndhc21jbG91ZC5jb20vZXhwZXJpbWVudGFsIl0sInJldiI6MCwidmVyIjoiMC4xLjAiLCJwcm92IjpmYWxzZX0sIndhc2NhcF9yZXZpc2lvbiI6M30.8awbkvrBnRKLpz88s7GXYCW0onpKf_nNfsj7pXhCyvq8pm4y2IotrIPCdBvWqDvDouX4VAM6DQQUHuI-VdKYAA"
	realHostJWT      = "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.eyJqdGkiOiJuTGdta2Zud2p2Nkw1R28xSlNUdU0zIiwiaWF0IjoxNzIyMDE5OTk1LCJpc3MiOiJBQzNGU0IzT0VSQ1IzVU00WVNWUjJUQURFVlFWUTNITVpQQUtHS082QkNRSTRSNEFITFY2SVhSMiIsInN1YiI6Ik5ETlBUM0QzWVNUQzVKR0g2QVBKUDZBTVZYUVk2QklETVVXWkdTU1FXMjZWSjNINFBDRjJTU0ZSIiwid2FzY2FwIjp7Im5hbWUiOiJkZWxpY2F0ZS1icmVlemUtOTc4NSIsImxhYmVscyI6eyJzZWxmX3NpZ25lZCI6InRydWUifX0sIndhc2NhcF9yZXZpc2lvbiI6M30.5LM_GOpo-6qg0kDrIP_jswI_ZQfOILzHT-FHixvUeAf-1isamLg81S-rb84w6topfvevI6quyV3b-uHZt6q9BQ"
	realOldJWT       = "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.eyJqdGkiOiJTakI1Zm05NzRTanU5V01nVFVjaHNiIiwiaWF0IjoxNjQ0ODQzNzQzLCJpc3MiOiJBQ09KSk42V1VQNE9ERDc1WEVCS0tUQ0NVSkpDWTVaS1E1NlhWS1lLNEJFSldHVkFPT1FIWk1DVyIsInN1YiI6Ik1CQ0ZPUE02SlcyQVBKTFhKRDNaNU80Q043Q1BZSjJCNEZUS0xKVVI1WVI1TUlUSVU3SEQzV0Q1Iiwid2FzY2FwIjp7Im5hbWUiOiJFY2hvIiwiaGFzaCI6IjRDRUM2NzNBN0RDQ0VBNkE0MTY1QkIxOTU4MzJDNzkzNjQ3MUNGN0FCNDUwMUY4MzdGOEQ2NzlGNDQwMEJDOTciLCJ0YWdzIjpbXSwiY2FwcyI6WyJ3YXNtY2xvdWQ6aHR0cHNlcnZlciJdLCJyZXYiOjQsInZlciI6IjAuMy40IiwicHJvdiI6ZmFsc2V9fQ.ZWyD6VQqzaYM1beD2x9Fdw4o_Bavy3ZG703Eg4cjhyJwUKLDUiVPVhqHFE6IXdV4cW6j93YbMT6VGq5iBDWmAg"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestRealVectors(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		host     bool
		kind     Kind
		jti      string
		iat      int64
		issuer   string
		subject  string
		fullName string
		revision int
	}{
		{"component rev 3", realComponentJWT, false, KindComponent, "qveNjFcqnuuhPiRT2E5abW", 1721834889,
			"ABOGB4W5DOX3UO3RVWWQGYSMVXHRPQYXVZP5U4VFMJDCYCWAR7S5CYMO", "MC5CC4UD5LPDZ4C7ZNAEA4OZQ3BEFLSVQ742W3TET3ONKS4DRBVNM5IC", "http-hello-world", 3},
		{"host", realHostJWT, true, KindHost, "nLgmkfnwjv6L5Go1JSTuM3", 1722019995,
			"AC3FSB3OERCR3UM4YSVR2TADEVQVQ3HMZPAKGKO6BCQI4R4AHLV6IXR2", "NDNPT3D3YSTC5JGH6APJP6AMVXQY6BIDMUWZGSSQW26VJ3H4PCF2SSFR", "delicate-breeze-9785", 3},
		{"old component without revision", realOldJWT, false, KindComponent, "SjB5fm974Sju9WMgTUchsb", 1644843743,
			"ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW", "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5", "Echo", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := ParseEntity
			if tt.host {
				parse = ParseHost
			}
			c, err := parse(tt.token, testNow)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if c.Kind != tt.kind || c.JTI != tt.jti || c.IssuedAt != tt.iat || c.Issuer != tt.issuer ||
				c.Subject != tt.subject || c.Name != tt.fullName || c.Revision != tt.revision {
				t.Errorf("claims = %+v", c)
			}
			if c.Expires != 0 || c.NotBefore != 0 {
				t.Errorf("exp/nbf = %d/%d, want absent", c.Expires, c.NotBefore)
			}
			if !json.Valid(c.Metadata) || !strings.Contains(string(c.Metadata), tt.fullName) {
				t.Errorf("metadata = %s", c.Metadata)
			}
			if !tt.host {
				if err := CheckPublicKey(c.Subject, PrefixModule); err != nil {
					t.Errorf("real M subject rejected: %v", err)
				}
			}
		})
	}
}

func TestPaddingTolerated(t *testing.T) {
	segs := strings.Split(realComponentJWT, ".")
	if _, err := ParseEntity(segs[0]+"."+segs[1]+"."+segs[2]+"==", testNow); err != nil {
		t.Fatalf("padded signature rejected: %v", err)
	}
	// A JOSE library that pads signs the padded segments.
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	enc := base64.URLEncoding.EncodeToString
	sub := newKey(t, PrefixModule)
	var signed string
	for pad := ""; !strings.Contains(signed, "="); pad += "x" { // a claims length whose encoding needs padding
		signed = enc([]byte(`{"typ":"jwt","alg":"Ed25519"}`)) + "." +
			enc([]byte(`{"jti":"j","iat":1,"iss":"`+iss+`","sub":"`+sub+`","pad":"`+pad+`","wascap":{"hash":"A"}}`))
	}
	sig, _ := acct.Sign([]byte(signed))
	if _, err := ParseEntity(signed+"."+enc(sig), testNow); err != nil {
		t.Fatalf("padded token rejected: %v", err)
	}
}

func newAccount(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return kp
}

func newKey(t *testing.T, prefix byte) string {
	t.Helper()
	k, err := NewPublicKey(prefix)
	if err != nil {
		t.Fatalf("new key: %v", err)
	}
	return k
}

func TestMintRoundTrip(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	m, v := newKey(t, PrefixModule), newKey(t, PrefixService)
	server, _ := nkeys.CreateServer()
	n, _ := server.PublicKey()

	comp, err := MintComponent(acct, m, "counter", testNow)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := MintProvider(acct, v, "kv-redis", "wasmcloud", map[string]string{"x86_64-linux": "ABC"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	host, err := MintHost(acct, n, "quiet-sea-1", testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		host    bool
		kind    Kind
		subject string
		cname   string
	}{
		{"component", comp, false, KindComponent, m, "counter"},
		{"provider", prov, false, KindProvider, v, "kv-redis"},
		{"host", host, true, KindHost, n, "quiet-sea-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.HasPrefix(tt.token, "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.") {
				t.Errorf("header segment differs from wascap's: %s", strings.Split(tt.token, ".")[0])
			}
			parse := ParseEntity
			if tt.host {
				parse = ParseHost
			}
			c, err := parse(tt.token, testNow)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if c.Kind != tt.kind || c.Subject != tt.subject || c.Issuer != iss || c.Name != tt.cname ||
				c.Revision != Revision || c.IssuedAt != testNow.Unix() || len(c.JTI) != 22 {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}

// signRaw signs arbitrary header and claims JSON, for tokens Sign would never produce.
func signRaw(t *testing.T, kp nkeys.KeyPair, hdr, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	signed := enc([]byte(hdr)) + "." + enc([]byte(claims))
	sig, err := kp.Sign([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + enc(sig)
}

func TestParseErrors(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	sub := newKey(t, PrefixModule)
	good, err := MintComponent(acct, sub, "c", testNow)
	if err != nil {
		t.Fatal(err)
	}
	segs := strings.Split(good, ".")
	claims := func(extra string) map[string]any {
		m := map[string]any{"jti": "j", "iat": testNow.Unix(), "iss": iss, "sub": sub, "wascap": map[string]any{"hash": "AB"}}
		if extra != "" {
			var e map[string]any
			if err := json.Unmarshal([]byte(extra), &e); err != nil {
				t.Fatal(err)
			}
			for k, v := range e {
				if v == nil {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
		}
		return m
	}
	sign := func(extra string) string {
		tok, err := Sign(claims(extra), acct)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tamperedSig := []byte(segs[2])
	tamperedSig[5] = 'A'
	if segs[2][5] == 'A' {
		tamperedSig[5] = 'B'
	}
	if tamperedSig[5] == segs[2][5] {
		t.Fatal("tamper failed")
	}
	other := newAccount(t)
	stolen, _ := MintComponent(other, sub, "c", testNow)

	tests := []struct {
		name  string
		token string
		want  error
		msg   string
	}{
		{"tampered signature", segs[0] + "." + segs[1] + "." + string(tamperedSig), ErrSignature, "signature is not valid"},
		{"tampered claims", segs[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"j","iat":1,"iss":"`+iss+`","sub":"`+sub+`","wascap":{"hash":"FF"}}`)) + "." + segs[2], ErrSignature, "signature is not valid"},
		{"signed by another key than iss", strings.Split(stolen, ".")[0] + "." + segs[1] + "." + strings.Split(stolen, ".")[2], ErrSignature, ""},
		{"wrong alg", signRaw(t, acct, `{"typ":"jwt","alg":"EdDSA"}`, `{"jti":"j","iat":1,"iss":"`+iss+`","sub":"s","wascap":{"hash":"A"}}`), ErrAlgorithm, "Invalid JWT algorithm. WASCAP only supports Ed25519"},
		{"wrong typ", signRaw(t, acct, `{"typ":"JWS","alg":"Ed25519"}`, `{"jti":"j","iat":1,"iss":"`+iss+`","sub":"s","wascap":{"hash":"A"}}`), ErrHeader, ""},
		{"two segments", segs[0] + "." + segs[1], ErrFormat, "invalid token format, expected 3 segments, found 2"},
		{"four segments", good + ".x", ErrFormat, "found 4"},
		{"empty", "", ErrFormat, "found 1"},
		{"expired", sign(`{"exp":` + itoa(testNow.Unix()-1) + `}`), ErrExpired, "token expired at 2025-06-01T11:59:59Z"},
		{"nbf in future", sign(`{"nbf":` + itoa(testNow.Add(time.Hour).Unix()) + `}`), ErrNotYetValid, "token cannot be used before 2025-06-01T13:00:00Z"},
		{"missing hash", sign(`{"wascap":{"name":"x"}}`), ErrNotEntity, "missing field `hash`"},
		{"no wascap", sign(`{"wascap":null}`), ErrNotEntity, ""},
		{"provider without target_hashes", sign(`{"wascap":{"vendor":"v"}}`), ErrNotEntity, ""},
		{"missing jti", sign(`{"jti":null}`), ErrClaims, "`jti`"},
		{"missing iat", sign(`{"iat":null}`), ErrClaims, "`iat`"},
		{"empty iss", sign(`{"iss":""}`), ErrClaims, "issuer"},
		{"empty sub", sign(`{"sub":""}`), ErrClaims, "subject"},
		{"iss not an nkey", sign(`{"iss":"ANOTAKEY"}`), ErrIssuer, ""},
		{"hash wrong type", sign(`{"wascap":{"hash":5}}`), ErrClaims, ""},
		{"oversized", segs[0] + "." + strings.Repeat("A", MaxTokenSize) + "." + segs[2], ErrTooLarge, "16384"},
		{"garbage", "not a jwt at all", ErrFormat, ""},
		{"garbage segments", "!!.??.##", ErrEncoding, ""},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("[1]")) + "." + segs[1] + "." + segs[2], ErrHeader, ""},
		{"claims not object", segs[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`"x"`)) + "." + segs[2], ErrClaims, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseEntity(tt.token, testNow)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v (claims %+v), want %v", err, c, tt.want)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestTimes(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	sub := newKey(t, PrefixModule)
	tests := []struct {
		name string
		exp  int64
		nbf  int64
		want error
	}{
		{"exp now is still valid", testNow.Unix(), 0, nil},
		{"exp future", testNow.Unix() + 60, 0, nil},
		{"exp past", testNow.Unix() - 1, 0, ErrExpired},
		{"nbf past", 0, testNow.Unix() - 60, nil},
		{"nbf within skew leeway", 0, testNow.Add(NotBeforeLeeway).Unix(), nil},
		{"nbf beyond leeway", 0, testNow.Add(NotBeforeLeeway).Unix() + 1, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := map[string]any{"jti": "j", "iat": testNow.Unix(), "iss": iss, "sub": sub, "wascap": map[string]any{"hash": "AB"}}
			if tt.exp != 0 {
				c["exp"] = tt.exp
			}
			if tt.nbf != 0 {
				c["nbf"] = tt.nbf
			}
			tok, err := Sign(c, acct)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseEntity(tok, testNow)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (got.Expires != tt.exp || got.NotBefore != tt.nbf) {
				t.Errorf("exp/nbf = %d/%d, want %d/%d", got.Expires, got.NotBefore, tt.exp, tt.nbf)
			}
		})
	}
}

func TestHostRejectsBadMetadata(t *testing.T) {
	acct := newAccount(t)
	iss, _ := acct.PublicKey()
	tok, err := Sign(map[string]any{"jti": "j", "iat": 1, "iss": iss, "sub": "N", "wascap": map[string]any{"labels": []int{1}}}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseHost(tok, testNow); !errors.Is(err, ErrClaims) {
		t.Fatalf("err = %v, want ErrClaims", err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestPublicKeyEncoding(t *testing.T) {
	zero := make([]byte, 32)
	tests := []struct {
		name   string
		prefix byte
		first  byte
	}{
		{"module", PrefixModule, 'M'},
		{"service", PrefixService, 'V'},
		{"account matches nkeys", byte(nkeys.PrefixByteAccount), 'A'},
		{"server matches nkeys", byte(nkeys.PrefixByteServer), 'N'},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewPublicKey(tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(k) != PublicKeyLength || k[0] != tt.first {
				t.Fatalf("key %q", k)
			}
			if err := CheckPublicKey(k, tt.prefix); err != nil {
				t.Fatalf("round trip: %v", err)
			}
			// Cross-check the hand-made encoding against nkeys for the prefixes nkeys supports.
			if tt.first == 'A' || tt.first == 'N' {
				ours, _ := EncodePublicKey(tt.prefix, zero)
				theirs, err := nkeys.Encode(nkeys.PrefixByte(tt.prefix), zero)
				if err != nil || ours != string(theirs) {
					t.Errorf("ours %s, nkeys %s (%v)", ours, theirs, err)
				}
			}
		})
	}
}

func TestCheckPublicKeyRejects(t *testing.T) {
	m := "MC5CC4UD5LPDZ4C7ZNAEA4OZQ3BEFLSVQ742W3TET3ONKS4DRBVNM5IC"
	flip := []byte(m)
	flip[10] = 'A'
	if flip[10] == m[10] {
		flip[10] = 'B'
	}
	tests := []struct {
		name   string
		key    string
		prefix byte
	}{
		{"checksum", string(flip), PrefixModule},
		{"wrong prefix", m, PrefixService},
		{"short", m[:55], PrefixModule},
		{"not base32", strings.Replace(m, "C", "1", 1), PrefixModule},
		{"empty", "", PrefixModule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckPublicKey(tt.key, tt.prefix); !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("err = %v, want ErrInvalidPublicKey", err)
			}
		})
	}
	if err := CheckPublicKey(m, PrefixModule); err != nil {
		t.Fatalf("valid key rejected: %v", err)
	}
	if _, err := EncodePublicKey(PrefixModule, make([]byte, 31)); err == nil {
		t.Error("31-byte key encoded")
	}
	if _, err := EncodePublicKey(3, make([]byte, 32)); err == nil {
		t.Error("unaligned prefix encoded")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindComponent: "component", KindProvider: "provider", KindHost: "host", 0: "Kind(0)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

func FuzzParseEntity(f *testing.F) {
	f.Add(realComponentJWT)
	f.Add(realHostJWT)
	f.Add(realOldJWT)
	f.Add("a.b.c")
	f.Add("eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseEntity(tok, testNow)
		if (c == nil) == (err == nil) {
			t.Fatalf("claims %v with err %v", c, err)
		}
		if h, err := ParseHost(tok, testNow); (h == nil) == (err == nil) {
			t.Fatalf("host claims %v with err %v", h, err)
		}
	})
}

// An entity's subject is the key wash signed it for: a module key (M...) for a component, a service key (V...) for
// a provider. Anything else is refused as a malformed entity token (the server answers InvalidEntityJWT).
func TestEntitySubjectMustBeItsKindOfKey(t *testing.T) {
	acct := newAccount(t)
	account, _ := acct.PublicKey()
	m, v := newKey(t, PrefixModule), newKey(t, PrefixService)
	flip := map[bool]string{true: "B", false: "A"}[m[len(m)-1] == 'A']
	badSum := m[:len(m)-1] + flip // another last character: the checksum no longer matches
	hashes := map[string]string{"x86_64-linux": "ABC"}
	tests := []struct {
		name     string
		provider bool
		subject  string
		ok       bool
	}{
		{name: "component with a module key", subject: m, ok: true},
		{name: "provider with a service key", provider: true, subject: v, ok: true},
		{name: "component with an account key", subject: account},
		{name: "component with a service key", subject: v},
		{name: "provider with a module key", provider: true, subject: m},
		{name: "component with a made-up subject", subject: "MSUBJECT"},
		{name: "component with a bad checksum", subject: badSum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tok string
			var err error
			if tt.provider {
				tok, err = MintProvider(acct, tt.subject, "p", "vendor", hashes, testNow)
			} else {
				tok, err = MintComponent(acct, tt.subject, "c", testNow)
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseEntity(tok, testNow)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseEntity: %v; want ok=%v", err, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrSubject) || !strings.Contains(err.Error(), "subject")) {
				t.Fatalf("error %v does not say the subject is wrong", err)
			}
		})
	}
}
