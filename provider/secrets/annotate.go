package secrets

import (
	"context"
	"log/slog"
	"sync"
)

// annotations collect what a handler wants on the request's log line and span.
type annotations struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

type annotationsKey struct{}

// Annotate adds attrs to the log line and span of the request ctx belongs to, so that a handler can say what it
// decided (tenant, cache result, ...) without logging a second line. Outside a request it does nothing. Never pass
// secret material.
func Annotate(ctx context.Context, attrs ...slog.Attr) {
	a, _ := ctx.Value(annotationsKey{}).(*annotations)
	if a == nil || len(attrs) == 0 {
		return
	}
	a.mu.Lock()
	a.attrs = append(a.attrs, attrs...)
	a.mu.Unlock()
}

func withAnnotations(ctx context.Context) (context.Context, *annotations) {
	a := &annotations{}
	return context.WithValue(ctx, annotationsKey{}, a), a
}

func (a *annotations) list() []slog.Attr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]slog.Attr(nil), a.attrs...)
}
