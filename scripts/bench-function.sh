#!/usr/bin/env bash
# Measures the shipped bootstrap: init time and warm request time against moto.
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
start_moto
python3 -c 'import json; m = json.load(open("assets/manifest.json"))
for arch, a in m["assets"].items(): print(f"{arch}: zip {a[\"zip_bytes\"]} bytes, binary {a[\"binary_bytes\"]} bytes")'
cargo bench --locked --bench function
