// Command docs rewrites the settings table in docs/configuration.md (or the file named by its argument) from the
// code (`make docs`).
package main

import (
	"fmt"
	"os"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/settings"
)

func main() {
	path := "docs/configuration.md"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := settings.ReplaceTable(string(raw))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(1)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
