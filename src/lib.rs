//! The counterctl CLI: one module per concern.

pub mod cli;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one command; `Ok` carries the exit code of a command that ran to its end (a
/// `status` that found drift exits non-zero without being an error).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Install(_) | Command::Status(_) | Command::Increment(_) | Command::Get(_) | Command::Uninstall(_) => {
            anyhow::bail!("not implemented yet")
        }
        Command::Serve(_) => anyhow::bail!("not implemented yet"),
    }
}
