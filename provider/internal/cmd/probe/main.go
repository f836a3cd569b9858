// Command probe is a test-only wasmCloud capability provider for `make test-wasmcloud`: it proves, from inside a
// provider that a real host started, what the host delivered to it. It answers the host protocol (health, links,
// shutdown) with the wasmbus package and replies on PROBE_SUBJECT (from its named config; default
// "isptest.probe.<provider id>") with its secrets, config and links as JSON.
//
// The secrets it reports are test values from a fake Infisical; it exists only in tests and never ships.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wasmbus"
)

// Report is what the probe answers on its subject.
type Report struct {
	ProviderKey string            `json:"provider_key"`
	HostID      string            `json:"host_id"`
	Config      map[string]string `json:"config"`
	// Secrets maps each delivered secret's name to "string:<value>" or "bytes:<base64>".
	Secrets map[string]string `json:"secrets"`
	Links   []ReportLink      `json:"links"`
}

// ReportLink is one link the probe knows, reduced to names.
type ReportLink struct {
	SourceID string `json:"source_id"`
	Target   string `json:"target"`
	IsTarget bool   `json:"is_target"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	hd, err := wasmbus.ReadHostData(ctx, os.Stdin, 5*time.Second)
	if err != nil {
		return fmt.Errorf("read host data: %w", err)
	}
	nc, err := nats.Connect(hd.LatticeRPCURL, wasmbus.NATSOptions(hd, log)...)
	if err != nil {
		return fmt.Errorf("connect to the lattice: %w", err)
	}
	defer nc.Close()

	var mu sync.Mutex
	links := map[string]ReportLink{}
	linkID := func(l wasmbus.Link) string { return l.SourceID + "\x00" + l.Target + "\x00" + l.Name }
	p, err := wasmbus.New(nc, hd, wasmbus.Handlers{
		LinkPut: func(_ context.Context, l wasmbus.Link) error {
			mu.Lock()
			defer mu.Unlock()
			links[linkID(l)] = ReportLink{SourceID: l.SourceID, Target: l.Target, IsTarget: l.IsTarget}
			return nil
		},
		LinkDel: func(_ context.Context, l wasmbus.Link) error {
			mu.Lock()
			defer mu.Unlock()
			delete(links, linkID(l))
			return nil
		},
	}, log)
	if err != nil {
		return fmt.Errorf("host protocol: %w", err)
	}

	subject := hd.Config["PROBE_SUBJECT"]
	if subject == "" {
		subject = "isptest.probe." + hd.ProviderKey
	}
	sub, err := nc.Subscribe(subject, func(msg *nats.Msg) {
		r := Report{ProviderKey: hd.ProviderKey, HostID: hd.HostID, Config: hd.Config, Secrets: map[string]string{}}
		for name, v := range hd.Secrets {
			if v.Kind == wasmbus.KindBytes {
				r.Secrets[name] = "bytes:" + base64.StdEncoding.EncodeToString(v.Bytes)
			} else {
				r.Secrets[name] = "string:" + v.String
			}
		}
		mu.Lock()
		for _, l := range links {
			r.Links = append(r.Links, l)
		}
		mu.Unlock()
		data, _ := json.Marshal(r)
		_ = msg.Respond(data)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	if err := p.Start(ctx); err != nil {
		return fmt.Errorf("host protocol subscriptions: %w", err)
	}
	log.Info("probe started", "subject", subject, "secrets", len(hd.Secrets))
	select {
	case <-p.Done():
	case <-ctx.Done():
		_ = p.Close()
	}
	return nil
}
