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
	first [8]slog.Attr // holds the attributes of a typical request without another allocation
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
	a.attrs = a.first[:0]
	return context.WithValue(ctx, annotationsKey{}, a), a
}

// appendTo appends the attributes to dst. It copies under the lock: when the timeout reply won, the handler may still
// be annotating.
func (a *annotations) appendTo(dst []slog.Attr) []slog.Attr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append(dst, a.attrs...)
}
