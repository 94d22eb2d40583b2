//! The counterctl CLI: one module per concern.

pub mod admin_socket;
pub mod apply;
pub mod aws;
pub mod bundle;
pub mod call;
pub mod cli;
pub mod counters;
pub mod deployed;
pub mod install;
pub mod local_store;
pub mod plan;
pub mod progress;
pub mod resources;
pub mod retry;
pub mod serve;
pub mod stack;
pub mod status;
pub mod uninstall;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one command; `Ok` carries the exit code of a command that ran to its end (a
/// `status` that found drift exits non-zero without being an error).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Install(args) => install::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Increment(args) => call::increment(args).await,
        Command::Get(args) => call::get(args).await,
        Command::Uninstall(args) => uninstall::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Counters(args) => counters::run(args).await,
    }
}
