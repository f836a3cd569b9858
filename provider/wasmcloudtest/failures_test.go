//go:build wasmcloud

package wasmcloudtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Scenario 7: failures as users see them. Each case records what `wash app status`, `wash get inventory`, the
// provider's health reply and the host's log show, and asserts the parts docs/operations.md (troubleshooting)
// tells users to look for.
func TestFailuresAsUsersSeeThem(t *testing.T) {
	t.Run("wrong client secret", func(t *testing.T) {
		l := startLattice(t, latticeOptions{})
		fake := newFake(t)
		deployBackend(t, l, fake, backendOptions{trustedIssuers: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW", clientSecret: "not-the-secret"})
		ev := l.recordEvents()
		l.waitEvent(ev, "provider_started", "provider_id", providerID, 120*time.Second)
		waitFor(t, "a failed login", 60*time.Second, func() (bool, string) {
			_, failed := loginsBy(fake, clientID)
			return failed > 0, "no failed login yet"
		})
		status, raw := l.appStatus(providerApp)
		health := l.health(providerID)
		t.Logf("wash app status: %s\n%s", status, raw)
		t.Logf("provider health reply: %s", health)
		t.Logf("inventory lists the provider: %v", l.hasProvider(providerID))
		t.Logf("host log lines naming the failure:\n%s", grepLines(l.host.out.String(), "Invalid credentials", "authentication"))
		if !strings.Contains(health, "Invalid credentials") && !strings.Contains(health, "authentication") {
			t.Errorf("health reply %s does not name the failed login", health)
		}
		if !strings.Contains(l.host.out.String(), "Invalid credentials") {
			t.Errorf("the host's log (where the provider's stderr goes) does not show Infisical's answer")
		}
	})

	t.Run("no trusted issuer", func(t *testing.T) {
		l := startLattice(t, latticeOptions{})
		fake := newFake(t)
		deployBackend(t, l, fake, backendOptions{trustedIssuers: ""})
		ev := l.recordEvents()
		l.waitEvent(ev, "provider_started", "provider_id", providerID, 120*time.Second)
		health := ""
		waitFor(t, "a health reply", 30*time.Second, func() (bool, string) {
			health = l.health(providerID)
			return strings.Contains(health, "healthy"), health
		})
		status, raw := l.appStatus(providerApp)
		t.Logf("wash app status: %s\n%s", status, raw)
		t.Logf("provider health reply: %s", health)
		t.Logf("host log lines naming the failure:\n%s", grepLines(l.host.out.String(), "TRUSTED_ISSUERS"))
		if !strings.Contains(health, "TRUSTED_ISSUERS") {
			t.Errorf("health reply %s does not name TRUSTED_ISSUERS", health)
		}
	})
}

// health asks a provider's health subject as the host does and returns the raw reply (or the error).
func (l *lattice) health(providerID string) string {
	msg, err := l.nc.Request(fmt.Sprintf("wasmbus.rpc.default.%s.health", providerID), nil, 3*time.Second)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(msg.Data)
}

func grepLines(out string, needles ...string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		for _, n := range needles {
			if strings.Contains(line, n) {
				b.WriteString(tail(line, 600) + "\n")
				break
			}
		}
	}
	return b.String()
}
