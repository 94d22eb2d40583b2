#!/usr/bin/env bash
# The test command: checks formatting, lints and the client crate's docs (warnings are
# errors), that the crates package, installs moto into the project's venv, starts it on a free loopback port, runs
# every test of the workspace against it, and stops it again. Extra arguments go to `cargo test` (e.g. a test name
# filter).
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The client crate's documentation, whose every public item is documented.
RUSTDOCFLAGS="-D warnings" cargo doc --locked -p counterctl-client --all-features --no-deps --quiet
# Every crate packages (versions on the path dependencies, metadata), and counterctl's
# package carries the function zips it embeds. Not verified by building: the tests build.
cargo package --workspace --locked --no-verify --quiet
for zip in assets/*.zip; do
    cargo package --list --locked -p counterctl | grep -qx "$zip" || { echo "the counterctl package lacks $zip" >&2; exit 1; }
done
start_moto
cargo test --workspace --locked "$@"
