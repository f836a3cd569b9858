package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Profiles are served on loopback only, and the address the server got is written where the load tool reads it.
func TestServeDebugOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:0", "no-port"} {
		if err := serveDebug(addr, ""); err == nil {
			t.Errorf("serveDebug(%q) served; want it refused", addr)
		}
	}
	file := filepath.Join(t.TempDir(), "addr")
	if err := serveDebug("127.0.0.1:0", file); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(got), "127.0.0.1:") {
		t.Fatalf("debug address file = %q, %v", got, err)
	}
}
