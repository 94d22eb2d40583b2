//! `counterctl logs`: the function's own log lines, put in its log group in moto, read
//! back in order and rendered; `--follow` prints what arrives later, once.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

use crate::support::LambdaStack;
use crate::support::aws_proxy::{Answer, Fault};
use crate::support::cli::{Deployment, Run, clean_environment, counterctl};

const STREAM: &str = "2026/12/01/[$LATEST]0123456789abcdef";

/// The request lines the shipped bootstrap logs for `count` increments of `counter`.
async fn bootstrap_request_lines(counter: &str, count: usize) -> Vec<String> {
    let stack = LambdaStack::start(1).await;
    for _ in 0..count {
        let answer = stack.http.post(format!("{}/counter/increment?counter={counter}", stack.api.url)).send().await;
        assert_eq!(answer.unwrap().status(), 200);
    }
    for _ in 0..250 {
        let lines: Vec<String> =
            stack.function.logs().into_iter().filter(|line| line.contains(r#""message":"request""#)).collect();
        if lines.len() == count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the function did not log its requests: {:?}", stack.function.logs());
}

fn now_millis() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Makes the stack's log group and stream in moto and puts `lines` at `at`, 1 ms apart.
async fn put_lines(deployment: &Deployment, lines: &[String], at: i64) {
    let logs = deployment.logs();
    let group = format!("/aws/lambda/{}", deployment.name);
    let _ = logs.create_log_group().log_group_name(&group).send().await;
    let _ = logs.create_log_stream().log_group_name(&group).log_stream_name(STREAM).send().await;
    let events = lines
        .iter()
        .zip(at..)
        .map(|(line, timestamp)| InputLogEvent::builder().timestamp(timestamp).message(line).build().unwrap());
    let put = logs.put_log_events().log_group_name(&group).log_stream_name(STREAM);
    put.set_log_events(Some(events.collect())).send().await.unwrap();
}

#[tokio::test]
async fn logs_prints_the_functions_own_lines_in_order_and_readably_and_says_when_there_are_none() {
    let deployment = Deployment::new().await;
    let requests = bootstrap_request_lines("logged", 2).await;
    let start = "START RequestId: 8476a536-e9f4-11e8-9739-2dfe598c3fcd Version: $LATEST".to_owned();
    let lines = [start.clone(), requests[0].clone(), requests[1].clone()];
    put_lines(&deployment, &lines, now_millis() - 60_000).await;

    let text = logs(&deployment, &["--since", "1h"]).await.ok().stdout;
    let printed: Vec<&str> = text.lines().collect();
    assert_eq!(printed.len(), 3, "{text}");
    assert!(printed[0].ends_with(&start), "{text}");
    for (rendered, line) in printed[1..].iter().zip(&requests) {
        // What the function logged, as the renderer shows it.
        let line: Value = serde_json::from_str(line).unwrap();
        let request_id = line["request_id"].as_str().unwrap();
        let shown = format!(
            "{} INFO  {request_id} POST /counter/increment counter=logged",
            line["timestamp"].as_str().unwrap()
        );
        assert!(rendered.starts_with(&shown), "{rendered} does not start with {shown}");
        assert!(rendered.contains(&format!(" value={} status=200 ", line["value"])), "{rendered}");
        assert!(rendered.ends_with("ms"), "{rendered}");
    }
    assert!(printed[1].contains("value=1 ") && printed[2].contains("value=2 "), "oldest first: {text}");

    // JSON passes the function's lines through unchanged.
    let json = logs(&deployment, &["--since", "1h", "--output", "json"]).await.ok().stdout;
    let json: Vec<&str> = json.lines().collect();
    assert_eq!(json[1..], [requests[0].as_str(), requests[1].as_str()]);
    assert_eq!(serde_json::from_str::<Value>(json[0]).unwrap()["message"], start.as_str());

    // A filter pattern, and a window that leaves them out.
    let filtered = logs(&deployment, &["--since", "1h", "--filter", "START"]).await.ok().stdout;
    assert_eq!(filtered.lines().count(), 1, "{filtered}");
    let none = logs(&deployment, &["--since", "10s"]).await.ok();
    assert_eq!(none.stdout, "");
    let group = format!("/aws/lambda/{}", deployment.name);
    assert_eq!(none.stderr, format!("no log lines in {group} over the last 10s (--since widens the window)\n"));
    let unmatched = logs(&deployment, &["--since", "1h", "--filter", "NOTHING"]).await.ok();
    assert!(unmatched.stderr.starts_with("no log lines matching \"NOTHING\" in "), "{}", unmatched.stderr);
}

/// `counterctl logs ARGS` for the stack, which takes its name only (no table or stage).
async fn logs(deployment: &Deployment, args: &[&str]) -> Run {
    let mut all = vec!["logs", "--endpoint-url", &deployment.proxy.url, "--region", "us-east-1"];
    all.extend(["--name", &deployment.name]);
    all.extend(args);
    counterctl(&all).await
}

/// `counterctl logs --follow` for the stack, with its output's lines to read.
fn follow(deployment: &Deployment) -> (tokio::process::Child, Lines<BufReader<ChildStdout>>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_counterctl"))
        .args(["logs", "--follow", "--endpoint-url", &deployment.proxy.url, "--region", "us-east-1"])
        .args(["--name", &deployment.name])
        .env_clear()
        .envs(clean_environment())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, stdout)
}

#[tokio::test]
async fn logs_follow_polls_without_a_live_tail_and_prints_a_line_that_arrives_later_and_no_line_twice() {
    let deployment = Deployment::new().await;
    // As for an identity that may not call it.
    let denied = Fault::new(400, "AccessDeniedException", "not authorized to perform: logs:StartLiveTail");
    deployment.proxy.inject("StartLiveTail", denied, usize::MAX);
    put_lines(&deployment, &["first line".to_owned()], now_millis() - 5_000).await;
    let (mut child, mut stdout) = follow(&deployment);
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await.expect("a line in time").unwrap()
    };
    assert!(next_line().await.unwrap().ends_with(" first line"));
    put_lines(&deployment, &["second line".to_owned()], now_millis()).await;
    assert!(next_line().await.unwrap().ends_with(" second line"));
    // Several polls later, each asking again for what came shortly before: nothing twice.
    let more = tokio::time::timeout(Duration::from_secs(7), next_line()).await;
    assert!(more.is_err(), "printed again: {more:?}");
    assert!(deployment.proxy.count("FilterLogEvents") >= 3, "it polled");
    child.kill().await.unwrap();
}

/// A live tail session as CloudWatch Logs streams it: its start, then one update with
/// `lines` (stream, timestamp, message) of `group`; then it ends, as after 3 hours.
fn live_tail_answer(group: &str, lines: &[(&str, i64, &str)]) -> Answer {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let event = |kind: &'static str, payload: Value| {
        let message = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String(kind.into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut frame = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut frame).unwrap();
        frame
    };
    let results: Vec<Value> = lines
        .iter()
        .map(|(stream, timestamp, message)| {
            serde_json::json!({
                "logStreamName": stream, "logGroupIdentifier": group, "message": message,
                "timestamp": timestamp, "ingestionTime": timestamp,
            })
        })
        .collect();
    let start = serde_json::json!({"sessionId": "live-1", "requestId": "r-1", "logGroupIdentifiers": [group]});
    let update = serde_json::json!({"sessionResults": results, "sessionMetadata": {"sampled": false}});
    let body = [event("sessionStart", start), event("sessionUpdate", update)].concat();
    Answer { content_type: "application/vnd.amazon.eventstream", body: body.into() }
}

