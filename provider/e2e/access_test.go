package e2e

import (
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func TestTrustedIssuers(t *testing.T) {
	other := hostsim.NewIssuer()
	otherComp, err := hostsim.Component(other, "intruder")
	if err != nil {
		t.Fatal(err)
	}
	otherProv, err := hostsim.Provider(other, "some-provider")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		trusted *string // nil: unset
		as      func(h *harness) *hostsim.Entity
		allowed bool
	}{
		{name: "unset trusts nobody", trusted: nil, as: func(h *harness) *hostsim.Entity { return h.comp }},
		{name: "trusted issuer served", trusted: ptr("self"), as: func(h *harness) *hostsim.Entity { return h.comp }, allowed: true},
		{name: "other issuer refused", trusted: ptr("self"), as: func(*harness) *hostsim.Entity { return otherComp }},
		{name: "star trusts any component", trusted: ptr("*"), as: func(*harness) *hostsim.Entity { return otherComp }, allowed: true},
		{name: "star trusts any provider", trusted: ptr("*"), as: func(*harness) *hostsim.Entity { return otherProv }, allowed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			switch {
			case tt.trusted == nil:
				delete(h.env, "TRUSTED_ISSUERS")
			case *tt.trusted == "self":
				h.env["TRUSTED_ISSUERS"] = h.comp.IssuerKey()
			default:
				h.env["TRUSTED_ISSUERS"] = *tt.trusted
			}
			h.start()
			_, err := h.fetchAs(tt.as(h), hostsim.Ref{Key: "DB_PASSWORD"})
			if tt.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantKind(t, err, secrets.KindUnauthorized)
			if h.fake.Reads() != 0 {
				t.Fatal("a refused request still read Infisical")
			}
			if !strings.Contains(h.logs.String(), "access denied") {
				t.Fatalf("denial not logged:\n%s", h.logs.String())
			}
		})
	}
	t.Run("unset logs an error at start", func(t *testing.T) {
		h := newHarness(t)
		delete(h.env, "TRUSTED_ISSUERS")
		h.start()
		if !strings.Contains(h.logs.String(), "TRUSTED_ISSUERS") || !strings.Contains(h.logs.String(), "level=ERROR") {
			t.Fatalf("no start-up ERROR about TRUSTED_ISSUERS:\n%s", h.logs.String())
		}
	})
	t.Run("invalid issuer stops start-up", func(t *testing.T) {
		h := newHarness(t)
		h.env["TRUSTED_ISSUERS"] = "ANOTAKEY"
		code, _, errOut := runCommand(t, h.env, "serve")
		if code == 0 || !strings.Contains(errOut, "ANOTAKEY") {
			t.Fatalf("exit %d, output:\n%s", code, errOut)
		}
	})
}

func ptr(s string) *string { return &s }

func TestAccessRules(t *testing.T) {
	h := newHarness(t)
	h.env["ACCESS_RULES"] = `[{"application":"shop","key":"/shop/*"}]`
	h.start()
	tests := []struct {
		name    string
		ref     hostsim.Ref
		allowed bool
	}{
		{name: "shop reads its folder", ref: hostsim.Ref{Key: "/shop/TOKEN", Application: "shop"}, allowed: true},
		{name: "shop reads relative to a policy base", ref: hostsim.Ref{Key: "TOKEN", Application: "shop",
			Properties: map[string]string{"secret_path": "/shop"}}, allowed: true},
		{name: "shop cannot read another folder", ref: hostsim.Ref{Key: "/other/TOKEN", Application: "shop"}},
		{name: "shop cannot climb out with ..", ref: hostsim.Ref{Key: "/shop/../other/TOKEN", Application: "shop"}},
		{name: "shop cannot climb out of a relative base", ref: hostsim.Ref{Key: "../other/TOKEN", Application: "shop",
			Properties: map[string]string{"secret_path": "/shop"}}},
		{name: "other application refused", ref: hostsim.Ref{Key: "/shop/TOKEN", Application: "billing"}},
		{name: "no application refused", ref: hostsim.Ref{Key: "/shop/TOKEN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := h.fetch(tt.ref)
			if tt.allowed {
				if err != nil || s.StringSecret == nil || *s.StringSecret != "shop-token" {
					t.Fatalf("fetch = %+v, %v; want shop-token", s, err)
				}
				return
			}
			wantKind(t, err, secrets.KindUnauthorized)
		})
	}
	if strings.Contains(h.logs.String(), "other-token") {
		t.Fatal("a denied value reached the logs")
	}
}

func TestBadAccessRulesStopStartup(t *testing.T) {
	h := newHarness(t)
	h.env["ACCESS_RULES"] = `[{"application":"shop"},{"keys":"/x/*"}]`
	code, _, errOut := runCommand(t, h.env, "serve")
	if code == 0 || !strings.Contains(errOut, "keys") {
		t.Fatalf("exit %d; the error must name the unknown field:\n%s", code, errOut)
	}
}

