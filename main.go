// Command infisical-secrets-provider is a wasmCloud secrets backend that serves secrets kept in Infisical. Run with no
// arguments it is a managed wasmCloud capability provider (host data on stdin); `serve` runs it standalone.
package main

import (
	"os"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
