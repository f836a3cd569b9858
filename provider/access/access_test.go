package access

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
)

func TestNewIssuers(t *testing.T) {
	acct := testkeys.AccountKey(t)
	user := testkeys.PublicKey(t, nkeys.CreateUser)
	seedKP, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := seedKP.Seed()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		issuers     []string
		wantErr     []string // substrings of the error; nil = no error
		wantNoTrust bool
	}{
		{name: "nil trusts nobody", issuers: nil, wantNoTrust: true},
		{name: "blank entries trust nobody", issuers: []string{"", "  "}, wantNoTrust: true},
		{name: "star", issuers: []string{"*"}},
		{name: "account key", issuers: []string{acct}},
		{name: "account key with spaces", issuers: []string{" " + acct + " "}},
		{name: "short key", issuers: []string{"Axx"},
			wantErr: []string{`TRUSTED_ISSUERS: "Axx" is not an account public key (A...): `}},
		{name: "bad checksum", issuers: []string{acct[:55] + string(acct[55]^1)},
			wantErr: []string{"is not an account public key (A...)"}},
		{name: "user key", issuers: []string{acct, user},
			wantErr: []string{user, "it is a user key"}},
		{name: "seed is not echoed", issuers: []string{string(seed)},
			wantErr: []string{"secret seed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.issuers, "")
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), string(seed)) {
					t.Errorf("error echoes a seed: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.TrustsNobody() != tt.wantNoTrust {
				t.Errorf("TrustsNobody = %v, want %v", p.TrustsNobody(), tt.wantNoTrust)
			}
		})
	}
}

