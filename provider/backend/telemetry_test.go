package backend

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/infisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/capture"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/testkeys"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

const secretValue = "s3cr3t-value"

// recordTelemetry installs in-memory global tracer and meter providers until the test ends.
var recordTelemetry = capture.Telemetry

// fakeUpstream serves one value, or fails while failing is set, and remembers the span its reads ran under.
type fakeUpstream struct {
	lifecycle
	mu      sync.Mutex
	failing bool
	parents []trace.SpanContext
}

func (f *fakeUpstream) GetSecret(ctx context.Context, ref infisical.SecretRef) (infisical.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parents = append(f.parents, trace.SpanContextFromContext(ctx))
	if f.failing {
		return infisical.Secret{}, &infisical.Error{Kind: infisical.KindUnavailable, Status: 503, Message: "down"}
	}
	return infisical.Secret{Name: ref.Name, Value: secretValue, Path: ref.Path, Environment: ref.Environment, Version: 1}, nil
}

func (f *fakeUpstream) lastParent() trace.SpanContext {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.parents) == 0 {
		return trace.SpanContext{}
	}
	return f.parents[len(f.parents)-1]
}

func (f *fakeUpstream) setFailing(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = v
}

// TestSpansAndCacheMetrics runs its rows in order against one backend: the cache state each row sees is what the
// rows before it left.
func TestSpansAndCacheMetrics(t *testing.T) {
	rec, reader := recordTelemetry(t)
	trusted, untrusted := testkeys.AccountKey(t), testkeys.AccountKey(t)
	up := &fakeUpstream{}
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := telemetryBackend(t, trusted, up, clock)
	t.Cleanup(b.Close)

	tests := []struct {
		name         string
		issuer       string
		advance      time.Duration // clock moves before the request
		failing      bool
		wantDecision string
		wantResult   string // "" = no cache lookup
		wantErr      secrets.ErrorKind
	}{
		{name: "miss reads Infisical under the cache span", issuer: trusted, wantDecision: "allowed", wantResult: "miss"},
		{name: "hit", issuer: trusted, wantDecision: "allowed", wantResult: "hit"},
		{name: "denied never looks up", issuer: untrusted, wantDecision: "denied", wantErr: secrets.KindUnauthorized},
		{name: "stale while Infisical fails", issuer: trusted, advance: time.Minute, failing: true, wantDecision: "allowed", wantResult: "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			now = now.Add(tt.advance)
			mu.Unlock()
			up.setFailing(tt.failing)
			ctx, root := otel.Tracer("test").Start(context.Background(), "request")
			_, err := b.Get(ctx, &secrets.Verified{
				Request: &secrets.Request{Key: "DB"},
				Entity:  &wascap.Claims{Issuer: tt.issuer, Subject: "MSUBJECT", Name: "api"},
			})
			root.End()
			var werr *secrets.Error
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Get: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &werr) || werr.Kind != tt.wantErr):
				t.Fatalf("Get error = %v, want %s", err, tt.wantErr)
			}

			spans := map[string]sdktrace.ReadOnlySpan{}
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
					spans[s.Name()] = s
				}
			}
			acc, ok := spans[spanAccess]
			if !ok {
				t.Fatalf("no %s span", spanAccess)
			}
			if got := attr(acc, string(attrDecision)); got != tt.wantDecision || acc.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Errorf("%s decision %q parent %v; want %q under the request", spanAccess, got, acc.Parent().SpanID(), tt.wantDecision)
			}
			if tt.wantDecision == "denied" && attr(acc, "access.reason") == "" {
				t.Errorf("denied %s span has no reason", spanAccess)
			}
			lookup, ok := spans[spanCache]
			if tt.wantResult == "" {
				if ok {
					t.Errorf("a %s span for a request that never reached the cache", spanCache)
				}
				return
			}
			if !ok {
				t.Fatalf("no %s span", spanCache)
			}
			if got := attr(lookup, string(attrCacheResult)); got != tt.wantResult {
				t.Errorf("%s = %q, want %q", attrCacheResult, got, tt.wantResult)
			}
			if tt.wantResult == "miss" && up.lastParent().SpanID() != lookup.SpanContext().SpanID() {
				t.Errorf("the Infisical read ran under %v, want the %s span", up.lastParent().SpanID(), spanCache)
			}
		})
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != metricCacheResults {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if p.Attributes.Len() != 1 {
					t.Errorf("%s point has labels %v; want only result", metricCacheResults, p.Attributes.ToSlice())
				}
				v, _ := p.Attributes.Value("result")
				got[v.AsString()] += p.Value
			}
		}
	}
	if want := map[string]int64{"miss": 1, "hit": 1, "stale": 1}; !equalCounts(got, want) {
		t.Errorf("%s = %v, want %v", metricCacheResults, got, want)
	}
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), secretValue) {
				t.Errorf("span %s attribute %s holds the secret value", s.Name(), kv.Key)
			}
		}
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// telemetryBackend is a backend trusting issuer trusted, reading through up, on the clock now, for the telemetry tests.
func telemetryBackend(t *testing.T, trusted string, up Upstream, now func() time.Time) *Backend {
	t.Helper()
	b, err := New(Config{
		Settings: &settings.Settings{
			Infisical:      settings.Infisical{BaseURL: "http://127.0.0.1:1", ProjectID: "p", Environment: "prod", SecretPath: "/"},
			CacheTTL:       30 * time.Second,
			StaleIfError:   10 * time.Minute,
			TrustedIssuers: []string{trusted},
		},
		Dial:   func(settings.Infisical) (Upstream, error) { return up, nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
