//go:build wasmcloud

package wasmcloudtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/registrytest"
)

// Issue 16, part 1: the provider archive goes through an OCI registry as production deployments get it. `make push`
// and the real `wash push` publish the same manifest, `wash inspect` of the reference shows our claims, and the real
// host starts the provider from the registry, alone and through the shipped manifest naming the reference.
func TestProviderFromOCIRegistry(t *testing.T) {
	reg := registrytest.Start(t)
	l := startLattice(t, latticeOptions{hostArgs: []string{"--insecure-registry", reg.Host}})
	fake := newFake(t)
	ev := l.recordEvents()

	var pushed parFile
	var ref string
	deployBackend(t, l, fake, backendOptions{trustedIssuers: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW",
		image: func(p parFile) string {
			pushed = p
			ref = reg.Ref("infisical-secrets-provider", "0.1.0")
			makeDigest := makePush(t, ref, p.path)
			out, err := runWash(l.tools.wash, l.washEnv(), "", "push", reg.Ref("infisical-secrets-provider", "0.1.0-wash"), p.path, "--insecure", "-o", "json")
			if err != nil {
				t.Fatal(err)
			}
			washDigest, _ := decodeJSON(t, out)["digest"].(string)
			if washDigest == "" || washDigest != makeDigest {
				t.Errorf("wash push digest %q, make push digest %q: want the same manifest", washDigest, makeDigest)
			}
			return ref
		}})

	m := decodeJSON(t, mustRun(t, l, "inspect", ref, "--insecure"))
	if m["service"] != pushed.subject || m["issuer"] != pushed.issuer || m["name"] != "infisical-secrets-provider" {
		t.Errorf("wash inspect %s: service %v issuer %v name %v; want the pushed archive's %s, %s", ref, m["service"], m["issuer"], m["name"], pushed.subject, pushed.issuer)
	}

	started := l.waitEvent(ev, "provider_started", "provider_id", providerID, 120*time.Second)
	if got := started.Data["image_ref"]; got != ref {
		t.Errorf("the host started the provider from %v, want the registry reference %s", got, ref)
	}
	l.waitAppStatus(providerApp, "deployed", 120*time.Second)
	l.waitEvent(ev, "health_check_passed", "provider_id", providerID, 90*time.Second)
	if ok, _ := loginsBy(fake, clientID); ok == 0 {
		t.Errorf("the provider pulled from the registry never logged in")
	}

	// And started directly from the reference, as `wash start provider` users do.
	l.mustWash("start", "provider", ref, "isp-direct", "--skip-wait")
	direct := l.waitEvent(ev, "provider_started", "provider_id", "isp-direct", 120*time.Second)
	if got := direct.Data["image_ref"]; got != ref {
		t.Errorf("wash start provider %s: the host started it from %v", ref, got)
	}
}

// makePush runs `make push` as a user would and returns the digest it prints (REF@DIGEST).
func makePush(t *testing.T, ref, par string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "push", "REF="+ref, "PAR="+par, "INSECURE=1")
	cmd.Dir = moduleRoot(t)
	cmd.Env = os.Environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make push: %v\n%s\n%s", err, stdout.Bytes(), stderr.Bytes())
	}
	line := strings.TrimSpace(stdout.String())
	_, digest, ok := strings.Cut(line[strings.LastIndex(line, "\n")+1:], "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("make push printed %q, want REF@sha256:…", line)
	}
	return digest
}

func mustRun(t *testing.T, l *lattice, args ...string) []byte {
	t.Helper()
	out, err := runWash(l.tools.wash, l.washEnv(), "", append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
