//! `counterctl`: sequential unique IDs as an HTTP service on your own AWS account.
//!
//! Exit codes, as ripgrep's: 0 success, 1 a negative answer (`status` found drift), 2 an
//! error or a refusal (clap's usage errors exit 2 too). A closed stdout (`| head`) ends
//! the command quietly.

use std::process::ExitCode;

use counterctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let mut runtime = match cli.command {
        // One thread for every connection and the commits between them, like Redis: no
        // request is handed between threads (see `local_store`).
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread(),
        // The AWS commands wait on many calls at once.
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime.enable_all().build().expect("a Tokio runtime");
    // Boxed: the command's whole state machine is one value, which `block_on` would pin
    // on the main thread's stack; in debug builds install's overflowed it.
    match runtime.block_on(Box::pin(counterctl::run(cli))) {
        Ok(code) => code,
        Err(error) if broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
