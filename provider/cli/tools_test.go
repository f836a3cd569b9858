package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// get --out writes a secret value: a symbolic link planted at FILE must not redirect it to the link's target (say,
// a file another user reads, or one the link's owner wants overwritten).
func TestWritePrivateRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "out")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err := writePrivate(link, []byte("secret value"))
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("writePrivate through a symlink: %v; want an error naming the symbolic link", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "original" {
		t.Fatalf("the link's target was written: %q", b)
	}

	// A plain file, new or existing, is written with mode 0600.
	plain := filepath.Join(dir, "plain")
	for range 2 {
		if err := writePrivate(plain, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Lstat(plain); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plain file: %v, %v", fi.Mode(), err)
	}
}
