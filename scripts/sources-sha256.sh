#!/usr/bin/env bash
# Prints the hash of everything the bootstrap is built from: the files under function/
# and the workspace's Cargo.toml and Cargo.lock. tests/it/asset.rs computes the same.
set -euo pipefail
cd "$(dirname "$0")/.."
{
    find function -type f -not -path '*/target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum Cargo.toml Cargo.lock
} | sha256sum | cut -d' ' -f1
