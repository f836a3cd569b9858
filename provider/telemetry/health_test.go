package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestErrorHandlerRateLimits(t *testing.T) {
	log, logs := newLogger(t)
	now := time.Unix(1000, 0)
	h := &errorHandler{log: log, every: time.Minute, now: func() time.Time { return now }}

	h.Handle(errors.New("first"))
	h.Handle(errors.New("second"))                                    // within the minute: suppressed
	h.Handle(&exportError{signal: "traces", err: errors.New("down")}) // already logged elsewhere
	now = now.Add(time.Minute)
	h.Handle(errors.New("third"))

	out := logs.String()
	if strings.Contains(out, "second") || strings.Contains(out, "down") {
		t.Errorf("suppressed errors were logged:\n%s", out)
	}
	if !strings.Contains(out, "error=first suppressed_since_last=0") || !strings.Contains(out, "error=third suppressed_since_last=1") {
		t.Errorf("unexpected log:\n%s", out)
	}
}

func TestDropReported(t *testing.T) {
	reported := &exportError{signal: "metrics", err: errors.New("refused")}
	other := errors.New("other")
	tests := []struct {
		name    string
		in      error
		want    []error // errors that must remain (errors.Is)
		wantNil bool
	}{
		{name: "nil", in: nil, wantNil: true},
		{name: "reported only", in: reported, wantNil: true},
		{name: "wrapped reported", in: fmt.Errorf("flush: %w", reported), wantNil: true},
		{name: "joined keeps others", in: errors.Join(reported, other, context.DeadlineExceeded), want: []error{other, context.DeadlineExceeded}},
		{name: "other kept", in: other, want: []error{other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dropReported(tt.in)
			if (got == nil) != tt.wantNil {
				t.Fatalf("dropReported(%v) = %v", tt.in, got)
			}
			for _, w := range tt.want {
				if !errors.Is(got, w) {
					t.Errorf("%v lost %v", got, w)
				}
			}
			if got != nil && isReported(got) {
				t.Errorf("%v still holds a reported error", got)
			}
		})
	}
}

func TestRedactEndpoint(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "env", in: "", want: "(from OTEL_* environment)"},
		{name: "plain", in: "http://127.0.0.1:4318/v1/traces", want: "http://127.0.0.1:4318/v1/traces"},
		{name: "credentials and query hidden", in: "https://user:pw@c:4318/v1/traces?token=abc", want: "https://user:xxxxx@c:4318/v1/traces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactEndpoint(tt.in); got != tt.want {
				t.Errorf("redactEndpoint(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
