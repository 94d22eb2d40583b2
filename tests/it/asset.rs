//! The Lambda zips counterctl embeds: built from the current sources, for the right
//! machine, and runnable on provided.al2023 (glibc 2.34).

use std::io::Read;
use std::path::{Path, PathBuf};

use object::{Architecture, Object, ObjectSection};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::repo_root;

const REBUILD: &str = "scripts/build-function.sh";
/// provided.al2023 ships glibc 2.34.
const MAX_GLIBC: (u32, u32) = (2, 34);
/// A zip larger than this slows cold starts and uploads; see docs/figures.md.
const ZIP_BUDGET_BYTES: u64 = 2_500_000;

fn manifest() -> Value {
    let text = std::fs::read_to_string(repo_root().join("assets/manifest.json")).expect("assets/manifest.json exists");
    serde_json::from_str(&text).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn files_below(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                files_below(&path, found);
            }
        } else {
            found.push(path);
        }
    }
}

/// The same hash as scripts/sources-sha256.sh: `sha256sum` lines for every file under
/// function/ (sorted by path) and the workspace's Cargo.toml and Cargo.lock, hashed.
fn sources_sha256() -> String {
    let root = repo_root();
    let mut files = Vec::new();
    files_below(&root.join("function"), &mut files);
    let mut relative: Vec<String> =
        files.iter().map(|path| path.strip_prefix(&root).unwrap().to_str().unwrap().to_owned()).collect();
    relative.sort();
    relative.extend(["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]);
    let listing: String = relative
        .iter()
        .map(|path| format!("{}  {path}\n", sha256_hex(&std::fs::read(root.join(path)).unwrap())))
        .collect();
    sha256_hex(listing.as_bytes())
}

#[test]
fn the_shipped_zip_is_built_from_the_current_sources() {
    assert_eq!(
        manifest()["sources_sha256"].as_str().unwrap(),
        sources_sha256(),
        "function/, Cargo.toml or Cargo.lock changed since assets/ was built: run {REBUILD} and commit assets/"
    );
}

fn bootstrap_of(zip_path: &Path) -> (Vec<u8>, u32) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).unwrap();
    assert_eq!(archive.len(), 1, "{}: only the bootstrap", zip_path.display());
    let mut entry = archive.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), "bootstrap");
    let mode = entry.unix_mode().expect("the entry has Unix permissions");
    let mut binary = Vec::new();
    entry.read_to_end(&mut binary).unwrap();
    (binary, mode)
}

/// The highest `GLIBC_x.y` symbol version the binary needs.
fn highest_glibc(binary: &[u8]) -> (u32, u32) {
    let elf = object::File::parse(binary).unwrap();
    let dynstr = elf.section_by_name(".dynstr").expect("dynamically linked against glibc").data().unwrap();
    dynstr
        .split(|byte| *byte == 0)
        .filter_map(|name| std::str::from_utf8(name).ok()?.strip_prefix("GLIBC_"))
        .filter_map(|version| {
            let mut parts = version.split('.').map(str::parse::<u32>);
            Some((parts.next()?.ok()?, parts.next().unwrap_or(Ok(0)).ok()?))
        })
        .max()
        .expect("GLIBC symbol versions")
}

#[test]
fn each_zip_holds_an_executable_bootstrap_for_its_machine_and_glibc_2_34() {
    let manifest = manifest();
    let assets = manifest["assets"].as_object().unwrap();
    assert!(assets.contains_key("x86_64"), "the x86_64 zip is always built");
    for (arch, asset) in assets {
        let zip_path = repo_root().join("assets").join(asset["zip"].as_str().unwrap());
        let zip_bytes = std::fs::read(&zip_path).unwrap();
        assert_eq!(sha256_hex(&zip_bytes), asset["zip_sha256"], "{arch}: zip differs from the manifest; run {REBUILD}");
        assert!(zip_bytes.len() as u64 <= ZIP_BUDGET_BYTES, "{arch}: zip is {} bytes", zip_bytes.len());

        let (binary, mode) = bootstrap_of(&zip_path);
        assert_eq!(mode & 0o777, 0o755, "{arch}: bootstrap mode is {mode:o}");
        let machine = object::File::parse(&*binary).unwrap().architecture();
        let expected = match arch.as_str() {
            "x86_64" => Architecture::X86_64,
            "arm64" => Architecture::Aarch64,
            other => panic!("unexpected architecture {other}"),
        };
        assert_eq!(machine, expected, "{arch}");
        let glibc = highest_glibc(&binary);
        assert!(glibc <= MAX_GLIBC, "{arch}: needs GLIBC_{}.{}, provided.al2023 has 2.34", glibc.0, glibc.1);
    }
}

#[test]
fn every_zip_in_assets_is_one_the_manifest_lists_so_none_is_left_from_an_older_build() {
    let manifest = manifest();
    let listed: Vec<&str> =
        manifest["assets"].as_object().unwrap().values().map(|a| a["zip"].as_str().unwrap()).collect();
    for entry in std::fs::read_dir(repo_root().join("assets")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".zip") {
            assert!(
                listed.contains(&name.as_str()),
                "assets/{name} is not in the manifest: remove it or run {REBUILD}"
            );
        }
    }
}

#[tokio::test]
async fn the_version_names_the_code_hash_of_each_bundled_function() {
    use base64::Engine;
    let run = crate::support::cli::counterctl(&["--version"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (arch, asset) in manifest()["assets"].as_object().unwrap() {
        let zip = std::fs::read(repo_root().join("assets").join(asset["zip"].as_str().unwrap())).unwrap();
        // Lambda's CodeSha256, as status and the console show it.
        let code_sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&zip));
        assert!(run.stdout.contains(&format!("{arch} CodeSha256 {code_sha256}")), "{arch}: {}", run.stdout);
    }
    assert!(run.stdout.starts_with(&format!("counterctl {} ", env!("CARGO_PKG_VERSION"))), "{}", run.stdout);
}
