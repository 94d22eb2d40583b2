//! `counterctl`: sequential unique IDs as an HTTP service on your own AWS account.

use std::process::ExitCode;

use clap::Parser;
use counterctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = match cli.command {
        // One thread for every connection and the commits between them, like Redis: no
        // request is handed between threads (see `local_store`).
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread(),
        // The AWS commands wait on many calls at once.
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime.enable_all().build().expect("a Tokio runtime");
    match runtime.block_on(counterctl::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
