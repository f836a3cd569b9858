package backend

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// Every auth method refuses each setting it needs when it is missing (or blank), naming that setting; an unknown
// method names INFISICAL_AUTH_METHOD. No error quotes a credential.
func TestReviewNewClientRefusesEveryMissingCredential(t *testing.T) {
	full := infisical.Credentials{ClientID: "cid", ClientSecret: "SECRET-cs", IdentityID: "iid", GCPKeyFile: "/k.json",
		OIDCToken: "SECRET-oidc", JWT: "SECRET-jwt", AccessToken: "SECRET-at"}
	clear := map[string]func(*infisical.Credentials){
		"INFISICAL_CLIENT_ID":                               func(c *infisical.Credentials) { c.ClientID = " " },
		"INFISICAL_CLIENT_SECRET":                           func(c *infisical.Credentials) { c.ClientSecret = "" },
		"INFISICAL_IDENTITY_ID":                             func(c *infisical.Credentials) { c.IdentityID = "\t" },
		"INFISICAL_GCP_KEY_FILE":                            func(c *infisical.Credentials) { c.GCPKeyFile = "" },
		"INFISICAL_OIDC_TOKEN or INFISICAL_OIDC_TOKEN_PATH": func(c *infisical.Credentials) { c.OIDCToken, c.OIDCTokenPath = "", "" },
		"INFISICAL_JWT":                                     func(c *infisical.Credentials) { c.JWT = "" },
		"INFISICAL_ACCESS_TOKEN":                            func(c *infisical.Credentials) { c.AccessToken = "" },
	}
	needs := map[infisical.Method][]string{
		infisical.MethodUniversalAuth: {"INFISICAL_CLIENT_ID", "INFISICAL_CLIENT_SECRET"},
		infisical.MethodKubernetes:    {"INFISICAL_IDENTITY_ID"},
		infisical.MethodAWSIAM:        {"INFISICAL_IDENTITY_ID"},
		infisical.MethodGCPIDToken:    {"INFISICAL_IDENTITY_ID"},
		infisical.MethodGCPIAM:        {"INFISICAL_IDENTITY_ID", "INFISICAL_GCP_KEY_FILE"},
		infisical.MethodAzure:         {"INFISICAL_IDENTITY_ID"},
		infisical.MethodOIDC:          {"INFISICAL_IDENTITY_ID", "INFISICAL_OIDC_TOKEN or INFISICAL_OIDC_TOKEN_PATH"},
		infisical.MethodJWT:           {"INFISICAL_IDENTITY_ID", "INFISICAL_JWT"},
		infisical.MethodToken:         {"INFISICAL_ACCESS_TOKEN"},
	}
	if len(needs) != len(infisical.Methods) {
		t.Fatalf("a method is missing from this test: %v", infisical.Methods)
	}
	base := providerDefaults(t, "https://infisical.example")
	noSecret := func(t *testing.T, err error) {
		for _, s := range []string{"SECRET-cs", "SECRET-oidc", "SECRET-jwt", "SECRET-at"} {
			if err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("error quotes a credential: %v", err)
			}
		}
	}
	for m, settingsNeeded := range needs {
		for _, setting := range settingsNeeded {
			t.Run(fmt.Sprintf("%s without %s", m, setting), func(t *testing.T) {
				s := base
				s.Credentials = full
				s.Method = m
				clear[setting](&s.Credentials)
				_, err := NewClient(s, time.Second, slog.New(slog.DiscardHandler), nil)
				want := fmt.Sprintf("auth method %s needs %s", m, setting)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v; want %q", err, want)
				}
				noSecret(t, err)
			})
		}
	}
	for _, bad := range []infisical.Method{"ldap", "Universal-Auth", "token "} {
		s := base
		s.Credentials = full
		s.Method = bad
		_, err := NewClient(s, time.Second, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.Contains(err.Error(), "INFISICAL_AUTH_METHOD") || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("method %q: got %v; want INFISICAL_AUTH_METHOD is not supported", bad, err)
		}
		noSecret(t, err)
	}
}

// countingUpstream counts Close calls.
type countingUpstream struct {
	funcUpstream
	closes atomic.Int32
}

func (c *countingUpstream) Close() { c.closes.Add(1); c.funcUpstream.Close() }

// Close closes every client the backend ever made exactly once, including those a Reconfigure or SetTenant racing
// with, or coming after, Close makes: no client (and its background token refresh) outlives the backend.
func TestReviewNoClientOutlivesClose(t *testing.T) {
	var mu sync.Mutex
	var made []*countingUpstream
	b := newTestBackend(t, nil, func(settings.Infisical) (Upstream, error) {
		u := &countingUpstream{funcUpstream: funcUpstream{fn: store{}.read}}
		mu.Lock()
		made = append(made, u)
		mu.Unlock()
		return u, nil
	})
	b.Close()
	b.Close() // twice: still one Close per client
	next := *b.Settings()
	next.Infisical.ProjectID = "after-close"
	if err := b.Reconfigure(&next); err == nil {
		t.Error("Reconfigure after Close succeeded")
	}
	tenant := next.Infisical
	tenant.ClientSecret = "tenant-secret"
	if err := b.SetTenant("shop", tenant); err == nil {
		t.Error("SetTenant after Close succeeded")
	}
	b.RefuseTenant("shop", "refused")
	b.RemoveTenant("shop")
	mu.Lock()
	defer mu.Unlock()
	for i, u := range made {
		if n := u.closes.Load(); n != 1 {
			t.Errorf("client %d of %d closed %d times; want exactly once", i, len(made), n)
		}
	}
}

// Reconfigure, SetTenant, RemoveTenant, retire timers and Close running together: no data race (run with -race),
// and every client is closed.
func TestReviewCloseRacesWithChanges(t *testing.T) {
	var mu sync.Mutex
	var made []*countingUpstream
	b := newTestBackend(t, nil, func(settings.Infisical) (Upstream, error) {
		u := &countingUpstream{funcUpstream: funcUpstream{fn: store{}.read}}
		mu.Lock()
		made = append(made, u)
		mu.Unlock()
		return u, nil
	})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				next := *b.Settings()
				next.Infisical.ProjectID = fmt.Sprintf("p-%d-%d", w, i)
				_ = b.Reconfigure(&next)
				tn := next.Infisical
				tn.ClientSecret = fmt.Sprint("s", i)
				_ = b.SetTenant(fmt.Sprint("app", w), tn)
				if i%7 == 0 {
					b.RemoveTenant(fmt.Sprint("app", w))
				}
				_, _ = b.Health(context.Background())
			}
		}()
	}
	time.Sleep(time.Millisecond)
	b.Close()
	wg.Wait()
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	open := 0
	for _, u := range made {
		if u.closes.Load() == 0 {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d of %d clients never closed", open, len(made))
	}
}
