package secrets

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestErrorJSONGolden(t *testing.T) {
	tests := []struct {
		name    string
		err     *Error
		json    string
		display string
	}{
		{"entity jwt", NewError(KindInvalidEntityJWT, "token expired at x"), `{"InvalidEntityJWT":"token expired at x"}`, "Invalid Entity JWT: token expired at x"},
		{"host jwt", NewError(KindInvalidHostJWT, "bad"), `{"InvalidHostJWT":"bad"}`, "Invalid Host JWT: bad"},
		{"not found", NewError(KindSecretNotFound, "ignored"), `"SecretNotFound"`, "Secret not found"},
		{"xkey", NewError(KindInvalidXKey, ""), `"InvalidXKey"`, "Invalid XKey"},
		{"encryption", NewError(KindEncryptionError, ""), `"EncryptionError"`, "Error encrypting secret"},
		{"decryption", NewError(KindDecryptionError, ""), `"DecryptionError"`, "Error decrypting secret"},
		{"upstream", NewError(KindUpstreamError, "connection refused"), `{"UpstreamError":"connection refused"}`, "Error fetching secret: connection refused"},
		{"unauthorized", NewError(KindUnauthorized, ""), `"Unauthorized"`, "Error fetching secret: unauthorized"},
		{"invalid request", NewError(KindInvalidRequest, ""), `"InvalidRequest"`, "Invalid request"},
		{"invalid payload", NewError(KindInvalidPayload, ""), `"InvalidPayload"`, "Invalid payload"},
		{"invalid headers", NewError(KindInvalidHeaders, ""), `"InvalidHeaders"`, "Invalid headers"},
		{"policy", NewError(KindPolicyError, "bad <policy> & co"), `{"PolicyError":"bad <policy> & co"}`, "Error processing policies: $bad <policy> & co"},
		{"other", NewError(KindOther, "x"), `{"Other":"x"}`, "Encountered an unknown error fetching secret: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeJSON(tt.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.json {
				t.Errorf("marshal = %s, want %s", got, tt.json)
			}
			if tt.err.Error() != tt.display {
				t.Errorf("Error() = %q, want %q", tt.err.Error(), tt.display)
			}
			var back Error
			if err := json.Unmarshal([]byte(tt.json), &back); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if back != *tt.err {
				t.Errorf("round trip = %+v, want %+v", back, *tt.err)
			}
			resp, _ := encodeJSON(Response{Error: tt.err})
			if string(resp) != `{"error":`+tt.json+`}` {
				t.Errorf("response = %s", resp)
			}
		})
	}
}

