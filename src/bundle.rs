//! The function code counterctl deploys: the zip bundled into this binary, or one the
//! user names with `--function-zip`.

use std::path::Path;

use anyhow::Context;

use crate::cli::{Architecture, Settings};
use crate::resources::function::FunctionSpec;

/// Built by `scripts/build-function.sh` from `function/`; see `assets/manifest.json`.
const X86_64_ZIP: &[u8] = include_bytes!("../assets/bootstrap-x86_64.zip");
const ARM64_ZIP: &[u8] = include_bytes!("../assets/bootstrap-arm64.zip");

/// The function `settings` describe, with the zip at `zip_path` or the bundled one.
pub fn function_spec(zip_path: Option<&Path>, settings: &Settings) -> anyhow::Result<FunctionSpec> {
    let zip = match (zip_path, settings.architecture) {
        (Some(path), _) => read_zip(path)?,
        (None, Architecture::X86_64) => X86_64_ZIP.to_vec(),
        (None, Architecture::Arm64) => ARM64_ZIP.to_vec(),
    };
    let architecture = match settings.architecture {
        Architecture::X86_64 => aws_sdk_lambda::types::Architecture::X8664,
        Architecture::Arm64 => aws_sdk_lambda::types::Architecture::Arm64,
    };
    Ok(FunctionSpec { zip, architecture, memory_mb: settings.memory, timeout_seconds: settings.timeout })
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
