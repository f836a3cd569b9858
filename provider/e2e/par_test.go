package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/hostsim"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/par"
	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/wascap"
)

// TestPARRunsAsAManagedProvider builds a PAR with the same command `make par` uses, reopens and verifies it, and runs
// the extracted native binary the way a host does, to a healthy health reply.
func TestPARRunsAsAManagedProvider(t *testing.T) {
	bin := hostsim.Binary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "infisical-secrets-provider.par.gz")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "run", "./provider/internal/cmd/par", "--name", "Infisical Secrets Provider",
		"--vendor", "infisical-secrets-provider", "--version", "0.1.0", "--keys-dir", filepath.Join(dir, "keys"),
		"--out", out, "--bin", par.NativeTarget()+"="+bin)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("par: %v\n%s", err, b)
	}

	a, err := par.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := wascap.CheckPublicKey(a.Claims.Subject, wascap.PrefixService); err != nil {
		t.Fatalf("subject %q: %v", a.Claims.Subject, err)
	}
	// The claims are the provider's entity JWT for its own secrets: this backend must accept them.
	entity, err := wascap.ParseEntity(a.Token, time.Now())
	if err != nil {
		t.Fatalf("the PAR's claims are not a valid provider JWT: %v", err)
	}
	if entity.Kind != wascap.KindProvider || entity.Subject != a.Claims.Subject {
		t.Fatalf("entity = %+v", entity)
	}
	extracted, err := a.Extract(t.TempDir(), par.NativeTarget())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(extracted); err != nil || fi.Mode()&0o100 == 0 {
		t.Fatalf("extracted binary %s not executable: %v", extracted, err)
	}

	h := newHarness(t)
	cfg := map[string]string{}
	for k, v := range h.env {
		cfg[k] = v
	}
	hd, _, err := hostsim.NewHostData(h.host.ID, h.url, providerKey, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hostsim.Start(t, extracted, hd.Line())
	eventually.True(t, "a healthy health reply from the PAR's binary", func() bool {
		healthy, _, err := hostsim.Health(context.Background(), h.nc, "default", providerKey)
		return err == nil && healthy
	})
	if got := h.mustString(hostsim.Ref{Key: "DB_PASSWORD"}); got != "v2-password" {
		t.Fatalf("value = %q", got)
	}
}
