//! `counterctl logs`: the function's log lines from its log group, oldest first, and
//! with `--follow` the new ones as they arrive, each printed once: through a CloudWatch
//! Logs live tail session where the endpoint has one, else by polling.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_sdk_cloudwatchlogs::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_cloudwatchlogs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_cloudwatchlogs::error::BoxError;
use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, LiveTailSessionLogEvent, StartLiveTailResponseStream};
use aws_smithy_runtime_api::client::endpoint::EndpointPrefix;
use serde_json::Value;

use crate::aws::{Account, AwsError, Clients, Operation};
use crate::cli::{LogsArgs, OutputFormat};
use crate::progress::out;

/// How often `--follow` asks for new lines without a live tail. FilterLogEvents is
/// limited per account and region
/// (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/logs/cloudwatch_limits_cwl.html),
/// which other tools share.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// Each read of `--follow` asks again for this much before the newest line printed:
/// a line can arrive in the log group after one with a later timestamp. What was
/// printed already is recognised (see [`Printed`]).
const LATE_LINES: Duration = Duration::from_secs(30);
/// A live tail session shorter than this ended on a failure, not its 3 hours.
const SHORT_SESSION: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let clients = Clients::connect(&args.aws.connection()).await?;
    let reader = Reader {
        clients: &clients,
        group: crate::stack::log_group_of(&args.name),
        filter: args.filter.clone(),
        format: args.output.output,
    };
    let since = millis(SystemTime::now() - args.since);
    let mut printed = Printed::default();
    if !args.follow {
        reader.print_from(since, &mut printed).await?;
        if printed.newest.is_none() {
            // On stderr: stdout stays the lines, none.
            let matching = args.filter.as_ref().map_or(String::new(), |filter| format!(" matching {filter:?}"));
            eprintln!(
                "no log lines{matching} in {} over the last {} (--since widens the window)",
                reader.group,
                humantime::format_duration(args.since)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let account = Account::of_caller(&clients.config).await.context("checking the credentials")?;
    let group_arn = account.arn("logs", &format!("log-group:{}", reader.group));
    let mut from = since;
    // A session lasts up to 3 hours; each new one is started before the lines since the
    // last are read, so that none falls between the two.
    loop {
        let started = std::time::Instant::now();
        let session = reader.start_live_tail(&group_arn, clients.config.endpoint_url().is_some()).await;
        reader.print_from(from, &mut printed).await?;
        match session {
            Ok(stream) => {
                reader.print_live(stream, &mut printed).await?;
                // A session that ended at once is not started again at once: the reads
                // share the account's FilterLogEvents quota.
                if started.elapsed() < SHORT_SESSION {
                    tokio::time::sleep(FOLLOW_EVERY).await;
                }
            }
            Err(error) => {
                // Its code and message only: the hints of a failed install do not apply.
                let code = error.code.as_deref().unwrap_or("no answer");
                eprintln!(
                    "note: no live tail here ({} failed: {code}: {}); polling the log group every {} s",
                    error.operation,
                    error.message,
                    FOLLOW_EVERY.as_secs()
                );
                return reader.poll(from, since, &mut printed).await;
            }
        }
        from = printed.resume_from(from, since);
    }
}

struct Reader<'a> {
    clients: &'a Clients,
    group: String,
    filter: Option<String>,
    format: OutputFormat,
}

type LiveTail = aws_sdk_cloudwatchlogs::primitives::event_stream::EventReceiver<
    StartLiveTailResponseStream,
    aws_sdk_cloudwatchlogs::types::error::StartLiveTailResponseStreamError,
>;

impl Reader<'_> {
    /// Prints the lines from `from` (ms since the epoch) on that were not printed yet.
    async fn print_from(&self, from: i64, printed: &mut Printed) -> anyhow::Result<()> {
        let group = &self.group;
        let filter = self.filter.clone();
        let read = self.clients.logs.filter_log_events().log_group_name(group).start_time(from);
        let mut pages = read.set_filter_pattern(filter).into_paginator().send();
        // The events come sorted by timestamp, page after page
        // (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html).
        while let Some(page) = pages.next().await {
            let page = page.op("logs:FilterLogEvents").with_context(|| format!("reading the log group {group}"))?;
            for event in page.events() {
                if printed.first_time(event) {
                    out(render(event, self.format))?;
                }
            }
        }
        Ok(())
    }

    async fn start_live_tail(&self, group_arn: &str, custom_endpoint: bool) -> Result<LiveTail, AwsError> {
        let start = self.clients.logs.start_live_tail().log_group_identifiers(group_arn);
        let start = start.set_log_event_filter_pattern(self.filter.clone()).customize();
        let start = if custom_endpoint { start.interceptor(NoHostPrefix) } else { start };
        Ok(start.send().await.op("logs:StartLiveTail")?.response_stream)
    }

    /// Prints the session's lines until it ends (after 3 hours, or a failure on AWS's
    /// side: the caller starts another).
    async fn print_live(&self, mut stream: LiveTail, printed: &mut Printed) -> anyhow::Result<()> {
        let mut sampled_said = false;
        loop {
            let update = match stream.recv().await {
                Ok(Some(StartLiveTailResponseStream::SessionUpdate(update))) => update,
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(error) => {
                    let error = AwsError::new("logs:StartLiveTail", error);
                    eprintln!("note: the live tail ended ({error}); starting another");
                    return Ok(());
                }
            };
            // Past 500 lines a second a session sends a sample
            // (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_LiveTailSessionMetadata.html).
            let sampled = update.session_metadata().is_some_and(|metadata| metadata.sampled());
            if sampled && !sampled_said {
                eprintln!("note: over 500 lines a second: the live tail shows a sample of them");
                sampled_said = true;
            }
            for event in update.session_results().iter().map(filtered) {
                if printed.first_time(&event) {
                    out(render(&event, self.format))?;
                }
            }
            // A session sends only new lines: only the late ones need remembering.
            printed.forget_before_newest();
        }
    }

    async fn poll(&self, mut from: i64, since: i64, printed: &mut Printed) -> anyhow::Result<ExitCode> {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            from = printed.resume_from(from, since);
            self.print_from(from, printed).await?;
        }
    }
}

