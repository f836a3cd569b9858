// Package files reads the small files that settings name (tokens, CA certificates, key and credentials files) with
// a size cap. A setting that names /dev/zero, a pipe or a huge file then fails with an error that says so, instead
// of blocking or reading until memory runs out.
package files

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize is the largest file Read returns: far above any token, certificate bundle or key file.
const MaxSize = 1 << 20

// Errors Read wraps, so callers and tests can tell the cases apart.
var (
	ErrTooLarge   = errors.New("larger than 1 MiB")
	ErrNotRegular = errors.New("not a regular file")
)

// Read returns the content of path, a regular file (symbolic links are followed) of at most MaxSize bytes. Errors
// name the file, never its content.
func Read(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO for reading blocks until a writer comes.
	if err := checkRegular(path, os.Stat); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file may have been replaced between the two calls; what was opened is what counts.
	if err := checkRegular(path, func(string) (os.FileInfo, error) { return f.Stat() }); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s is %w, the limit for a file named in a setting: point the setting at the token, certificate or key file itself", path, ErrTooLarge)
	}
	return b, nil
}

func checkRegular(path string, stat func(string) (os.FileInfo, error)) error {
	fi, err := stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is %w (it is a %s): point the setting at the token, certificate or key file itself", path, ErrNotRegular, kind(fi.Mode()))
	}
	return nil
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}
