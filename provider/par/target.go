package par

import (
	"fmt"
	"regexp"
)

// Target returns the host's name for a Go platform: Rust's {ARCH}-{OS} (std::env::consts), which is how a host
// picks its binary out of a PAR, e.g. linux/amd64 -> x86_64-linux, darwin/arm64 -> aarch64-macos.
func Target(goos, goarch string) string {
	arch := map[string]string{
		"amd64":    "x86_64",
		"arm64":    "aarch64",
		"386":      "x86",
		"ppc64":    "powerpc64",
		"ppc64le":  "powerpc64",
		"loong64":  "loongarch64",
		"mips64le": "mips64",
		"mipsle":   "mips",
	}[goarch]
	if arch == "" {
		arch = goarch
	}
	os := goos
	if goos == "darwin" {
		os = "macos"
	}
	return arch + "-" + os
}

var targetPattern = regexp.MustCompile(`^[a-z0-9_]+-[a-z0-9_]+$`)

// checkTarget keeps target names to what a host can ask for and what is safe as a file name.
func checkTarget(t string) error {
	if !targetPattern.MatchString(t) {
		return fmt.Errorf("invalid target %q: want {arch}-{os} such as x86_64-linux", t)
	}
	return nil
}
