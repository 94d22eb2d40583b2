//! The function code counterctl deploys: the zip bundled into this binary, or one the
//! user names with `--function-zip`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::resources::function::Code;
use crate::settings::Architecture;

/// Built by `scripts/build-function.sh` from `function/`; see `assets/manifest.json`.
const X86_64_ZIP: &[u8] = include_bytes!("../assets/bootstrap-x86_64.zip");
/// Built only where the aarch64 target is installed (see `build.rs`).
#[cfg(bundled_arm64)]
const ARM64_ZIP: Option<&[u8]> = Some(include_bytes!("../assets/bootstrap-arm64.zip"));
#[cfg(not(bundled_arm64))]
const ARM64_ZIP: Option<&[u8]> = None;

/// The code for each instruction set: the bundled builds, or the one zip given.
pub(crate) struct Codes {
    given: Option<Arc<Vec<u8>>>,
}

impl Codes {
    pub(crate) fn load(zip_path: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self { given: zip_path.map(read_zip).transpose()?.map(Arc::new) })
    }

    /// The code for `architecture`; `None` when none was given and this build bundles
    /// none for it.
    pub(crate) fn code(&self, architecture: Architecture) -> Option<Code> {
        let zip = match (&self.given, architecture) {
            (Some(zip), _) => Arc::clone(zip),
            (None, Architecture::X86_64) => Arc::new(X86_64_ZIP.to_vec()),
            (None, Architecture::Arm64) => Arc::new(ARM64_ZIP?.to_vec()),
        };
        let architecture = match architecture {
            Architecture::X86_64 => aws_sdk_lambda::types::Architecture::X8664,
            Architecture::Arm64 => aws_sdk_lambda::types::Architecture::Arm64,
        };
        let sha256 = code_sha256(&zip);
        Some(Code { zip, sha256, architecture })
    }
}

/// Lambda's `CodeSha256`: the base64 SHA-256 of the zip.
fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// The bundled functions, for `--version`: each instruction set's `CodeSha256`, the
/// hash `status` compares with the deployed function's.
pub(crate) fn bundled_code() -> String {
    let mut bundled = vec![format!("x86_64 CodeSha256 {}", code_sha256(X86_64_ZIP))];
    if let Some(zip) = ARM64_ZIP {
        bundled.push(format!("arm64 CodeSha256 {}", code_sha256(zip)));
    }
    bundled.join(", ")
}

fn read_zip(path: &Path) -> anyhow::Result<Vec<u8>> {
    let zip = std::fs::read(path).with_context(|| format!("reading the function zip {}", path.display()))?;
    if !zip.starts_with(b"PK") {
        anyhow::bail!(
            "{} is not a zip file\nhint: --function-zip takes a zip with a `bootstrap` executable at its root",
            path.display()
        );
    }
    Ok(zip)
}
