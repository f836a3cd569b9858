#!/bin/sh
# RUSTC_WRAPPER for building the wasmCloud test tools (make wasmcloud-tools).
#
# rustc 1.95 overflows its query depth while computing the layout of some deeply nested async blocks in crates
# written for older compilers ("queries overflow the depth limit!", rust-lang/rust#142159; wasmcloud-host 0.27.1
# src/wasmbus/ctl.rs is one). The fix the compiler suggests is `#![recursion_limit = "256"]` in the crate; we pass
# the same attribute on the command line, for the affected crates only, instead of changing their sources.
# `-Zcrate-attr` is unstable, hence RUSTC_BOOTSTRAP for those crates alone.
rustc="$1"
shift
case " $* " in
*" --crate-name wasmcloud_host "* | *" --crate-name wadm "* | *" --crate-name wash "* | *" --crate-name wash_lib "*)
	RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" '-Zcrate-attr=recursion_limit="256"'
	;;
esac
exec "$rustc" "$@"
