package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func TestServeHappyPaths(t *testing.T) {
	h := newHarness(t)
	h.start()
	tests := []struct {
		name string
		ref  hostsim.Ref
		want string
	}{
		{name: "root", ref: hostsim.Ref{Key: "DB_PASSWORD"}, want: "v2-password"},
		{name: "sub-folder relative", ref: hostsim.Ref{Key: "payments/API_KEY"}, want: "pay-key"},
		{name: "sub-folder absolute", ref: hostsim.Ref{Key: "/payments/API_KEY"}, want: "pay-key"},
		{name: "older version", ref: hostsim.Ref{Key: "DB_PASSWORD", Version: "1"}, want: "v1-password"},
		{name: "application name sent", ref: hostsim.Ref{Key: "DB_PASSWORD", Application: "my-app"}, want: "v2-password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := h.fetch(tt.ref)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if s.StringSecret == nil || *s.StringSecret != tt.want {
				t.Fatalf("value = %v; want %q", s.StringSecret, tt.want)
			}
			if s.Version == "" {
				t.Fatal("version missing")
			}
		})
	}
	if s, _ := h.fetch(hostsim.Ref{Key: "DB_PASSWORD", Version: "1"}); s == nil || s.Version != "1" {
		t.Fatalf("version of an old read = %+v; want 1", s)
	}
	if strings.Contains(h.logs.String(), "v2-password") || strings.Contains(h.logs.String(), secret) {
		t.Fatal("a secret value or the client secret reached the logs")
	}
}

// rawGet sends a hand-made get and returns the reply within the test's 2 s bound.
func rawGet(t *testing.T, nc *nats.Conn, subject string, hdr nats.Header, data []byte) *nats.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	msg, err := nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: data})
	if err != nil {
		t.Fatalf("request %s: %v (every request must be answered within 2 s)", subject, err)
	}
	return msg
}

func TestServeErrorRows(t *testing.T) {
	h := newHarness(t)
	h.start()
	getSubject := prefix + ".v1alpha1." + backend + ".get"
	serverKey, err := h.host.Secrets.ServerXKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _ := nkeys.CreateCurveKeys()
	hostPub, _ := hostKey.PublicKey()
	seal := func(v any) []byte {
		raw, ok := v.([]byte)
		if !ok {
			raw, _ = json.Marshal(v)
		}
		sealed, err := hostKey.Seal(raw, serverKey)
		if err != nil {
			t.Fatal(err)
		}
		return sealed
	}
	hdr := func() nats.Header { return nats.Header{secrets.HostXkeyHeader: []string{hostPub}} }
	good := h.host.Request(h.comp, hostsim.Ref{Key: "DB_PASSWORD"})
	withKey := func(mut func(r *secrets.Request)) *secrets.Request {
		raw, _ := json.Marshal(good)
		var r secrets.Request
		_ = json.Unmarshal(raw, &r)
		mut(&r)
		return &r
	}
	otherKey, _ := nkeys.CreateCurveKeys()
	otherPub, _ := otherKey.PublicKey()
	sealedForOther, _ := hostKey.Seal([]byte(`{}`), otherPub)

	tests := []struct {
		name    string
		subject string
		hdr     nats.Header
		data    []byte
		want    string
	}{
		{name: "no headers", subject: getSubject, hdr: nil, data: seal(good), want: `"InvalidHeaders"`},
		{name: "no xkey header", subject: getSubject, hdr: nats.Header{"Other": []string{"x"}}, data: seal(good), want: `"InvalidHeaders"`},
		{name: "bad xkey header", subject: getSubject, hdr: nats.Header{secrets.HostXkeyHeader: []string{"XNOTAKEY"}}, data: seal(good), want: `"InvalidXKey"`},
		{name: "cannot open", subject: getSubject, hdr: hdr(), data: sealedForOther, want: `"DecryptionError"`},
		{name: "empty payload", subject: getSubject, hdr: hdr(), data: nil, want: `"InvalidPayload"`},
		{name: "not JSON", subject: getSubject, hdr: hdr(), data: seal([]byte("not json")), want: `"InvalidPayload"`},
		{name: "bad entity JWT", subject: getSubject, hdr: hdr(), data: seal(withKey(func(r *secrets.Request) { r.Context.EntityJWT = "a.b.c" })), want: `{"InvalidEntityJWT":`},
		{name: "bad host JWT", subject: getSubject, hdr: hdr(), data: seal(withKey(func(r *secrets.Request) { r.Context.HostJWT = h.comp.JWT + "x" })), want: `{"InvalidHostJWT":`},
		{name: "bad policy", subject: getSubject, hdr: hdr(), data: seal(withKey(func(r *secrets.Request) { r.Context.Application.Policy = "{not json" })), want: `{"PolicyError":`},
		{name: "not found", subject: getSubject, hdr: hdr(), data: seal(withKey(func(r *secrets.Request) { r.Key = "NOPE" })), want: `"SecretNotFound"`},
		{name: "version not an integer", subject: getSubject, hdr: hdr(), data: seal(withKey(func(r *secrets.Request) { v := "latest"; r.Version = &v })), want: `"InvalidRequest"`},
		{name: "unknown operation", subject: prefix + ".v1alpha1." + backend + ".put_secret", hdr: hdr(), data: seal(good), want: `"InvalidRequest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := rawGet(t, h.nc, tt.subject, tt.hdr, tt.data)
			if msg.Header.Get(secrets.ResponseXkeyHeader) != "" {
				t.Fatal("an error reply carries Server-Response-Xkey")
			}
			if want := `{"error":` + tt.want; !strings.HasPrefix(string(msg.Data), want) {
				t.Fatalf("reply = %s; want prefix %s", msg.Data, want)
			}
		})
	}

	// Upstream failure: Infisical answers 500 for longer than the request's retries.
	t.Run("upstream error", func(t *testing.T) {
		h.fake.FailNext("*", 1000, 500, "Something went wrong", nil)
		defer h.fake.FailNext("*", 0, 0, "", nil)
		_, err := h.fetch(hostsim.Ref{Key: "payments/API_KEY", Version: "1"})
		wantKind(t, err, secrets.KindUpstreamError)
	})

	// Still serving after all of that.
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("after the errors: %q", got)
	}
}

func TestServeSettingsErrorsStopStartup(t *testing.T) {
	h := newHarness(t)
	delete(h.env, "INFISICAL_PROJECT_ID")
	h.env["CACHE_TTL"] = "soon"
	code, _, out := runCommand(t, h.env, "serve")
	if code != 2 {
		t.Fatalf("serve exit code = %d; want 2\n%s", code, out)
	}
	for _, want := range []string{"INFISICAL_PROJECT_ID", "CACHE_TTL"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up error does not name %s:\n%s", want, out)
		}
	}
}

func TestNoArgumentsWithEmptyStdinIsAUsageError(t *testing.T) {
	var out syncBuffer
	code := cli.Run(context.Background(), nil, strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	if code == 0 {
		t.Fatalf("no arguments and empty stdin exited 0:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "serve") {
		t.Fatalf("no hint to use serve:\n%s", out.String())
	}
}

// runCommand runs the command in-process with env and returns its exit code, stdout and stderr.
func runCommand(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = cli.Run(ctx, args, strings.NewReader(""), &out, &errOut, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	return code, out.String(), errOut.String()
}
