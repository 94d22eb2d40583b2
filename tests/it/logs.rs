//! `counterctl logs`: the function's own log lines, put in its log group in moto, read
//! back in order and rendered; `--follow` prints what arrives later, once.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::LambdaStack;
use crate::support::cli::{Deployment, clean_environment};

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
async fn logs_prints_the_functions_own_lines_in_order_and_readably() {
    let deployment = Deployment::new().await;
    let requests = bootstrap_request_lines("logged", 2).await;
    let start = "START RequestId: 8476a536-e9f4-11e8-9739-2dfe598c3fcd Version: $LATEST".to_owned();
    let lines = [start.clone(), requests[0].clone(), requests[1].clone()];
    put_lines(&deployment, &lines, now_millis() - 60_000).await;

    let text = deployment.run("logs", &["--since", "1h"]).await.ok().stdout;
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
    let json = deployment.run("logs", &["--since", "1h", "--output", "json"]).await.ok().stdout;
    let json: Vec<&str> = json.lines().collect();
    assert_eq!(json[1..], [requests[0].as_str(), requests[1].as_str()]);
    assert_eq!(serde_json::from_str::<Value>(json[0]).unwrap()["message"], start.as_str());

    // A filter pattern, and a window that leaves them out.
    let filtered = deployment.run("logs", &["--since", "1h", "--filter", "START"]).await.ok().stdout;
    assert_eq!(filtered.lines().count(), 1, "{filtered}");
    assert_eq!(deployment.run("logs", &["--since", "10s"]).await.ok().stdout, "");
}

#[tokio::test]
async fn logs_follow_prints_a_line_that_arrives_later_and_no_line_twice() {
    let deployment = Deployment::new().await;
    put_lines(&deployment, &["first line".to_owned()], now_millis() - 5_000).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_counterctl"))
        .args(["logs", "--follow", "--endpoint-url", &deployment.proxy.url, "--region", "us-east-1"])
        .args(["--name", &deployment.name])
        .env_clear()
        .envs(clean_environment())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
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