func TestErrorUnknownKindMarshalsAsOther(t *testing.T) {
	got, err := json.Marshal(&Error{Kind: "PermissionDenied", Message: "no"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"Other":"PermissionDenied: no"}` {
		t.Errorf("got %s", got)
	}
}

func TestErrorUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Error
		wantErr string
	}{
		{"unit as null object", `{"SecretNotFound":null}`, Error{Kind: KindSecretNotFound}, ""},
		{"whitespace", ` { "UpstreamError" : "x" } `, Error{Kind: KindUpstreamError, Message: "x"}, ""},
		{"unknown string", `"PermissionDenied"`, Error{}, "unknown variant"},
		{"unknown object", `{"Nope":"x"}`, Error{}, "unknown variant"},
		{"message variant as bare string", `"UpstreamError"`, Error{}, "expected newtype variant"},
		{"message variant with null", `{"UpstreamError":null}`, Error{}, "needs a string"},
		{"message variant with number", `{"Other":5}`, Error{}, "needs a string"},
		{"unit variant with value", `{"SecretNotFound":"x"}`, Error{}, "has a value"},
		{"two keys", `{"Other":"a","PolicyError":"b"}`, Error{}, "exactly one"},
		{"empty object", `{}`, Error{}, "exactly one"},
		{"number", `5`, Error{}, "want a string or an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Error
			err := json.Unmarshal([]byte(tt.in), &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	var err error = NewError(KindUpstreamError, "boom")
	wrapped := errors.Join(errors.New("ctx"), err)
	if !errors.Is(wrapped, NewError(KindUpstreamError, "")) {
		t.Error("kind match failed")
	}
	if errors.Is(wrapped, NewError(KindUpstreamError, "other")) {
		t.Error("message mismatch matched")
	}
	if errors.Is(wrapped, NewError(KindSecretNotFound, "")) {
		t.Error("kind mismatch matched")
	}
	for _, k := range []ErrorKind{KindInvalidEntityJWT, KindInvalidHostJWT, KindUpstreamError, KindPolicyError, KindOther} {
		if !k.HasMessage() {
			t.Errorf("%s should carry a message", k)
		}
	}
	if KindSecretNotFound.HasMessage() {
		t.Error("SecretNotFound is a unit variant")
	}
}

func TestSecretJSONGolden(t *testing.T) {
	tests := []struct {
		name   string
		secret Secret
		json   string
	}{
		{"string", Secret{Version: "3", StringSecret: strp("x")}, `{"secret":{"version":"3","string_secret":"x","binary_secret":null}}`},
		{"binary", Secret{Version: "1", BinarySecret: ByteArray{0, 1, 2, 255}}, `{"secret":{"version":"1","string_secret":null,"binary_secret":[0,1,2,255]}}`},
		{"empty version kept", Secret{Version: "", StringSecret: strp("")}, `{"secret":{"version":"","string_secret":"","binary_secret":null}}`},
		{"empty binary", Secret{Version: "1", BinarySecret: ByteArray{}}, `{"secret":{"version":"1","string_secret":null,"binary_secret":[]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeJSON(Response{Secret: &tt.secret})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.json {
				t.Errorf("got  %s\nwant %s", got, tt.json)
			}
			var back Response
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			again, _ := encodeJSON(back)
			if string(again) != tt.json {
				t.Errorf("round trip %s", again)
			}
		})
	}
}

func TestByteArrayUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ByteArray
		wantErr bool
	}{
		{"array", `[0,1,2,255]`, ByteArray{0, 1, 2, 255}, false},
		{"spaces", `[ 7 , 8 ]`, ByteArray{7, 8}, false},
		{"null", `null`, nil, false},
		{"too big", `[256]`, nil, true},
		{"negative", `[-1]`, nil, true},
		{"fraction", `[1.5]`, nil, true},
		{"string element", `["1"]`, nil, true},
		{"base64 string", `"AAEC/w=="`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ByteArray
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && (string(got) != string(tt.want) || (got == nil) != (tt.want == nil)) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Policy
		wantErr string
	}{
		{"empty string", "", Policy{Properties: map[string]string{}}, ""},
		{"wadm", `{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{"project":"p1","environment":"prod"}}`,
			Policy{Type: PolicyType, Properties: map[string]string{"project": "p1", "environment": "prod"}}, ""},
		{"no properties", `{"type":"t","properties":{}}`, Policy{Type: "t", Properties: map[string]string{}}, ""},
		{"null properties", `{"type":"t","properties":null}`, Policy{Type: "t", Properties: map[string]string{}}, ""},
		{"number property", `{"type":"t","properties":{"a":"x","ttl":30}}`, Policy{}, `property "ttl" is not a string (got a number)`},
		{"null property", `{"properties":{"a":null}}`, Policy{}, `property "a" is not a string (got null)`},
		{"object property", `{"properties":{"a":{"b":"c"}}}`, Policy{}, `property "a" is not a string (got an object)`},
		{"properties array", `{"properties":["a"]}`, Policy{}, `"properties" is not an object (got an array)`},
		{"type number", `{"type":1}`, Policy{}, `"type" is not a string`},
		{"not an object", `["x"]`, Policy{}, "not a JSON object"},
		{"broken", `{"type":`, Policy{}, "not valid JSON"},
		{"trailing data", `{} {}`, Policy{}, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.want.Type || len(got.Properties) != len(tt.want.Properties) || got.Properties == nil {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for k, v := range tt.want.Properties {
				if got.Properties[k] != v {
					t.Errorf("property %s = %q, want %q", k, got.Properties[k], v)
				}
			}
		})
	}
}

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ErrorKind // "" = ok
	}{
		{"host shape", `{"key":"k","field":null,"version":null,"context":{"entity_jwt":"e","host_jwt":"h","application":{"name":null,"policy":""}}}`, ""},
		{"optional fields missing", `{"key":"k","context":{"entity_jwt":"e","host_jwt":"h"}}`, ""},
		{"field and version", `{"key":"k","field":"f","version":"2","context":{"entity_jwt":"e","host_jwt":"h","application":{"name":"a"}}}`, ""},
		{"empty key", `{"key":"","context":{}}`, KindInvalidRequest},
		{"missing key", `{"context":{}}`, KindInvalidPayload},
		{"missing context", `{"key":"k"}`, KindInvalidPayload},
		{"null context", `{"key":"k","context":null}`, KindInvalidPayload},
		{"key not a string", `{"key":1,"context":{}}`, KindInvalidPayload},
		{"field not a string", `{"key":"k","field":1,"context":{}}`, KindInvalidPayload},
		{"array", `[]`, KindInvalidPayload},
		{"not json", `hello`, KindInvalidPayload},
		{"empty", ``, KindInvalidPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, e := decodeRequest([]byte(tt.in))
			if tt.want == "" {
				if e != nil || req == nil || req.Key != "k" {
					t.Fatalf("got %+v, %v", req, e)
				}
				return
			}
			if e == nil || e.Kind != tt.want {
				t.Fatalf("got %+v, %v; want %s", req, e, tt.want)
			}
		})
	}
}

