//! `counterctl logs`: the function's log lines from its log group, oldest first, and
//! with `--follow` the new ones as they arrive, each printed once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use serde_json::Value;

use crate::aws::{Clients, Operation};
use crate::cli::{LogsArgs, OutputFormat};
use crate::progress::out;

/// How often `--follow` asks for new lines. FilterLogEvents is limited per account and
/// region (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/logs/cloudwatch_limits_cwl.html),
/// which other tools share.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// Each poll of `--follow` asks again for this much before the newest line printed:
/// a line can arrive in the log group after one with a later timestamp. What was
/// printed already is recognised by its event id.
const LATE_LINES: Duration = Duration::from_secs(30);

pub(crate) async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws).await?;
    let group = crate::stack::log_group_of(&args.stack.name);
    let since = millis(SystemTime::now() - args.since);
    let mut printed = Printed::default();
    let mut from = since;
    loop {
        let mut pages = clients
            .logs
            .filter_log_events()
            .log_group_name(&group)
            .start_time(from)
            .set_filter_pattern(args.filter.clone())
            .into_paginator()
            .send();
        // The events come sorted by timestamp, page after page
        // (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html).
        while let Some(page) = pages.next().await {
            let page = page.op("logs:FilterLogEvents").with_context(|| format!("reading the log group {group}"))?;
            for event in page.events() {
                if printed.first_time(event) {
                    out(render(event, args.output.output))?;
                }
            }
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        from = printed.newest.map_or(from, |newest| newest - millis_of(LATE_LINES)).max(since);
        printed.forget_before(from);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The lines printed, by event id, for as long as a poll may return them again.
#[derive(Default)]
struct Printed {
    ids: HashMap<String, i64>,
    newest: Option<i64>,
}

impl Printed {
    fn first_time(&mut self, event: &FilteredLogEvent) -> bool {
        let timestamp = event.timestamp().unwrap_or_default();
        self.newest = Some(self.newest.map_or(timestamp, |newest| newest.max(timestamp)));
        match event.event_id() {
            Some(id) => self.ids.insert(id.to_owned(), timestamp).is_none(),
            None => true,
        }
    }

    fn forget_before(&mut self, from: i64) {
        self.ids.retain(|_, timestamp| *timestamp >= from);
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

fn millis_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// One line: with `--output json` the function's JSON line unchanged (Lambda's own
/// lines, which are text, as `{"timestamp","message"}`); as text, readably.
fn render(event: &FilteredLogEvent, format: OutputFormat) -> String {
    let message = event.message().unwrap_or_default().trim_end();
    let json = serde_json::from_str::<Value>(message).ok().filter(Value::is_object);
    let at = || {
        let timestamp = u64::try_from(event.timestamp().unwrap_or_default()).unwrap_or_default();
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(timestamp)).to_string()
    };
    match (format, json) {
        (OutputFormat::Json, Some(_)) => message.to_owned(),
        (OutputFormat::Json, None) => serde_json::json!({ "timestamp": at(), "message": message }).to_string(),
        (OutputFormat::Text, Some(line)) => render_line(&line),
        (OutputFormat::Text, None) => format!("{} {message}", at()),
    }
}

/// A JSON log line of the function, as text: time, level, request id, then for a request
/// its method, route, counter, count, value, status and latency; other lines their
/// message and fields.
fn render_line(line: &Value) -> String {
    let field = |name: &str| match &line[name] {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    };
    let mut text = format!(
        "{} {:<5} {}",
        field("timestamp").unwrap_or_default(),
        field("level").unwrap_or_default(),
        field("request_id").unwrap_or_else(|| "-".to_owned())
    );
    let known = ["timestamp", "level", "request_id", "message"];
    if field("message").as_deref() == Some("request") {
        let _ = write!(text, " {} {}", field("method").unwrap_or_default(), field("route").unwrap_or_default());
        for name in ["counter", "count", "value", "status"] {
            if let Some(value) = field(name) {
                let _ = write!(text, " {name}={value}");
            }
        }
        if let Some(ms) = line["duration_ms"].as_f64() {
            let _ = write!(text, " {ms:.1}ms");
        }
        return text;
    }
    let _ = write!(text, " {}", field("message").unwrap_or_default());
    if let Some(fields) = line.as_object() {
        for (name, value) in fields.iter().filter(|(name, _)| !known.contains(&name.as_str())) {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            let _ = write!(text, " {name}={value}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, timestamp: i64, message: &str) -> FilteredLogEvent {
        FilteredLogEvent::builder().event_id(id).timestamp(timestamp).message(message).build()
    }

    #[test]
    fn a_request_line_reads_as_time_level_id_route_counter_value_and_latency() {
        let line = r#"{"timestamp":"2026-12-01T20:26:10.078102Z","level":"INFO","message":"request","request_id":"8476a536","method":"POST","route":"/counter/increment","counter":"tenants","count":3,"idempotent":false,"value":717,"status":200,"duration_ms":1.2345}"#;
        assert_eq!(
            render(&event("1", 0, line), OutputFormat::Text),
            "2026-12-01T20:26:10.078102Z INFO  8476a536 POST /counter/increment counter=tenants count=3 value=717 status=200 1.2ms"
        );
        assert_eq!(render(&event("1", 0, line), OutputFormat::Json), line);
    }

    #[test]
    fn other_lines_keep_their_message_and_fields() {
        let line = r#"{"timestamp":"t","level":"ERROR","message":"storage failed","error":"throttled"}"#;
        assert_eq!(render(&event("1", 0, line), OutputFormat::Text), "t ERROR - storage failed error=throttled");
        let platform = "START RequestId: 8476a536 Version: $LATEST\n";
        assert_eq!(
            render(&event("2", 1_764_620_770_078, platform), OutputFormat::Text),
            "2025-12-01T20:26:10.078Z START RequestId: 8476a536 Version: $LATEST"
        );
        let json: Value =
            serde_json::from_str(&render(&event("2", 1_764_620_770_078, platform), OutputFormat::Json)).unwrap();
        assert_eq!(json["message"], "START RequestId: 8476a536 Version: $LATEST");
    }

    #[test]
    fn a_line_is_printed_once_however_often_a_poll_returns_it() {
        let mut printed = Printed::default();
        assert!(printed.first_time(&event("a", 100, "x")));
        assert!(printed.first_time(&event("b", 200, "y")));
        assert!(!printed.first_time(&event("a", 100, "x")));
        assert_eq!(printed.newest, Some(200));
        printed.forget_before(150);
        assert!(!printed.first_time(&event("b", 200, "y")));
    }
}
