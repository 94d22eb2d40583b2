#!/usr/bin/env bash
# The test command: checks formatting, lints and the client crate's docs (warnings are
# errors), installs moto into the project's venv, starts it on a free loopback port, runs
# every test of the workspace against it, and stops it again. Extra arguments go to `cargo test` (e.g. a test name
# filter).
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The client crate's documentation, whose every public item is documented.
RUSTDOCFLAGS="-D warnings" cargo doc --locked -p counterctl-client --all-features --no-deps --quiet
start_moto
cargo test --workspace --locked "$@"
