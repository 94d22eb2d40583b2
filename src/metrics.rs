//! `counterctl status --metrics`: the stack's health over a window (the function, its
//! front, its table), from one batched GetMetricData call.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use serde::Serialize;

use crate::aws::Operation;

/// What reading the figures calls: GetMetricData has no resource type.
pub(crate) fn grant() -> crate::resources::Grant {
    crate::resources::Grant::on_any("ReadMetrics", &["cloudwatch:GetMetricData"])
}

/// What the figures are of.
pub(crate) struct Subject {
    pub(crate) function: String,
    pub(crate) table: String,
    pub(crate) front: Front,
}

pub(crate) enum Front {
    /// The REST API, by its name and stage (API Gateway's metric dimensions).
    Rest {
        api: String,
        stage: String,
    },
    FunctionUrl,
    None,
}

/// One metric to read.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    section: &'static str,
    label: &'static str,
    namespace: &'static str,
    metric: &'static str,
    dimensions: Vec<(&'static str, String)>,
    /// `Sum`, or a percentile such as `p99`.
    stat: &'static str,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    Count,
    Milliseconds,
}

/// A figure read, `None` when CloudWatch has no data points in the window. Its fields are
/// in the order `--output json` has always written them.
#[derive(Debug, Serialize)]
struct Figure {
    label: &'static str,
    metric: &'static str,
    section: &'static str,
    statistic: &'static str,
    unit: Unit,
    value: Option<f64>,
}

/// The queries, in the order they are shown. The metric names and dimensions are those
/// the services publish: Lambda's (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html,
/// the `Url*` ones for function URLs), API Gateway's by `ApiName` and `Stage`
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-metrics-and-dimensions.html),
/// DynamoDB's by `TableName`, `ThrottledRequests` by `TableName` and `Operation`
/// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/metrics-dimensions.html).
fn queries(subject: &Subject) -> Vec<Query> {
    let function = || vec![("FunctionName", subject.function.clone())];
    let query = |section, label, namespace, metric, dimensions, stat, unit| Query {
        section,
        label,
        namespace,
        metric,
        dimensions,
        stat,
        unit,
    };
    let mut queries = vec![
        query("function", "invocations", "AWS/Lambda", "Invocations", function(), "Sum", Unit::Count),
        query("function", "errors", "AWS/Lambda", "Errors", function(), "Sum", Unit::Count),
        query("function", "throttles", "AWS/Lambda", "Throttles", function(), "Sum", Unit::Count),
        query("function", "duration p50", "AWS/Lambda", "Duration", function(), "p50", Unit::Milliseconds),
        query("function", "duration p99", "AWS/Lambda", "Duration", function(), "p99", Unit::Milliseconds),
    ];
    match &subject.front {
        Front::Rest { api, stage } => {
            let rest = || vec![("ApiName", api.clone()), ("Stage", stage.clone())];
            queries.extend([
                query("front", "requests", "AWS/ApiGateway", "Count", rest(), "Sum", Unit::Count),
                query("front", "4xx", "AWS/ApiGateway", "4XXError", rest(), "Sum", Unit::Count),
                query("front", "5xx", "AWS/ApiGateway", "5XXError", rest(), "Sum", Unit::Count),
                query("front", "latency p99", "AWS/ApiGateway", "Latency", rest(), "p99", Unit::Milliseconds),
            ]);
        }
        Front::FunctionUrl => queries.extend([
            query("front", "requests", "AWS/Lambda", "UrlRequestCount", function(), "Sum", Unit::Count),
            query("front", "4xx", "AWS/Lambda", "Url4xxCount", function(), "Sum", Unit::Count),
            query("front", "5xx", "AWS/Lambda", "Url5xxCount", function(), "Sum", Unit::Count),
            query("front", "latency p99", "AWS/Lambda", "UrlRequestLatency", function(), "p99", Unit::Milliseconds),
        ]),
        Front::None => {}
    }
    let table = || vec![("TableName", subject.table.clone())];
    let updates = vec![("TableName", subject.table.clone()), ("Operation", "UpdateItem".to_owned())];
    queries.extend([
        query(
            "table",
            "consumed write units",
            "AWS/DynamoDB",
            "ConsumedWriteCapacityUnits",
            table(),
            "Sum",
            Unit::Count,
        ),
        query("table", "throttled requests", "AWS/DynamoDB", "ThrottledRequests", updates, "Sum", Unit::Count),
    ]);
    queries
}

/// The window as one period: whole minutes, as GetMetricData asks of periods over a
/// minute.
fn period_of(since: Duration) -> i32 {
    let minutes = since.as_secs().div_ceil(60).max(1);
    i32::try_from(minutes * 60).unwrap_or(i32::MAX)
}

/// One value for the window from the data points returned: their sum for a sum, the
/// highest for a percentile (a window split over two periods).
fn combine(stat: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(if stat == "Sum" { values.iter().sum() } else { values.iter().copied().fold(f64::MIN, f64::max) })
}

