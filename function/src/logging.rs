//! Structured logs: one JSON object per line on stdout, which Lambda sends to CloudWatch
//! (`counterctl serve --access-log` writes the same lines to stderr).

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Logs to stdout at the level in `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's logging
/// config) or `RUST_LOG` (a plain level such as `debug`), `info` by default.
pub fn init() {
    init_with(std::io::stdout);
}

/// As [`init`], to `writer`.
pub fn init_with<W>(writer: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    init_at(writer, LevelFilter::INFO);
}

/// As [`init_with`], at `default` unless the environment names a level.
pub fn init_at<W>(writer: W, default: LevelFilter)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse::<LevelFilter>().ok())
        .unwrap_or(default);
    tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .flatten_event(true)
        .init();
}
