// Package deploy has no code of its own: its tests hold the repository's deployment files (wadm.yaml,
// local.wadm.yaml, the example manifests in docs/examples, wasmcloud.toml, wit/, and the Kubernetes manifests in
// docs/kubernetes) to what wadm, wash and the Kubernetes API require, so a manifest that would be rejected, or that
// would deploy the provider wrongly, fails `go test` instead of a deployment.
package deploy
