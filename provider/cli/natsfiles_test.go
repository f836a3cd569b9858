package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

// NATS_CREDS and NATS_TLS_CA name files the provider reads: a huge or endless one must fail with a clear error
// before anything is read whole (the options are checked before any connection is tried).
func TestNATSFilesAreReadCapped(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge")
	if err := os.WriteFile(huge, []byte(strings.Repeat("x", 2<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		set     func(s *settings.Settings)
		setting string
	}{
		{name: "credentials over 1 MiB", set: func(s *settings.Settings) { s.NATSCreds = huge }, setting: "NATS_CREDS"},
		{name: "CA over 1 MiB", set: func(s *settings.Settings) { s.NATSTLSCA = huge }, setting: "NATS_TLS_CA"},
		{name: "credentials from a device", set: func(s *settings.Settings) { s.NATSCreds = "/dev/zero" }, setting: "NATS_CREDS"},
		{name: "CA from a device", set: func(s *settings.Settings) { s.NATSTLSCA = "/dev/zero" }, setting: "NATS_TLS_CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &settings.Settings{NATSURL: "nats://127.0.0.1:1"}
			tt.set(s)
			opts := nats.GetDefaultOptions()
			var err error
			for _, o := range natsOptions(slog.New(slog.DiscardHandler), s) {
				if err = o(&opts); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.setting) ||
				!(strings.Contains(err.Error(), "larger than 1 MiB") || strings.Contains(err.Error(), "not a regular file")) {
				t.Fatalf("options error = %v; want one naming %s and the size or file-type limit", err, tt.setting)
			}
		})
	}
}
