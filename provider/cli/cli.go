// Package cli holds the binary's commands: no arguments runs the managed wasmCloud provider, `serve` the standalone
// service, and the operator tools help reproduce and diagnose a fetch. It wires the other packages together thinly.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// Version is set at build time with -ldflags.
var Version = "dev"

// exit codes
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) int
}

// env is what a command may use of the process, so tests can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

func (e *env) getenv(name string) string {
	v, _ := e.lookupEnv(name)
	return v
}

// Lookup makes env a settings.Source.
func (e *env) Lookup(name string) (string, bool) { return e.lookupEnv(name) }

func commands() []command {
	return []command{
		{"serve", "run the standalone backend, configured by environment variables", runServe},
		{"check", "validate settings, connect to NATS, log in to Infisical, optionally read one secret", runCheck},
		{"get", "fetch a secret through a running backend, as a wasmCloud host would", runGet},
		{"xkey", "generate a server xkey seed, or print the public key of one", runXKey},
		{"settings", "list every setting with its default", runSettings},
		{"version", "print the version", func(_ context.Context, e *env, args []string) int {
			if code, done := noArgs(e, "version", "Prints the version.", args); done {
				return code
			}
			fmt.Fprintln(e.stdout, Version)
			return exitOK
		}},
	}
}

// Main runs the binary with args (without the program name) and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(context.Background(), args, stdin, stdout, stderr, os.LookupEnv)
}

// Run is Main with a context (cancel it to stop `serve`) and an environment lookup, for in-process use by the demo
// and tests.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		return runManaged(ctx, e)
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "unknown command %q\n\n", name)
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("infisical-secrets-provider: a wasmCloud secrets backend for Infisical\n\n")
	b.WriteString("Usage:\n")
	b.WriteString("  infisical-secrets-provider            run as a managed wasmCloud provider (host data on stdin)\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  infisical-secrets-provider %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nEach command takes --help. Settings come from environment variables (see `settings`).\n")
	io.WriteString(w, b.String())
}
