#!/usr/bin/env bash
# Builds the Lambda bootstrap that counterctl ships, for provided.al2023 (glibc 2.34),
# and writes assets/bootstrap-<arch>.zip plus assets/manifest.json.
# x86_64 always; arm64 too when the aarch64-unknown-linux-gnu Rust target is installed.
source "$(dirname "$0")/lib.sh"
ensure_venv scripts/requirements-build.txt
cd "$repo_root"

GLIBC=2.34
architectures=(x86_64)
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    architectures+=(arm64)
fi

# A zip of an architecture not built now would be one from older sources.
rm -f assets/bootstrap-*.zip
manifest_entries=()
for arch in "${architectures[@]}"; do
    case "$arch" in
        x86_64) triple=x86_64-unknown-linux-gnu ;;
        arm64) triple=aarch64-unknown-linux-gnu ;;
    esac
    cargo zigbuild --locked --profile lambda -p counter-function --bin bootstrap --target "$triple.$GLIBC"
    binary="target/$triple/lambda/bootstrap"
    zip="assets/bootstrap-$arch.zip"
    python3 scripts/pack_bootstrap.py "$binary" "$zip"
    manifest_entries+=("$arch=$zip=$binary=$triple.$GLIBC")
done

python3 scripts/pack_bootstrap.py --manifest assets/manifest.json \
    --sources-sha256 "$(scripts/sources-sha256.sh)" "${manifest_entries[@]}"
echo "wrote assets/manifest.json"
