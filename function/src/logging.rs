//! Structured logs: one JSON object per line on stdout, which Lambda sends to CloudWatch.

use tracing_subscriber::filter::LevelFilter;

/// Logs at the level in `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's logging config) or
/// `RUST_LOG` (a plain level such as `debug`), `info` by default.
pub fn init() {
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .flatten_event(true)
        .init();
}
