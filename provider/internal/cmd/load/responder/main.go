// Command responder is one side of the load tool's comparison, each in a process of its own so that its CPU time and
// resident set can be read from the kernel:
//
//	responder [-debug ADDR -debug-file FILE] serve      the backend, exactly as the product binary runs `serve`
//	responder [-debug ADDR -debug-file FILE] baseline   the protocol-only baseline (rig.BaselineResponder)
//
// Both read their settings from the environment (the baseline: NATS_URL, SERVER_XKEY_SEED, BACKEND_NAME). With
// -debug it also serves net/http/pprof on ADDR (loopback) and writes the address it got to FILE, so that the load
// tool can take CPU and allocation profiles and execution traces of either side under load. The product binary has no
// such endpoint; this one is built only by the load tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/cmd/load/rig"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func main() {
	debug := flag.String("debug", "", "serve net/http/pprof on this loopback address (host:port; port 0 picks one)")
	debugFile := flag.String("debug-file", "", "write the pprof server's address to this file once it listens")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *debug != "" {
		if err := serveDebug(*debug, *debugFile); err != nil {
			fmt.Fprintf(os.Stderr, "responder: %v\n", err)
			os.Exit(1)
		}
	}
	switch flag.Arg(0) {
	case "serve":
		os.Exit(cli.Run(ctx, flag.Args(), os.Stdin, os.Stdout, os.Stderr, os.LookupEnv))
	case "baseline":
		if err := baseline(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "responder: baseline: %v\n", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: responder [-debug ADDR -debug-file FILE] serve|baseline")
		os.Exit(2)
	}
}

// serveDebug serves pprof on its own mux (never http.DefaultServeMux) on a loopback address.
func serveDebug(addr, file string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-debug %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-debug %q: profiles are served on a loopback address only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("-debug: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	if file != "" {
		if err := os.WriteFile(file, []byte(ln.Addr().String()), 0o600); err != nil {
			return fmt.Errorf("-debug-file: %w", err)
		}
	}
	return nil
}

// baseline runs the protocol-only responder until ctx ends.
func baseline(ctx context.Context) error {
	seed := os.Getenv("SERVER_XKEY_SEED")
	if seed == "" {
		return errors.New("SERVER_XKEY_SEED is not set")
	}
	xkey, err := nkeys.FromCurveSeed([]byte(seed))
	if err != nil {
		return fmt.Errorf("SERVER_XKEY_SEED: %w", err)
	}
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.Name("baseline"))
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer nc.Close()
	b, err := rig.StartBaseline(nc, secrets.DefaultPrefix, os.Getenv("BACKEND_NAME"), xkey)
	if err != nil {
		return err
	}
	defer b.Close()
	<-ctx.Done()
	return nil
}