func TestNewRulesErrors(t *testing.T) {
	tests := []struct {
		name    string
		rules   string
		wantErr []string // substrings; nil = valid
		count   int
	}{
		{name: "empty", rules: "", count: 0},
		{name: "blank", rules: "  \n", count: 0},
		{name: "empty array", rules: "[]", count: 0},
		{name: "all fields", rules: `[{"issuer":"A*","subject":"M*","name":"web","application":"shop","project":"p-*","environment":"prod","key":"/shop/**"}]`, count: 1},
		{name: "empty object", rules: `[{}]`, count: 1},
		{name: "not JSON", rules: `application=shop`, wantErr: []string{"ACCESS_RULES", "must be a JSON array"}},
		{name: "object not array", rules: `{"application":"shop"}`, wantErr: []string{"must be a JSON array"}},
		{name: "null", rules: `null`, wantErr: []string{"must be a JSON array"}},
		{name: "element not object", rules: `[{"key":"/a"}, "shop"]`, wantErr: []string{"rule 1", "must be a JSON object"}},
		{name: "null element", rules: `[null]`, wantErr: []string{"rule 0", "must be a JSON object"}},
		{name: "unknown field", rules: `[{"key":"/a"},{"app":"shop"}]`, wantErr: []string{"rule 1", `unknown field "app"`, "application"}},
		{name: "field names are case-sensitive", rules: `[{"Key":"/a"}]`, wantErr: []string{"rule 0", `unknown field "Key"`}},
		{name: "number value", rules: `[{"key":1}]`, wantErr: []string{"rule 0", `field "key" must be a string`}},
		{name: "null value", rules: `[{"key":null}]`, wantErr: []string{"rule 0", `field "key" must be a string`}},
		{name: "bad glob", rules: `[{},{"name":"[abc"}]`, wantErr: []string{"rule 1", `field "name"`, path.ErrBadPattern.Error()}},
		{name: "bad glob before /**", rules: `[{"key":"/[x/**"}]`, wantErr: []string{"rule 0", `field "key"`, path.ErrBadPattern.Error()}},
		{name: "inner **", rules: `[{"key":"/a/**/b"}]`, wantErr: []string{"rule 0", `field "key"`, `"**" is only supported`}},
		{name: "prefix **", rules: `[{"key":"**/b"}]`, wantErr: []string{"rule 0", `"**" is only supported`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New([]string{"*"}, tt.rules)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if p.Rules() != tt.count {
					t.Fatalf("Rules = %d, want %d", p.Rules(), tt.count)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := New(nil, `[{"key":"["}]`); !errors.Is(err, path.ErrBadPattern) {
		t.Errorf("bad glob error %v does not wrap path.ErrBadPattern", err)
	}
}

func TestCheck(t *testing.T) {
	trusted, other := testkeys.AccountKey(t), testkeys.AccountKey(t)
	shopRules := `[{"application":"shop","key":"/shop/*"}, {"issuer":"` + trusted + `","name":"admin-*","key":"/admin/**"}]`
	shop := Subject{Issuer: trusted, Subject: "MABC", Name: "web", Application: "shop", Project: "p1", Environment: "prod"}
	with := func(s Subject, edit func(*Subject)) Subject {
		edit(&s)
		return s
	}
	tests := []struct {
		name    string
		issuers []string
		rules   string
		subject Subject
		wantOK  bool
		reason  string
	}{
		{name: "nobody trusted", issuers: nil, subject: shop,
			reason: "no trusted issuers configured (set TRUSTED_ISSUERS)"},
		{name: "untrusted issuer", issuers: []string{trusted}, subject: with(shop, func(s *Subject) { s.Issuer = other }),
			reason: "issuer " + other + " is not in TRUSTED_ISSUERS"},
		{name: "empty issuer", issuers: []string{trusted}, subject: with(shop, func(s *Subject) { s.Issuer = "" }),
			reason: "issuer  is not in TRUSTED_ISSUERS"},
		{name: "trusted issuer, no rules", issuers: []string{other, trusted}, subject: shop, wantOK: true, reason: "trusted issuer"},
		{name: "any issuer", issuers: []string{"*"}, subject: with(shop, func(s *Subject) { s.Issuer = other }), wantOK: true, reason: "trusted issuer"},
		{name: "rules still need a trusted issuer", issuers: []string{trusted}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Issuer = other; s.Key = "/shop/A" }),
			reason:  "issuer " + other + " is not in TRUSTED_ISSUERS"},
		{name: "shop reads its own key", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Key = "/shop/A" }), wantOK: true, reason: "allowed by rule 0"},
		{name: "shop denied another app's key", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Key = "/other/X" }), reason: "no access rule matches"},
		{name: "* does not cross /", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Key = "/shop/a/b" }), reason: "no access rule matches"},
		{name: "climbing out of the prefix", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Key = "/shop/../other/X" }), reason: "no access rule matches"},
		{name: "dot segment", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Key = "/shop/./A" }), reason: "no access rule matches"},
		{name: "other application", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Application = "blog"; s.Key = "/shop/A" }), reason: "no access rule matches"},
		{name: "no application", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Application = ""; s.Key = "/shop/A" }), reason: "no access rule matches"},
		{name: "/** reaches any depth", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Name = "admin-cli"; s.Key = "/admin/db/deep/PASSWORD" }), wantOK: true, reason: "allowed by rule 1"},
		{name: "/** needs something below", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Name = "admin-cli"; s.Key = "/admin" }), reason: "no access rule matches"},
		{name: "/** is not a string prefix", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Name = "admin-cli"; s.Key = "/administrator/X" }), reason: "no access rule matches"},
		{name: "/** with climbing key", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Name = "admin-cli"; s.Key = "/admin/../shop/A" }), reason: "no access rule matches"},
		{name: "rule issuer field", issuers: []string{"*"}, rules: shopRules,
			subject: with(shop, func(s *Subject) { s.Issuer = other; s.Name = "admin-cli"; s.Key = "/admin/X" }), reason: "no access rule matches"},
		{name: "first matching rule named", issuers: []string{"*"}, rules: `[{"key":"/x"},{"environment":"dev"},{}]`,
			subject: with(shop, func(s *Subject) { s.Environment = "dev"; s.Key = "/y" }), wantOK: true, reason: "allowed by rule 1"},
		{name: "empty rule matches everything", issuers: []string{"*"}, rules: `[{}]`,
			subject: with(shop, func(s *Subject) { s.Key = "/shop/../x" }), wantOK: true, reason: "allowed by rule 0"},
		{name: "whole-value **", issuers: []string{"*"}, rules: `[{"project":"p1","key":"**"}]`,
			subject: with(shop, func(s *Subject) { s.Key = "/a/b/c" }), wantOK: true, reason: "allowed by rule 0"},
		{name: "project and environment", issuers: []string{"*"}, rules: `[{"project":"p1","environment":"prod"}]`,
			subject: with(shop, func(s *Subject) { s.Environment = "staging" }), reason: "no access rule matches"},
		{name: "subject and name globs", issuers: []string{"*"}, rules: `[{"subject":"MA?C","name":"w*"}]`,
			subject: shop, wantOK: true, reason: "allowed by rule 0"},
		{name: "relative key", issuers: []string{"*"}, rules: `[{"key":"API_*"}]`,
			subject: with(shop, func(s *Subject) { s.Key = "API_KEY" }), wantOK: true, reason: "allowed by rule 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.issuers, tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			ok, reason := p.Check(tt.subject)
			if ok != tt.wantOK || reason != tt.reason {
				t.Fatalf("Check = (%v, %q), want (%v, %q)", ok, reason, tt.wantOK, tt.reason)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name, pattern, value string
		want                 bool
	}{
		{"literal", "/a/b", "/a/b", true},
		{"star one level", "/a/*", "/a/b", true},
		{"star stops at slash", "/a/*", "/a/b/c", false},
		{"deep", "/a/**", "/a/b/c", true},
		{"deep one level", "/a/**", "/a/b", true},
		{"deep not the prefix itself", "/a/**", "/a", false},
		{"deep not with trailing slash only", "/a/**", "/a/", false},
		{"deep glob prefix", "/*/x/**", "/q/x/y/z", true},
		{"deep glob prefix mismatch", "/*/x/**", "/q/y/x/z", false},
		{"root deep", "/**", "/anything/at/all", true},
		{"root deep needs a slash", "/**", "relative", false},
		{"everything", "**", "", true},
		{"empty matches empty only", "", "", true},
		{"empty does not match text", "", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkPattern(tt.pattern); err != nil {
				t.Fatal(err)
			}
			if got := match(tt.pattern, tt.value); got != tt.want {
				t.Fatalf("match(%q, %q) = %v, want %v", tt.pattern, tt.value, got, tt.want)
			}
		})
	}
}

