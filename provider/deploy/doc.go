// Package deploy has no code of its own: its tests hold the repository's deployment files (wadm.yaml,
// local.wadm.yaml, the example manifests in docs/examples, wasmcloud.toml, wit/) to what wadm and wash require, so
// a manifest that wadm would reject, or that would deploy the provider wrongly, fails `go test` instead of a
// deployment.
package deploy
