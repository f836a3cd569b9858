//go:build unix

package main

import (
	"runtime"
	"syscall"
)

// maxRSS is getrusage's peak resident set in bytes: Linux reports kilobytes, the BSDs and macOS bytes.
func maxRSS() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	if runtime.GOOS == "linux" {
		return int64(ru.Maxrss) << 10, true
	}
	return int64(ru.Maxrss), true
}
