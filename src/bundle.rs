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
const ARM64_ZIP: &[u8] = include_bytes!("../assets/bootstrap-arm64.zip");

/// The code for each instruction set: the bundled builds, or the one zip given.
pub(crate) struct Codes {
    given: Option<Arc<Vec<u8>>>,
}

impl Codes {
    pub(crate) fn load(zip_path: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self { given: zip_path.map(read_zip).transpose()?.map(Arc::new) })
    }

    pub(crate) fn code(&self, architecture: Architecture) -> Code {
        let zip = match (&self.given, architecture) {
            (Some(zip), _) => Arc::clone(zip),
            (None, Architecture::X86_64) => Arc::new(X86_64_ZIP.to_vec()),
            (None, Architecture::Arm64) => Arc::new(ARM64_ZIP.to_vec()),
        };
        let architecture = match architecture {
            Architecture::X86_64 => aws_sdk_lambda::types::Architecture::X8664,
            Architecture::Arm64 => aws_sdk_lambda::types::Architecture::Arm64,
        };
        // Lambda's `CodeSha256`: the base64 SHA-256 of the zip.
        let sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip.as_slice()));
        Code { zip, sha256, architecture }
    }
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
