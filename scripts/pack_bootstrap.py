"""Packs a bootstrap binary into a Lambda zip, or writes the assets manifest.

pack_bootstrap.py BINARY ZIP
    writes ZIP with one entry, `bootstrap`, mode 0755, fixed timestamp (same bytes in,
    same zip out, so an unchanged binary keeps its CodeSha256).
pack_bootstrap.py --manifest PATH --sources-sha256 HEX ARCH=ZIP=BINARY=TARGET...
"""
import argparse
import hashlib
import json
import os
import zipfile


def pack(binary, zip_path):
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 << 16)
    info.create_system = 3  # Unix, so the mode bits are honoured
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(binary, "rb") as f:
        data = f.read()
    with zipfile.ZipFile(zip_path, "w") as z:
        z.writestr(info, data, compresslevel=9)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def manifest(path, sources_sha256, entries):
    assets = {}
    for entry in entries:
        arch, zip_path, binary, target = entry.split("=")
        assets[arch] = {
            "zip": os.path.basename(zip_path),
            "zip_bytes": os.path.getsize(zip_path),
            "zip_sha256": sha256(zip_path),
            "binary_bytes": os.path.getsize(binary),
            "target": target,
        }
    document = {
        "sources_sha256": sources_sha256,
        "rebuild_command": "scripts/build-function.sh",
        "assets": assets,
    }
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest")
    parser.add_argument("--sources-sha256")
    parser.add_argument("args", nargs="+")
    options = parser.parse_args()
    if options.manifest:
        manifest(options.manifest, options.sources_sha256, options.args)
    else:
        pack(*options.args)
