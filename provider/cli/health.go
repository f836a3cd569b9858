package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// healthCheckTimeout bounds one readiness check; the check reads state and calls nothing remote.
const healthCheckTimeout = 2 * time.Second

// healthServer answers HTTP probes for `serve` (HEALTH_ADDR), where no host asks for health over NATS:
// GET /livez says the process is up and answering, and GET /readyz reports what a managed provider reports to its
// host (see running.health). Neither calls Infisical, so probes cost nothing upstream. Liveness ignores NATS and
// Infisical on purpose: the client reconnects by itself and a restart would only drop the cache.
type healthServer struct {
	srv   *http.Server
	addr  string
	check atomic.Pointer[func(context.Context) (bool, string)]
	done  chan struct{}
}

// listenHealth binds addr at once, so a bad or busy address stops the start, and answers /readyz with 503
// "starting" until ready is given a check.
func listenHealth(ctx context.Context, log *slog.Logger, addr string) (*healthServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HEALTH_ADDR %s: cannot listen: %w", addr, err)
	}
	h := &healthServer{addr: ln.Addr().String(), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { reply(w, true, "ok") })
	mux.HandleFunc("GET /readyz", h.readyz)
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      healthCheckTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("health listener stopped; probes will fail", "addr", h.addr, "error", err)
		}
	}()
	log.Info("health endpoints listening", "addr", h.addr, "liveness", "/livez", "readiness", "/readyz")
	return h, nil
}

// ready makes /readyz report check from now on.
func (h *healthServer) ready(check func(context.Context) (bool, string)) { h.check.Store(&check) }

func (h *healthServer) readyz(w http.ResponseWriter, r *http.Request) {
	check := h.check.Load()
	if check == nil {
		reply(w, false, "starting")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthCheckTimeout)
	defer cancel()
	ok, msg := (*check)(ctx)
	reply(w, ok, msg)
}

func reply(w http.ResponseWriter, ok bool, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, msg)
}

// shutdown closes the listener and waits for probes in flight, within ctx.
func (h *healthServer) shutdown(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	return nil
}