/// The figures of a stack over a window: `status --metrics`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct Metrics {
    metrics: Vec<Figure>,
    /// The window, as `humantime` writes it.
    since: String,
    /// The stack's function, which names the stack.
    #[serde(skip)]
    function: String,
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics of stack {} over the last {}", self.function, self.since)?;
        for figure in &self.metrics {
            let value = match (figure.value, figure.unit) {
                (None, _) => "-".to_owned(),
                (Some(value), Unit::Count) => format!("{value:.0}"),
                (Some(value), Unit::Milliseconds) => format!("{value:.1} ms"),
            };
            write!(f, "\n{:<10} {:<22} {value:>12}", figure.section, figure.label)?;
        }
        Ok(())
    }
}

/// Reads the figures of `subject` over the last `since`.
pub(crate) async fn read(
    client: &aws_sdk_cloudwatch::Client,
    subject: &Subject,
    since: Duration,
) -> anyhow::Result<Metrics> {
    let queries = queries(subject);
    let period = period_of(since);
    let data_queries = queries.iter().enumerate().map(|(index, query)| {
        let dimensions =
            query.dimensions.iter().map(|(name, value)| Dimension::builder().name(*name).value(value).build());
        let metric = Metric::builder()
            .namespace(query.namespace)
            .metric_name(query.metric)
            .set_dimensions(Some(dimensions.collect()));
        let stat = MetricStat::builder().metric(metric.build()).period(period).stat(query.stat).build();
        MetricDataQuery::builder().id(format!("m{index}")).metric_stat(stat).return_data(true).build()
    });
    let now = SystemTime::now();
    // At most 500 queries go in one call; these are fewer. The answer may still come in
    // pages.
    let mut pages = client
        .get_metric_data()
        .set_metric_data_queries(Some(data_queries.collect()))
        .start_time(DateTime::from(now - since))
        .end_time(DateTime::from(now))
        .into_paginator()
        .send();
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    while let Some(page) = pages.next().await {
        let page = page.op("cloudwatch:GetMetricData").context("reading the stack's metrics")?;
        for result in page.metric_data_results() {
            let index = result.id().and_then(|id| id.strip_prefix('m')?.parse::<usize>().ok());
            if let Some(index) = index.filter(|index| *index < queries.len()) {
                values[index].extend(result.values());
            }
        }
    }
    let figures: Vec<Figure> = queries
        .iter()
        .zip(&values)
        .map(|(query, values)| Figure {
            label: query.label,
            metric: query.metric,
            section: query.section,
            statistic: query.stat,
            unit: query.unit,
            value: combine(query.stat, values),
        })
        .collect();
    Ok(Metrics {
        metrics: figures,
        since: humantime::format_duration(since).to_string(),
        function: subject.function.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(front: Front) -> Subject {
        Subject { function: "Counter".into(), table: "Counters".into(), front }
    }

    #[test]
    fn the_rest_front_is_read_by_api_name_and_stage() {
        let queries = queries(&subject(Front::Rest { api: "Counter".into(), stage: "prod".into() }));
        let front: Vec<_> = queries.iter().filter(|query| query.section == "front").collect();
        assert_eq!(
            front.iter().map(|query| query.metric).collect::<Vec<_>>(),
            ["Count", "4XXError", "5XXError", "Latency"]
        );
        assert!(front.iter().all(|query| query.namespace == "AWS/ApiGateway"
            && query.dimensions == [("ApiName", "Counter".to_owned()), ("Stage", "prod".to_owned())]));
        assert_eq!(queries.len(), 5 + 4 + 2);
    }

    #[test]
    fn a_function_url_is_read_from_lambdas_url_metrics() {
        let url = queries(&subject(Front::FunctionUrl));
        let front: Vec<_> = url.iter().filter(|query| query.section == "front").map(|query| query.metric).collect();
        assert_eq!(front, ["UrlRequestCount", "Url4xxCount", "Url5xxCount", "UrlRequestLatency"]);
        let throttled = url.iter().find(|query| query.metric == "ThrottledRequests").unwrap();
        assert_eq!(
            throttled.dimensions,
            [("TableName", "Counters".to_owned()), ("Operation", "UpdateItem".to_owned())]
        );
        assert_eq!(queries(&subject(Front::None)).len(), 5 + 2);
    }

    #[test]
    fn the_window_is_one_period_of_whole_minutes() {
        assert_eq!(period_of(Duration::from_secs(3600)), 3600);
        assert_eq!(period_of(Duration::from_secs(90)), 120);
        assert_eq!(period_of(Duration::from_secs(5)), 60);
    }

    #[test]
    fn sums_add_up_and_percentiles_take_the_highest() {
        assert_eq!(combine("Sum", &[2.0, 3.0]), Some(5.0));
        assert_eq!(combine("p99", &[20.0, 35.5]), Some(35.5));
        assert_eq!(combine("Sum", &[]), None);
    }
}
