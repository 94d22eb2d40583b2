//! Bundles the arm64 function only when `scripts/build-function.sh` built it from the
//! current sources, which `assets/manifest.json` then lists (the asset test checks the
//! listed zips against the sources): a zip left from an older build would deploy old code.

fn main() {
    println!("cargo::rerun-if-changed=assets/manifest.json");
    println!("cargo::rustc-check-cfg=cfg(bundled_arm64)");
    let manifest = std::fs::read_to_string("assets/manifest.json").expect("assets/manifest.json is readable");
    if manifest.contains("\"arm64\"") {
        println!("cargo::rustc-cfg=bundled_arm64");
    }
}
