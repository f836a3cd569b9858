//go:build unix

package files

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", 10), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		size    int   // when the read succeeds
		wantErr error // nil = success
	}{
		{name: "small file", path: write("small", 100), size: 100},
		{name: "exactly the limit", path: write("limit", MaxSize), size: MaxSize},
		{name: "one byte over", path: write("over", MaxSize+1), wantErr: ErrTooLarge},
		{name: "endless device", path: "/dev/zero", wantErr: ErrNotRegular},
		{name: "directory", path: dir, wantErr: ErrNotRegular},
		{name: "named pipe without a writer (would block)", path: fifo, wantErr: ErrNotRegular},
		{name: "symbolic link to a file", path: link, size: 10},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Read(tt.path)
			if tt.wantErr == nil {
				if err != nil || len(b) != tt.size {
					t.Fatalf("Read = %d bytes, %v; want %d bytes", len(b), err, tt.size)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Read error = %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}