// The client must write what the Rust host writes: field order, explicit nulls, no HTML escaping.
func TestRequestEncodingMatchesHost(t *testing.T) {
	r := &Request{Key: "db<pass>", Context: RequestContext{EntityJWT: "e", HostJWT: "h",
		Application: &Application{Name: strp("app"), Policy: `{"type":"t","properties":{}}`}}}
	got, err := encodeJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"key":"db<pass>","field":null,"version":null,"context":{"entity_jwt":"e","host_jwt":"h","application":{"name":"app","policy":"{\"type\":\"t\",\"properties\":{}}"}}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"key":"k","field":null,"version":null,"context":{"entity_jwt":"e","host_jwt":"h","application":{"name":null,"policy":"{\"type\":\"t\",\"properties\":{\"a\":\"b\"}}"}}}`))
	f.Add([]byte(`{"key":"k","context":{"application":{"policy":"{\"properties\":{\"a\":1}}"}}}`))
	f.Add([]byte(`{"key":"","context":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, e := decodeRequest(data)
		if (req == nil) == (e == nil) {
			t.Fatalf("request %v with error %v", req, e)
		}
		if e != nil {
			if e.Kind != KindInvalidPayload && e.Kind != KindInvalidRequest {
				t.Fatalf("unexpected kind %s", e.Kind)
			}
			return
		}
		if req.Key == "" {
			t.Fatal("accepted an empty key")
		}
		if app := req.Context.Application; app != nil {
			p, err := ParsePolicy(app.Policy)
			if err == nil && p.Properties == nil {
				t.Fatal("nil properties without error")
			}
		}
		if _, err := json.Marshal(NewError(KindPolicyError, string(data))); err != nil {
			t.Fatalf("error does not encode: %v", err)
		}
	})
}

func TestSubjects(t *testing.T) {
	s := NewSubjects("", "", "infisical")
	for got, want := range map[string]string{
		s.Get():        "wasmcloud.secrets.v1alpha1.infisical.get",
		s.ServerXKey(): "wasmcloud.secrets.v1alpha1.infisical.server_xkey",
		s.All():        "wasmcloud.secrets.v1alpha1.infisical.>",
		NewSubjects("acme.secrets", "v2", "vault").Get(): "acme.secrets.v2.vault.get",
	} {
		if got != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
}