func TestPolicyPropertiesChangeWhatInfisicalIsAsked(t *testing.T) {
	h := newHarness(t)
	h.fake.AddIdentity("unused", "unused", "proj-2")
	h.fake.Grant(clientID, "proj-2")
	h.fake.SetSecret("proj-2", "staging", "/base", "K", "from-proj-2")
	h.fake.SetSecret(project, "prod", "/", "REF", "x-${DB_PASSWORD}")
	h.env["CACHE_TTL"] = "0"
	h.start()
	tests := []struct {
		name      string
		ref       hostsim.Ref
		want      string
		wantQuery map[string]string
	}{
		{name: "project, environment and base path", ref: hostsim.Ref{Key: "K", Properties: map[string]string{
			"project_id": "proj-2", "environment": "staging", "secret_path": "/base"}},
			want: "from-proj-2", wantQuery: map[string]string{"workspaceId": "proj-2", "environment": "staging", "secretPath": "/base"}},
		{name: "environment only", ref: hostsim.Ref{Key: "DB_PASSWORD", Properties: map[string]string{"environment": "dev"}},
			want: "dev-password", wantQuery: map[string]string{"environment": "dev"}},
		// The backend expands references itself (each one read raw and checked against the rules): the last read
		// is the referenced secret's, and Infisical is never asked to expand.
		{name: "expand references", ref: hostsim.Ref{Key: "REF", Properties: map[string]string{"expand_references": "true"}},
			want: "x-v2-password", wantQuery: map[string]string{"expandSecretReferences": "false", "environment": "prod"}},
		{name: "no expansion by default", ref: hostsim.Ref{Key: "REF"},
			want: "x-${DB_PASSWORD}", wantQuery: map[string]string{"expandSecretReferences": "false", "include_imports": "false"}},
		{name: "include imports", ref: hostsim.Ref{Key: "DB_PASSWORD", Properties: map[string]string{"include_imports": "true"}},
			want: "v2-password", wantQuery: map[string]string{"include_imports": "true"}},
		{name: "unknown property ignored", ref: hostsim.Ref{Key: "DB_PASSWORD", Properties: map[string]string{"role_name": "x"}},
			want: "v2-password", wantQuery: map[string]string{"workspaceId": project}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.mustString(tt.ref); got != tt.want {
				t.Fatalf("value = %q; want %q", got, tt.want)
			}
			reqs := h.fake.Requests()
			last := reqs[len(reqs)-1]
			for k, v := range tt.wantQuery {
				if got := last.Query.Get(k); got != v {
					t.Errorf("Infisical was asked %s=%q; want %q (query %v)", k, got, v, last.Query)
				}
			}
		})
	}
	t.Run("bad property value", func(t *testing.T) {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Properties: map[string]string{"include_imports": "maybe"}})
		werr := wantKind(t, err, secrets.KindPolicyError)
		if !strings.Contains(werr.Message, "include_imports") {
			t.Fatalf("PolicyError does not name the property: %q", werr.Message)
		}
	})
}

func TestFieldVersionAndBinary(t *testing.T) {
	h := newHarness(t)
	h.start()
	t.Run("field string", func(t *testing.T) {
		if got := h.mustString(hostsim.Ref{Key: "JSON", Field: "password"}); got != "pw" {
			t.Fatalf("field = %q", got)
		}
	})
	t.Run("field number as JSON text", func(t *testing.T) {
		if got := h.mustString(hostsim.Ref{Key: "JSON", Field: "port"}); got != "5432" {
			t.Fatalf("field = %q", got)
		}
	})
	t.Run("missing field", func(t *testing.T) {
		_, err := h.fetch(hostsim.Ref{Key: "JSON", Field: "nope"})
		wantKind(t, err, secrets.KindSecretNotFound)
	})
	t.Run("field of a non-JSON value", func(t *testing.T) {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Field: "x"})
		wantKind(t, err, secrets.KindSecretNotFound)
	})
	t.Run("version", func(t *testing.T) {
		s, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Version: "1"})
		if err != nil || *s.StringSecret != "v1-password" || s.Version != "1" {
			t.Fatalf("version 1 = %+v, %v", s, err)
		}
	})
	t.Run("unknown version", func(t *testing.T) {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Version: "99"})
		wantKind(t, err, secrets.KindSecretNotFound)
	})
	for _, v := range []string{"0", "-1", "x", "1.0"} {
		t.Run("bad version "+v, func(t *testing.T) {
			_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Version: v})
			wantKind(t, err, secrets.KindInvalidRequest)
		})
	}
	t.Run("base64 binary", func(t *testing.T) {
		s, err := h.fetch(hostsim.Ref{Key: "BLOB", Properties: map[string]string{"encoding": "base64"}})
		if err != nil {
			t.Fatal(err)
		}
		if s.StringSecret != nil || string(s.BinarySecret) != "\x00\x01\x02\xff" {
			t.Fatalf("binary = %+v", s)
		}
	})
	t.Run("base64 of a non-base64 value", func(t *testing.T) {
		_, err := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Properties: map[string]string{"encoding": "base64"}})
		werr := wantKind(t, err, secrets.KindOther)
		if !strings.Contains(werr.Message, "base64") {
			t.Fatalf("message = %q", werr.Message)
		}
	})
}

// A value Infisical finds through a folder import must pass the rules for the folder it really lives in.
func TestImportedSecretsAreCheckedWhereTheyLive(t *testing.T) {
	h := newHarness(t)
	h.fake.SetSecret(project, "prod", "/other", "ONLY_OTHER", "other-only")
	h.fake.AddImport(project, "prod", "/shop", "prod", "/other")
	h.env["ACCESS_RULES"] = `[{"application":"shop","key":"/shop/*"},{"application":"ops"}]`
	h.start()
	imports := map[string]string{"include_imports": "true"}
	if got := h.mustString(hostsim.Ref{Key: "/shop/ONLY_OTHER", Application: "ops", Properties: imports}); got != "other-only" {
		t.Fatalf("ops through the import = %q", got)
	}
	_, err := h.fetch(hostsim.Ref{Key: "/shop/ONLY_OTHER", Application: "shop", Properties: imports})
	wantKind(t, err, secrets.KindUnauthorized)
	if !strings.Contains(h.logs.String(), "imported_from") {
		t.Fatalf("the import was not noted in the logs:\n%s", h.logs.String())
	}
}
