package wasmbus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestHostDataNeverPrintsCredentials(t *testing.T) {
	k := newTestKeys(t)
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userSeed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	secretBytes := []byte("bytes-secret-value")
	hd := &HostData{
		HostID: "NHOST", LatticeRPCPrefix: "default", LatticeRPCURL: "nats://127.0.0.1:4222", ProviderKey: "visible-provider-key",
		LatticeRPCUserJWT: "eyJ.jwt", LatticeRPCUserSeed: Redacted(userSeed),
		HostXKeyPublicKey: k.hostPub, ProviderXKeyPrivateKey: k.providerSeed,
		Secrets: map[string]SecretValue{"api_key": StringSecret("string-secret-value"), "cert": BytesSecret(secretBytes)},
	}
	link := Link{SourceID: "c1", Target: "visible-provider-key", Secrets: hd.Secrets, IsTarget: true}
	forbidden := []string{
		string(userSeed), k.providerSeed.Reveal(), "string-secret-value", "bytes-secret-value",
		fmt.Sprint([]int{98, 121, 116}), "98,121,116", "98 121 116", // the bytes secret as numbers
	}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, hd), fmt.Sprintf(verb, *hd), fmt.Sprintf(verb, link),
			fmt.Sprintf(verb, hd.LatticeRPCUserSeed), fmt.Sprintf(verb, hd.Secrets["cert"]))
	}
	for _, newHandler := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	} {
		var buf bytes.Buffer
		logger := slog.New(newHandler(&buf))
		logger.Debug("host config", slog.Any("hd", hd), slog.Any("value", *hd), slog.Any("link", link),
			slog.Any("secrets", hd.Secrets), slog.Any("seed", hd.LatticeRPCUserSeed))
		outputs = append(outputs, buf.String())
	}
	raw, err := json.Marshal(hd)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(raw))

	for i, out := range outputs {
		for _, f := range forbidden {
			if strings.Contains(out, f) {
				t.Errorf("output %d contains %q:\n%s", i, f, out)
			}
		}
	}
	all := strings.Join(outputs, "\n")
	for _, want := range []string{"[redacted]", "visible-provider-key", "api_key"} {
		if !strings.Contains(all, want) {
			t.Errorf("outputs never mention %q; the test would pass vacuously", want)
		}
	}
	if hd.LatticeRPCUserSeed.Reveal() != string(userSeed) {
		t.Error("Reveal does not return the value")
	}
}