/// A live tail line in the shape FilterLogEvents answers, to be recognised and rendered
/// alike.
fn filtered(event: &LiveTailSessionLogEvent) -> FilteredLogEvent {
    FilteredLogEvent::builder()
        .set_log_stream_name(event.log_stream_name().map(str::to_owned))
        .set_timestamp(event.timestamp())
        .set_message(event.message().map(str::to_owned))
        .build()
}

/// StartLiveTail is served at `stream-logs.REGION.amazonaws.com`: the SDK puts `stream-`
/// before the endpoint's host. An endpoint given with `--endpoint-url` (moto,
/// LocalStack, a proxy) serves every operation at its own host, so there it is left off,
/// as botocore's `inject_host_prefix=False` does.
#[derive(Debug)]
struct NoHostPrefix;

impl Intercept for NoHostPrefix {
    fn name(&self) -> &'static str {
        "NoHostPrefix"
    }

    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().unset::<EndpointPrefix>();
        Ok(())
    }
}

/// The lines printed, for as long as a read may return them again. A line is known by
/// its stream, timestamp and message: live tail lines have no event id, and the same
/// line comes from FilterLogEvents and a live tail alike.
#[derive(Default)]
struct Printed {
    lines: HashSet<(String, i64, String)>,
    newest: Option<i64>,
}

impl Printed {
    fn first_time(&mut self, event: &FilteredLogEvent) -> bool {
        let timestamp = event.timestamp().unwrap_or_default();
        self.newest = Some(self.newest.map_or(timestamp, |newest| newest.max(timestamp)));
        let stream = event.log_stream_name().unwrap_or_default().to_owned();
        let message = event.message().unwrap_or_default().to_owned();
        self.lines.insert((stream, timestamp, message))
    }

    /// How far back a line can still arrive: [`LATE_LINES`] before the newest printed.
    fn late_from(&self) -> Option<i64> {
        self.newest.map(|newest| newest - millis_of(LATE_LINES))
    }

    fn forget_before(&mut self, from: i64) {
        self.lines.retain(|(_, timestamp, _)| *timestamp >= from);
    }

    /// Forgets the lines older than the late ones, which no read returns again.
    fn forget_before_newest(&mut self) {
        if let Some(from) = self.late_from() {
            self.forget_before(from);
        }
    }

    /// Where the next read starts (a little before the newest line, for late ones, never
    /// before `--since`), forgetting the lines before it.
    fn resume_from(&mut self, from: i64, since: i64) -> i64 {
        let from = self.late_from().unwrap_or(from).max(since);
        self.forget_before(from);
        from
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

    fn event(stream: &str, timestamp: i64, message: &str) -> FilteredLogEvent {
        FilteredLogEvent::builder().log_stream_name(stream).timestamp(timestamp).message(message).build()
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
    fn a_line_is_printed_once_however_often_a_read_or_a_live_tail_returns_it() {
        let mut printed = Printed::default();
        assert!(printed.first_time(&event("a", 100, "x")));
        assert!(printed.first_time(&event("b", 100, "x")), "another stream's line");
        assert!(printed.first_time(&event("a", 200, "y")));
        assert!(!printed.first_time(&event("a", 100, "x")));
        let live = LiveTailSessionLogEvent::builder().log_stream_name("a").timestamp(200).message("y").build();
        assert!(!printed.first_time(&filtered(&live)), "the same line from a live tail");
        assert_eq!(printed.newest, Some(200));
        assert_eq!(printed.resume_from(0, 0), 0, "never before --since");
        assert_eq!(printed.resume_from(0, 150), 150);
        assert!(!printed.first_time(&event("a", 200, "y")));
        assert_eq!(printed.lines.len(), 1, "lines before the next read are forgotten");
    }
}
