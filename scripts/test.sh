#!/usr/bin/env bash
# The test command: checks formatting and lints (warnings are errors), installs moto into
# the project's venv, starts it on a free loopback port, runs every test of the workspace
# against it, and stops it again. Extra arguments go to `cargo test` (e.g. a test name
# filter).
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
start_moto
cargo test --workspace --locked "$@"
