#!/usr/bin/env bash
# Measures the shipped bootstrap: sizes, init time and warm request time against moto.
source "$(dirname "$0")/lib.sh"
cd "$repo_root"
start_moto
python3 - <<'PY'
import json
manifest = json.load(open("assets/manifest.json"))
for arch, asset in manifest["assets"].items():
    print(f"{arch}: zip {asset['zip_bytes']} bytes, binary {asset['binary_bytes']} bytes")
PY
cargo bench --locked --bench function
