// Package par builds, opens and verifies wasmCloud provider archives (PAR): a gzipped tar holding claims.jwt (a
// wascap JWT signed by an account key), an optional world.wasm and one {target}.bin per platform.
//
// The host loads a PAR by file stem (claims, world, anything else is a library), checks each loaded binary against
// claims.wascap.target_hashes and does not check the signature; secrets backends do, because the claims token is
// the provider's identity in every secret request. So Build always signs, and Verify checks everything a host or a
// backend would.
package par
