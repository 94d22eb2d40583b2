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
    let row = status.stdout.lines().find(|line| line.contains(&format!(" {errors} "))).unwrap_or_default();
    assert!(row.ends_with("present, ALARM"), "each alarm's row has its state: {}", status.stdout);
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

/// The stack's own alarm topic, if it exists: its ARN, its tags, and its subscriptions'
/// (protocol, address, ARN).
async fn own_topic(deployment: &Deployment) -> Option<(String, Vec<(String, String)>, Vec<(String, String, String)>)> {
    let sns = aws_sdk_sns::Client::new(&deployment.aws);
    let topics = sns.list_topics().send().await.unwrap();
    let suffix = format!(":{}-alarms", deployment.name);
    let arn = topics.topics().iter().filter_map(|topic| topic.topic_arn()).find(|arn| arn.ends_with(&suffix))?;
    let tags = sns.list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    let tags = tags.tags().iter().map(|tag| (tag.key().to_owned(), tag.value().to_owned())).collect();
    let subscriptions = sns.list_subscriptions_by_topic().topic_arn(arn).send().await.unwrap();
    let subscriptions = subscriptions
        .subscriptions()
        .iter()
        .map(|s| {
            let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
            (field(s.protocol()), field(s.endpoint()), field(s.subscription_arn()))
        })
        .collect();
    Some((arn.to_owned(), tags, subscriptions))
}

#[tokio::test]
async fn alarm_email_makes_a_tagged_topic_with_the_subscription_and_status_shows_it_pending() {
    let deployment = Deployment::new().await;
    let install = deployment.run("install", &["--alarm-email", "ops@example.com"]).await.ok();
    assert!(install.stdout.contains("AWS mailed a confirmation link to ops@example.com"), "{}", install.stdout);
    let (arn, tags, subscriptions) = own_topic(&deployment).await.expect("the stack's topic");
    assert_eq!(arn, format!("arn:aws:sns:us-east-1:123456789012:{}-alarms", deployment.name));
    assert!(tags.contains(&("counterctl:stack".to_owned(), deployment.name.clone())), "{tags:?}");
    let emails: Vec<(&str, &str)> = subscriptions.iter().map(|(p, e, _)| (p.as_str(), e.as_str())).collect();
    assert_eq!(emails, [("email", "ops@example.com")]);
    let alarms = alarms(&deployment).await;
    assert_eq!(alarms.len(), 5);
    assert!(alarms.iter().all(|alarm| alarm.alarm_actions() == [arn.clone()] && alarm.ok_actions() == [arn.clone()]));

    let (run, mutations) = deployment.mutations_of(deployment.run("install", &[])).await;
    assert!(!run.ok().stdout.contains("confirmation link"));
    assert_eq!(mutations, Vec::<String>::new(), "a re-run keeps the topic and its subscription");
    let again = deployment.run("install", &["--alarm-email", "ops@example.com"]);
    let (run, mutations) = deployment.mutations_of(again).await;
    run.ok();
    assert_eq!(mutations, Vec::<String>::new(), "the same address is not subscribed again");

    // moto confirms at once; AWS lists a subscription whose link is not opened so.
    let confirmed = format!("<SubscriptionArn>{}</SubscriptionArn>", subscriptions[0].2);
    let pending = "<SubscriptionArn>PendingConfirmation</SubscriptionArn>";
    deployment.proxy.replace_in_response("ListSubscriptionsByTopic", &confirmed, pending, 1);
    let status = deployment.run("status", &[]).await;
    assert_eq!(status.code, 0, "a pending subscription is not drift: {}", status.stdout);
    assert!(
        status.stdout.contains("alarms do not reach ops@example.com yet: open the confirmation link"),
        "{}",
        status.stdout
    );
    deployment.proxy.replace_in_response("ListSubscriptionsByTopic", &confirmed, pending, 1);
    let json = deployment.run("status", &["--output", "json"]).await.ok().json();
    assert_eq!(json["alarm_subscriptions"], serde_json::json!([{"email": "ops@example.com", "pending": true}]));
    let json = deployment.run("status", &["--output", "json"]).await.ok().json();
    assert_eq!(json["alarm_subscriptions"], serde_json::json!([{"email": "ops@example.com", "pending": false}]));
}

#[tokio::test]
async fn a_changed_alarm_email_replaces_the_subscription_and_only_the_topic_counterctl_made_is_deleted() {
    let deployment = Deployment::new().await;
    deployment.run("install", &["--alarm-email", "old@example.com"]).await.ok();
    let plan = deployment.run("install", &["--alarm-email", "new@example.com", "--dry-run"]).await.ok();
    assert!(plan.stdout.contains("would delete (replaced by new@example.com)"), "{}", plan.stdout);
    deployment.run("install", &["--alarm-email", "new@example.com"]).await.ok();
    let (_, _, subscriptions) = own_topic(&deployment).await.expect("the stack's topic");
    let emails: Vec<&str> = subscriptions.iter().map(|(_, email, _)| email.as_str()).collect();
    assert_eq!(emails, ["new@example.com"]);

    // Another team's topic in place of the stack's: the stack's goes, the other stays.
    let sns = aws_sdk_sns::Client::new(&deployment.aws);
    let theirs = format!("{}-pager", deployment.name);
    let theirs = sns.create_topic().name(theirs).send().await.unwrap().topic_arn().unwrap().to_owned();
    deployment.run("install", &["--alarm-topic", &theirs]).await.ok();
    assert_eq!(own_topic(&deployment).await, None);
    assert!(alarms(&deployment).await.iter().all(|alarm| alarm.alarm_actions() == [theirs.clone()]));
    deployment.run("uninstall", &["--yes"]).await.ok();
    let attributes = sns.get_topic_attributes().topic_arn(&theirs).send().await;
    assert!(attributes.is_ok(), "a topic given with --alarm-topic is never deleted");

    deployment.run("install", &["--alarm-email", "ops@example.com"]).await.ok();
    assert!(own_topic(&deployment).await.is_some());
    deployment.run("install", &["--alarms", "off"]).await.ok();
    assert_eq!(own_topic(&deployment).await, None, "--alarms off deletes the topic counterctl made");
    deployment.run("install", &["--alarm-email", "ops@example.com", "--alarms", "on"]).await.ok();
    let uninstall = deployment.run("uninstall", &["--yes"]).await.ok();
    assert!(uninstall.stdout.contains("alarm topic"), "{}", uninstall.stdout);
    assert_eq!(own_topic(&deployment).await, None, "uninstall deletes the topic counterctl made");
}

#[tokio::test]
async fn alarm_email_is_checked_and_refused_with_alarms_off_before_any_write() {
    let deployment = Deployment::new().await;
    let bad = deployment.run("install", &["--alarm-email", "not-an-address"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("is not an email address"), "{}", bad.stderr);
    let (refused, mutations) = deployment
        .mutations_of(deployment.run("install", &["--alarms", "off", "--alarm-email", "ops@example.com"]))
        .await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--alarms off removes them"), "{}", refused.stderr);
    assert_eq!(mutations, Vec::<String>::new());
}