#[tokio::test]
async fn logs_follow_prints_a_live_tail_sessions_lines_once_and_polls_where_there_is_no_live_tail() {
    let deployment = Deployment::new().await;
    let first_at = now_millis() - 5_000;
    put_lines(&deployment, &["first line".to_owned()], first_at).await;
    let group = format!("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{}", deployment.name);
    // The session repeats the line already read from the log group, then brings a new one.
    let live = [(STREAM, first_at, "first line"), (STREAM, first_at + 1, "live line")];
    deployment.proxy.answer("StartLiveTail", live_tail_answer(&group, &live), 1);
    let denied = Fault::new(400, "AccessDeniedException", "not authorized to perform: logs:StartLiveTail");
    deployment.proxy.inject("StartLiveTail", denied, usize::MAX);
    let (mut child, mut stdout) = follow(&deployment);
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await.expect("a line in time").unwrap()
    };
    assert!(next_line().await.unwrap().ends_with(" first line"));
    assert!(next_line().await.unwrap().ends_with(" live line"));
    // The session ended; the next one is refused, so it polls from there on.
    put_lines(&deployment, &["polled line".to_owned()], now_millis()).await;
    assert!(next_line().await.unwrap().ends_with(" polled line"));
    let more = tokio::time::timeout(Duration::from_secs(5), next_line()).await;
    assert!(more.is_err(), "printed again: {more:?}");
    assert_eq!(deployment.proxy.count("StartLiveTail"), 2, "a new session once the first ended");
    child.kill().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).await.unwrap();
    assert!(stderr.contains("note: no live tail here (logs:StartLiveTail failed: AccessDeniedException"), "{stderr}");
}

#[tokio::test]
async fn logs_refuses_the_options_it_would_ignore() {
    let deployment = Deployment::new().await;
    for option in ["--table", "--stage"] {
        let run = logs(&deployment, &[option, "x"]).await;
        assert_eq!(run.code, 2, "{option}: {}", run.stderr);
        assert!(run.stderr.contains(&format!("unexpected argument '{option}'")), "{}", run.stderr);
    }
}
