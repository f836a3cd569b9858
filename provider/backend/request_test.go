package backend

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func TestResolveKey(t *testing.T) {
	tests := []struct {
		name, base, key    string
		wantFolder, wantNm string
		wantErr            bool
	}{
		{name: "root name", base: "/", key: "DB", wantFolder: "/", wantNm: "DB"},
		{name: "relative under base", base: "/app", key: "sub/DB", wantFolder: "/app/sub", wantNm: "DB"},
		{name: "absolute ignores base", base: "/app", key: "/other/DB", wantFolder: "/other", wantNm: "DB"},
		{name: "dotdot is cleaned", base: "/shop", key: "../other/X", wantFolder: "/other", wantNm: "X"},
		{name: "dotdot cannot climb above root", base: "/", key: "/../../X", wantFolder: "/", wantNm: "X"},
		{name: "double slashes", base: "/", key: "/a//b/X", wantFolder: "/a/b", wantNm: "X"},
		{name: "empty", base: "/", key: "", wantErr: true},
		{name: "folder only", base: "/", key: "a/", wantErr: true},
		{name: "spaces around", base: "/", key: " X", wantErr: true},
		{name: "colon", base: "/", key: "a:b", wantErr: true},
		{name: "just dotdot", base: "/", key: "..", wantErr: true},
		{name: "control character", base: "/", key: "a\nb", wantErr: true},
		{name: "URL characters are a name", base: "/", key: "a;b=c&d?e#f%g", wantFolder: "/", wantNm: "a;b=c&d?e#f%g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			folder, name, err := resolveKey(tt.base, tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("resolveKey(%q, %q) = %q, %q; want an error", tt.base, tt.key, folder, name)
				}
				return
			}
			if err != nil || folder != tt.wantFolder || name != tt.wantNm {
				t.Fatalf("resolveKey(%q, %q) = %q, %q, %v; want %q, %q", tt.base, tt.key, folder, name, err, tt.wantFolder, tt.wantNm)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		name    string
		in      *string
		want    int
		wantErr bool
	}{
		{name: "nil is latest", in: nil, want: 0},
		{name: "empty is latest", in: s(""), want: 0},
		{name: "positive", in: s("3"), want: 3},
		{name: "zero", in: s("0"), wantErr: true},
		{name: "negative", in: s("-1"), wantErr: true},
		{name: "plus sign", in: s("+2"), wantErr: true},
		{name: "word", in: s("latest"), wantErr: true},
		{name: "float", in: s("1.5"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVersion(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseVersion = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name     string
		props    map[string]string
		want     options
		wantProp string // a PolicyError naming this property
	}{
		{name: "none", props: nil, want: options{}},
		{name: "all", props: map[string]string{"project_id": "p2", "environment": "dev", "secret_path": "/x/",
			"encoding": "base64", "expand_references": "true", "include_imports": "false"},
			want: options{projectID: "p2", environment: "dev", secretPath: "/x", base64: true, expandReferences: true}},
		{name: "unknown ignored", props: map[string]string{"role_name": "x"}, want: options{ignored: []string{"role_name"}}},
		{name: "bad environment", props: map[string]string{"environment": "Prod!"}, wantProp: "environment"},
		{name: "relative path", props: map[string]string{"secret_path": "x"}, wantProp: "secret_path"},
		{name: "bad encoding", props: map[string]string{"encoding": "hex"}, wantProp: "encoding"},
		{name: "bad bool", props: map[string]string{"expand_references": "yes"}, wantProp: "expand_references"},
		{name: "bool case", props: map[string]string{"include_imports": "TRUE"}, wantProp: "include_imports"},
		{name: "empty project", props: map[string]string{"project_id": " "}, wantProp: "project_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOptions(tt.props)
			if tt.wantProp != "" {
				var werr *secrets.Error
				if !errors.As(err, &werr) || werr.Kind != secrets.KindPolicyError {
					t.Fatalf("err = %v; want a PolicyError", err)
				}
				if want := `"` + tt.wantProp + `"`; !strings.Contains(werr.Message, want) {
					t.Fatalf("message %q does not name %s", werr.Message, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.projectID != tt.want.projectID || got.environment != tt.want.environment ||
				got.secretPath != tt.want.secretPath || got.base64 != tt.want.base64 ||
				got.expandReferences != tt.want.expandReferences || got.includeImports != tt.want.includeImports ||
				len(got.ignored) != len(tt.want.ignored) {
				t.Fatalf("parseOptions = %+v; want %+v", got, tt.want)
			}
		})
	}
}

func TestSelectField(t *testing.T) {
	tests := []struct {
		name, value, field, want string
		notFound                 bool
	}{
		{name: "string member", value: `{"user":"bob","pw":"x"}`, field: "pw", want: "x"},
		{name: "number member as JSON", value: `{"port":5432}`, field: "port", want: "5432"},
		{name: "big number keeps digits", value: `{"n":12345678901234567890}`, field: "n", want: "12345678901234567890"},
		{name: "object member compact", value: `{"db":{ "a" : [1, 2] }}`, field: "db", want: `{"a":[1,2]}`},
		{name: "null member", value: `{"x":null}`, field: "x", want: "null"},
		{name: "missing member", value: `{"a":"b"}`, field: "x", notFound: true},
		{name: "not JSON", value: `hunter2`, field: "x", notFound: true},
		{name: "JSON array", value: `[1,2]`, field: "x", notFound: true},
		{name: "JSON null", value: `null`, field: "x", notFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := selectField(tt.value, tt.field)
			if tt.notFound {
				if !errors.Is(err, errNoField) {
					t.Fatalf("err = %v; want errNoField", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("selectField = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestBuildSecret(t *testing.T) {
	s, err := buildSecret("aGVsbG8=", 4, true)
	if err != nil || string(s.BinarySecret) != "hello" || s.StringSecret != nil || s.Version != "4" {
		t.Fatalf("base64 = %+v, %v", s, err)
	}
	s, err = buildSecret("aGVsbG8", 4, true) // unpadded, as people paste it
	if err != nil || string(s.BinarySecret) != "hello" {
		t.Fatalf("unpadded base64 = %+v, %v", s, err)
	}
	if _, err = buildSecret("not base64!", 1, true); err == nil {
		t.Fatal("invalid base64 accepted")
	}
	s, err = buildSecret("plain", 7, false)
	if err != nil || s.StringSecret == nil || *s.StringSecret != "plain" || s.BinarySecret != nil || s.Version != "7" {
		t.Fatalf("string = %+v, %v", s, err)
	}
}

func TestApplicationKey(t *testing.T) {
	for in, want := range map[string]string{"shop": "shop", "My-App": "my_app", "a.b c": "a_b_c", "": ""} {
		if got := ApplicationKey(in); got != want {
			t.Errorf("ApplicationKey(%q) = %q; want %q", in, got, want)
		}
	}
}

// FuzzResolveKey: whatever the key, resolution never panics, and a resolved folder is clean and absolute, so access
// rules always see a canonical path.
func FuzzResolveKey(f *testing.F) {
	for _, k := range []string{"DB", "a/b/C", "/x/../y/Z", "../../..", "/", "a//b", "\x00", "..."} {
		f.Add("/base", k)
	}
	f.Fuzz(func(t *testing.T, base, key string) {
		folder, name, err := resolveKey(path.Clean("/"+base), key)
		if err != nil {
			return
		}
		if !strings.HasPrefix(folder, "/") || path.Clean(folder) != folder {
			t.Fatalf("folder %q not clean", folder)
		}
		if name == "" || strings.Contains(name, "/") || name == ".." || name == "." {
			t.Fatalf("bad name %q", name)
		}
		for _, seg := range strings.Split(folder, "/") {
			if seg == ".." {
				t.Fatalf("folder %q keeps a .. segment", folder)
			}
		}
	})
}
