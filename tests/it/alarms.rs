//! The stack's alarms, against moto through the recording proxy: made with this stack's
//! metrics and topic, kept on a re-run, removed by `--alarms off` and by uninstall, and
//! their state shown by status.

use aws_sdk_cloudwatch::types::{MetricAlarm, StateValue};

use crate::support::cli::Deployment;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ops";

async fn alarms(deployment: &Deployment) -> Vec<MetricAlarm> {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployment.aws);
    let found = cloudwatch.describe_alarms().alarm_name_prefix(format!("{}-", deployment.name)).send().await.unwrap();
    let mut alarms = found.metric_alarms().to_vec();
    alarms.sort_by(|a, b| a.alarm_name().cmp(&b.alarm_name()));
    alarms
}

fn dimensions(alarm: &MetricAlarm) -> Vec<(String, String)> {
    let mut dimensions: Vec<(String, String)> =
        alarm.dimensions().iter().map(|d| (d.name().unwrap().to_owned(), d.value().unwrap().to_owned())).collect();
    dimensions.sort();
    dimensions
}

#[tokio::test]
async fn install_makes_the_stacks_alarms_and_a_rerun_writes_nothing() {
    let deployment = Deployment::new().await;
    deployment.run("install", &["--alarm-topic", TOPIC]).await.ok();
    let alarms = alarms(&deployment).await;
    let name = deployment.name.as_str();
    let summary: Vec<(String, &str, &str, String, f64)> = alarms
        .iter()
        .map(|alarm| {
            let statistic = alarm
                .extended_statistic()
                .map(str::to_owned)
                .or_else(|| alarm.statistic().map(|s| s.as_str().to_owned()))
                .unwrap();
            (
                alarm.alarm_name().unwrap().trim_start_matches(name).to_owned(),
                alarm.namespace().unwrap(),
                alarm.metric_name().unwrap(),
                statistic,
                alarm.threshold().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("-front-5xx".to_owned(), "AWS/ApiGateway", "5XXError", "Sum".to_owned(), 1.0),
            ("-function-errors".to_owned(), "AWS/Lambda", "Errors", "Sum".to_owned(), 1.0),
            ("-function-latency".to_owned(), "AWS/Lambda", "Duration", "p99".to_owned(), 7_500.0),
            ("-function-throttles".to_owned(), "AWS/Lambda", "Throttles", "Sum".to_owned(), 1.0),
            ("-table-throttles".to_owned(), "AWS/DynamoDB", "ThrottledRequests", "Sum".to_owned(), 1.0),
        ]
    );
    let function = [("FunctionName".to_owned(), name.to_owned())];
    assert_eq!(
        dimensions(&alarms[0]),
        [("ApiName".to_owned(), name.to_owned()), ("Stage".to_owned(), "prod".to_owned())]
    );
    assert_eq!(dimensions(&alarms[1]), function);
    assert_eq!(
        dimensions(&alarms[4]),
        [("Operation".to_owned(), "UpdateItem".to_owned()), ("TableName".to_owned(), deployment.table.clone())]
    );
    for alarm in &alarms {
        assert_eq!(alarm.alarm_actions(), [TOPIC], "{alarm:?}");
        assert_eq!(alarm.ok_actions(), [TOPIC], "{alarm:?}");
        assert_eq!(alarm.treat_missing_data(), Some("notBreaching"));
    }

    let (run, mutations) = deployment.mutations_of(deployment.run("install", &[])).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps the alarms and their topic");
}

#[tokio::test]
async fn alarms_off_and_uninstall_remove_the_alarms_and_status_shows_an_alarm_without_drift() {
    let deployment = Deployment::new().await;
    deployment.run("install", &["--alarm-topic", TOPIC]).await.ok();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployment.aws);
    let errors = format!("{}-function-errors", deployment.name);
    let set = cloudwatch.set_alarm_state().alarm_name(&errors).state_value(StateValue::Alarm);
    set.state_reason("Threshold Crossed: 3 errors").send().await.unwrap();
    let status = deployment.run("status", &[]).await;
    assert_eq!(status.code, 0, "an alarm is not drift: {}", status.stdout);
    assert!(
        status.stdout.contains(&format!("!! ALARM   {errors} is in ALARM: Threshold Crossed: 3 errors")),
        "{}",
        status.stdout
    );
    let json = deployment.run("status", &["--output", "json"]).await.ok().json();
    let states: Vec<&str> =
        json["alarms"].as_array().unwrap().iter().map(|alarm| alarm["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"ALARM"), "{json}");

    deployment.run("install", &["--alarms", "off"]).await.ok();
    assert_eq!(alarms(&deployment).await.len(), 0);
    let status = deployment.run("status", &[]).await.ok();
    assert!(status.stdout.contains("--alarms on"), "the advisory: {}", status.stdout);

    // With the alarms gone, so is their topic: on again, they send nowhere, and status says so.
    deployment.run("install", &["--alarms", "on"]).await.ok();
    assert_eq!(alarms(&deployment).await.len(), 5);
    assert!(alarms(&deployment).await.iter().all(|alarm| alarm.alarm_actions().is_empty()));
    let status = deployment.run("status", &[]).await.ok();
    assert!(status.stdout.contains("--alarm-topic ARN"), "the advisory: {}", status.stdout);
    deployment.run("uninstall", &["--yes"]).await.ok();
    assert_eq!(alarms(&deployment).await.len(), 0);
}
