// Command demo runs the whole backend on embedded defaults and fetches a secret end to end, the way a wasmCloud host
// would: an embedded NATS server, a fake Infisical seeded with a demo project, the backend (`serve`, in-process), and
// a host-style client. It prints each step and exits 0 when the secret arrived. It is not part of the shipped binary.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/secrets"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	step("starting an embedded NATS server")
	ns, err := natstest.Run(&server.Options{})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	fmt.Println("    ", ns.ClientURL())

	step("starting a fake Infisical with a demo project")
	fake, err := fakeinfisical.Start()
	if err != nil {
		return err
	}
	defer fake.Close()
	fake.AddIdentity("demo-client-id", "demo-client-secret", "demo-project")
	fake.SetSecret("demo-project", "prod", "/", "DB_PASSWORD", "correct-horse-battery-staple")
	fake.SetSecret("demo-project", "prod", "/payments", "API_KEY", `{"key":"pk_live_demo","region":"eu"}`)
	fmt.Println("    ", fake.URL, "project demo-project, environment prod: /DB_PASSWORD, /payments/API_KEY")

	issuer := hostsim.NewIssuer()
	component, err := hostsim.Component(issuer, "demo-component")
	if err != nil {
		return err
	}
	xkey, err := nkeys.CreateCurveKeys()
	if err != nil {
		return err
	}
	seed, _ := xkey.Seed()
	env := map[string]string{
		"INFISICAL_BASE_URL":      fake.URL,
		"INFISICAL_CLIENT_ID":     "demo-client-id",
		"INFISICAL_CLIENT_SECRET": "demo-client-secret",
		"INFISICAL_PROJECT_ID":    "demo-project",
		"NATS_URL":                ns.ClientURL(),
		"SERVER_XKEY_SEED":        string(seed),
		"TRUSTED_ISSUERS":         component.IssuerKey(),
	}
	step("starting the backend: infisical-secrets-provider serve (TRUSTED_ISSUERS=%s)", component.IssuerKey())
	logs := &hostsim.SyncBuffer{}
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan int, 1)
	go func() {
		served <- cli.Run(serveCtx, []string{"serve"}, strings.NewReader(""), logs, logs, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
	}()
	defer func() {
		stopServe()
		<-served
	}()

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	host, err := hostsim.NewHost(nc, secrets.DefaultPrefix, "infisical")
	if err != nil {
		return err
	}

	step("host asks wasmcloud.secrets.v1alpha1.infisical.server_xkey")
	var serverKey string
	// The backend subscribes a moment after it starts; "no responders" comes back at once until then.
	for deadline := time.Now().Add(15 * time.Second); ; {
		rctx, rcancel := context.WithTimeout(ctx, 250*time.Millisecond)
		serverKey, err = host.Secrets.ServerXKey(rctx)
		rcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backend never answered server_xkey: %w\n%s", err, logs.String())
		}
		select {
		case code := <-served:
			return fmt.Errorf("backend exited with %d:\n%s", code, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Println("     server xkey:", serverKey)

	for _, ref := range []hostsim.Ref{
		{Key: "DB_PASSWORD", Application: "demo-app"},
		{Key: "/payments/API_KEY", Field: "key", Application: "demo-app"},
	} {
		step("host sends a sealed get for key %q field %q as component %s (%s)", ref.Key, ref.Field, component.Name, component.Subject)
		start := time.Now()
		s, err := host.Fetch(ctx, component, ref)
		if err != nil {
			return fmt.Errorf("fetch %s: %w\nbackend logs:\n%s", ref.Key, err, logs.String())
		}
		if s.StringSecret == nil {
			return fmt.Errorf("fetch %s: no string value", ref.Key)
		}
		fmt.Printf("     decrypted reply in %s: version %s, value %q\n", time.Since(start).Round(time.Millisecond), s.Version, *s.StringSecret)
	}

	step("a component from an untrusted issuer is refused")
	intruder, err := hostsim.Component(hostsim.NewIssuer(), "intruder")
	if err != nil {
		return err
	}
	if _, err := host.Fetch(ctx, intruder, hostsim.Ref{Key: "DB_PASSWORD"}); err != nil {
		fmt.Println("     host would say: server error:", err)
	} else {
		return fmt.Errorf("an untrusted issuer was served")
	}

	step("backend log lines")
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		fmt.Println("    ", line)
	}
	step("done: Infisical listed %d folder(s) and read %d secret(s) on their own, %d login(s)", fake.Lists(), fake.Reads(), fake.Logins())
	return nil
}
