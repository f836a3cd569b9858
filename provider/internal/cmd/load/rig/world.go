package rig

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/fakeinfisical"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/natstest"
)

// world is what both ways of running the comparison share: an embedded NATS server, a fake Infisical holding Key,
// and a component the backend trusts.
type world struct {
	URL    string          // the NATS server's client URL
	Entity *hostsim.Entity // a component the backend trusts

	ns   *server.Server
	fake *fakeinfisical.Server
}

// start starts the world; close stops what started, also after a failed start.
func (w *world) start() (err error) {
	if w.ns, err = natstest.Run(&server.Options{}); err != nil {
		return err
	}
	w.URL = w.ns.ClientURL()
	if w.fake, err = fakeinfisical.Start(); err != nil {
		return fmt.Errorf("fake Infisical: %w", err)
	}
	w.fake.AddIdentity(clientID, secret, project)
	w.fake.SetSecret(project, "prod", "/", Key, Value)
	if w.Entity, err = hostsim.Component(hostsim.NewIssuer(), "bench"); err != nil {
		return fmt.Errorf("component: %w", err)
	}
	return nil
}

func (w *world) close() {
	if w.fake != nil {
		w.fake.Close()
	}
	if w.ns != nil {
		w.ns.Shutdown()
	}
}

// backendEnv is the backend's settings: this world's NATS and Infisical, trusting Entity, with server xkey seed.
func (w *world) backendEnv(seed string) map[string]string {
	return map[string]string{
		"INFISICAL_BASE_URL":      w.fake.URL,
		"INFISICAL_CLIENT_ID":     clientID,
		"INFISICAL_CLIENT_SECRET": secret,
		"INFISICAL_PROJECT_ID":    project,
		"NATS_URL":                w.URL,
		"SERVER_XKEY_SEED":        seed,
		"TRUSTED_ISSUERS":         w.Entity.IssuerKey(),
		"BACKEND_NAME":            Backend,
	}
}
