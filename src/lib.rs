//! The counterctl CLI: one module per concern.

//!
//! The library exposes what the binary and the integration tests use: [`run`], the
//! command line ([`cli`]) and the settings it parses into ([`settings`]), the AWS clients
//! ([`aws::Clients`]) and endpoint discovery ([`call`]). Everything else is
//! crate-private; ARCHITECTURE.md maps it.

mod admin_socket;
mod apply;
pub mod aws;
mod bundle;
pub mod call;
mod change;
pub mod cli;
mod counters;
mod deployed;
mod export;
mod install;
mod local_store;
mod logs;
mod metrics;
mod operator_policy;
mod plan;
mod progress;
mod regions;
mod resources;
mod retry;
mod rollback;
mod serve;
pub mod settings;
mod stack;
mod status;
mod uninstall;

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
        Command::Logs(args) => logs::run(args).await,
        Command::Rollback(args) => rollback::run(args).await,
        Command::Export(args) => export::run(args).await,
    }
}
