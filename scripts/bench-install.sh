#!/usr/bin/env bash
# Measures `counterctl install` against moto: wall time, AWS calls in total and on the
# critical path, and what a re-install and an uninstall make.
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
start_moto
cargo bench --locked --bench install
