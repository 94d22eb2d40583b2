//! `counterctl status --metrics`: figures put into moto's CloudWatch, read back for the
//! stack's function, front and table.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde_json::Value;

use crate::support::cli::Deployment;

fn datum(metric: &str, dimensions: &[(&str, &str)], value: f64) -> MetricDatum {
    let dimensions = dimensions.iter().map(|(name, value)| Dimension::builder().name(*name).value(*value).build());
    MetricDatum::builder()
        .metric_name(metric)
        .set_dimensions(Some(dimensions.collect()))
        .value(value)
        .unit(StandardUnit::Count)
        // A minute old, as CloudWatch's data points are by the time they are read (moto
        // compares the window's end in whole seconds).
        .timestamp((std::time::SystemTime::now() - std::time::Duration::from_secs(60)).into())
        .build()
}

#[tokio::test]
async fn status_metrics_reads_the_figures_of_this_function_front_and_table() {
    let deployment = Deployment::new().await;
    deployment.install().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&deployment.aws);
    let (name, table) = (deployment.name.as_str(), deployment.table.as_str());
    let put = |namespace: &str, data: Vec<MetricDatum>| {
        cloudwatch.put_metric_data().namespace(namespace).set_metric_data(Some(data)).send()
    };
    let function = [("FunctionName", name)];
    put("AWS/Lambda", vec![datum("Invocations", &function, 40.0), datum("Invocations", &function, 2.0)]).await.unwrap();
    put("AWS/Lambda", vec![datum("Errors", &function, 3.0)]).await.unwrap();
    // Another function's figures are not this stack's.
    put("AWS/Lambda", vec![datum("Throttles", &[("FunctionName", "someone-else")], 9.0)]).await.unwrap();
    put("AWS/ApiGateway", vec![datum("5XXError", &[("ApiName", name), ("Stage", "prod")], 2.0)]).await.unwrap();
    let updates = [("TableName", table), ("Operation", "UpdateItem")];
    put("AWS/DynamoDB", vec![datum("ThrottledRequests", &updates, 7.0)]).await.unwrap();

    let run = deployment.run("status", &["--metrics", "--since", "15m", "--output", "json"]).await.ok();
    let metrics = run.json()["metrics"].as_array().unwrap().clone();
    let value = |section: &str, metric: &str| -> Value {
        let figure = metrics.iter().find(|figure| figure["section"] == section && figure["metric"] == metric);
        figure.unwrap_or_else(|| panic!("no {section} {metric}: {metrics:?}"))["value"].clone()
    };
    assert_eq!(value("function", "Invocations"), 42.0, "{}", run.stdout);
    assert_eq!(value("function", "Errors"), 3.0);
    assert_eq!(value("function", "Throttles"), Value::Null, "no data for this function");
    assert_eq!(value("front", "5XXError"), 2.0);
    assert_eq!(value("front", "Count"), Value::Null);
    assert_eq!(value("table", "ThrottledRequests"), 7.0);
    assert_eq!(run.json()["since"], "15m");

    let text = deployment.run("status", &["--metrics"]).await.ok().stdout;
    let line = |label: &str| text.lines().find(|line| line.contains(label)).unwrap_or_default().to_owned();
    assert!(line("invocations").ends_with(" 42"), "{text}");
    assert!(line("throttled requests").ends_with(" 7"), "{text}");
    assert!(line("duration p99").ends_with(" -"), "{text}");
    assert_eq!(deployment.proxy.count("GetMetricData"), 2, "one call each time");
}

#[tokio::test]
async fn caller_policy_and_metrics_read_only_what_callers_reach() {
    let deployment = Deployment::new().await;
    deployment.run("install", &["--auth", "iam", "--alarms", "on", "--alarm-email", "ops@example.com"]).await.ok();
    let actions_of = |args: &'static [&'static str]| {
        let deployment = &deployment;
        async move {
            let before = deployment.proxy.actions().len();
            deployment.run("status", args).await.ok();
            deployment.proxy.actions()[before..].to_vec()
        }
    };
    // The alarms, their topic and the log group are read by a plain status ...
    let whole = actions_of(&[]).await;
    let beside_callers = ["DescribeAlarms", "GetTopicAttributes", "DescribeLogGroups", "GET /domainnames"];
    for action in beside_callers {
        assert!(whole.iter().any(|read| read == action), "status reads {action}: {whole:?}");
    }
    // ... and not by the modes that need only the names, the front and the table.
    for args in [&["--caller-policy"][..], &["--metrics"][..]] {
        let reads = actions_of(args).await;
        assert!(reads.iter().any(|read| read == "DescribeTable"), "{args:?}: {reads:?}");
        for action in beside_callers {
            assert!(!reads.iter().any(|read| read == action), "{args:?} reads {action}: {reads:?}");
        }
    }
}
