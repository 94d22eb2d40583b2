//! `counterctl`: sequential unique IDs as an HTTP service on your own AWS account.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = counterctl::cli::Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    match runtime.block_on(counterctl::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