func FuzzNewRules(f *testing.F) {
	for _, seed := range []string{
		"", "[]", "[{}]", "null", `{"a":1}`, `[{"key":"/shop/*"}]`, `[{"key":"/a/**"}]`, `[{"key":"[" }]`,
		`[{"name":"\\"}]`, `[{"application":"shop","key":"**"}]`, `[{"unknown":"x"}]`, `[1,2]`, `[{"key":{"x":1}}]`,
	} {
		f.Add(seed, "/shop/a")
	}
	f.Fuzz(func(t *testing.T, rules, key string) {
		p, err := New([]string{"*"}, rules)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		ok, reason := p.Check(Subject{Issuer: "A", Application: "shop", Key: key})
		if reason == "" {
			t.Fatalf("Check = (%v, %q): no reason", ok, reason)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	p, err := New([]string{testkeys.AccountKey(b)}, `[{"application":"blog","key":"/blog/*"},{"application":"shop","key":"/shop/**"}]`)
	if err != nil {
		b.Fatal(err)
	}
	s := Subject{Application: "shop", Key: "/shop/db/PASSWORD"}
	for k := range p.issuers {
		s.Issuer = k
	}
	for b.Loop() {
		if ok, _ := p.Check(s); !ok {
			b.Fatal("denied")
		}
	}
}
