//! The stack's CloudWatch alarms: the function's errors, throttles and latency, the
//! front's 5xx and the table's throttled updates, each sending its `ALARM` and `OK` to
//! the stack's topic. Named `NAME-…` and tagged like everything else.

use anyhow::Context;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic, Tag};

use crate::aws::{AwsError, Clients, Operation};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, diff};
use crate::settings::Front;
use crate::stack::Stack;

/// Each alarm looks at 5 minutes at a time: long enough that one retried request does
/// not page anyone at night, short enough that a team hears within minutes.
const PERIOD_SECONDS: i32 = 300;
/// Missing data is no data to worry about: an idle stack reports nothing.
const NOT_BREACHING: &str = "notBreaching";

/// One alarm as wanted or as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlarmSpec {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) metric: String,
    /// Sorted by name: CloudWatch answers them in any order.
    pub(crate) dimensions: Vec<(String, String)>,
    /// `Sum`, or a percentile such as `p99`.
    pub(crate) statistic: String,
    pub(crate) threshold: f64,
    /// `GreaterThanOrEqualToThreshold` or `GreaterThanThreshold`.
    pub(crate) comparison: String,
    pub(crate) period: i32,
    pub(crate) evaluation_periods: i32,
    /// Sent both on `ALARM` and on `OK`.
    pub(crate) actions: Vec<String>,
    pub(crate) treat_missing_data: String,
}

impl AlarmSpec {
    /// A percentile such as `p99` is an extended statistic; `Sum` is a plain one.
    pub(crate) fn extended(&self) -> bool {
        self.statistic != "Sum"
    }

    fn shown(&self) -> String {
        let above = if self.comparison == "GreaterThanThreshold" { ">" } else { ">=" };
        let to = if self.actions.is_empty() { "no topic".to_owned() } else { self.actions.join(", ") };
        format!(
            "{} {} {} {above} {} per {} s, to {to}",
            self.namespace, self.metric, self.statistic, self.threshold, self.period
        )
    }
}

/// A deployed alarm of the stack, with its state now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlarmState {
    pub(crate) spec: AlarmSpec,
    /// `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub(crate) state: String,
    pub(crate) reason: String,
    pub(crate) tagged: bool,
}

/// The alarms of a stack named `stack`: the five it may have.
fn names(stack: &str) -> [String; 5] {
    ["function-errors", "function-throttles", "function-latency", "front-5xx", "table-throttles"]
        .map(|kind| format!("{stack}-{kind}"))
}

pub(crate) async fn read(client: &Client, stack_name: &str) -> Result<Vec<AlarmState>, AwsError> {
    let ours = names(stack_name);
    let mut pages = client.describe_alarms().alarm_name_prefix(format!("{stack_name}-")).into_paginator().send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.op("cloudwatch:DescribeAlarms")?;
        found.extend(
            page.metric_alarms()
                .iter()
                .filter(|alarm| alarm.alarm_name().is_some_and(|name| ours.iter().any(|our| our == name)))
                .cloned(),
        );
    }
    // The tags of each at once: the read is on every command's critical path.
    let tagged = found.iter().map(|alarm| async move {
        let tags = client.list_tags_for_resource().resource_arn(alarm.alarm_arn().unwrap_or_default()).send().await;
        let tags = tags.op("cloudwatch:ListTagsForResource")?;
        let tagged = tags
            .tags()
            .iter()
            .any(|tag| Stack::is_stack_tag(stack_name, tag.key().unwrap_or_default(), tag.value().unwrap_or_default()));
        Ok::<_, AwsError>(state_of(alarm, tagged))
    });
    futures_util::future::try_join_all(tagged).await
}

fn state_of(alarm: &MetricAlarm, tagged: bool) -> AlarmState {
    let mut dimensions: Vec<(String, String)> = alarm
        .dimensions()
        .iter()
        .map(|dimension| {
            (dimension.name().unwrap_or_default().to_owned(), dimension.value().unwrap_or_default().to_owned())
        })
        .collect();
    dimensions.sort();
    let statistic = alarm
        .extended_statistic()
        .map(str::to_owned)
        .or_else(|| alarm.statistic().map(|statistic| statistic.as_str().to_owned()))
        .unwrap_or_default();
    let spec = AlarmSpec {
        name: alarm.alarm_name().unwrap_or_default().to_owned(),
        namespace: alarm.namespace().unwrap_or_default().to_owned(),
        metric: alarm.metric_name().unwrap_or_default().to_owned(),
        dimensions,
        statistic,
        threshold: alarm.threshold().unwrap_or_default(),
        comparison: alarm.comparison_operator().map(|operator| operator.as_str().to_owned()).unwrap_or_default(),
        period: alarm.period().unwrap_or_default(),
        evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
        actions: alarm.alarm_actions().to_vec(),
        treat_missing_data: alarm.treat_missing_data().unwrap_or_default().to_owned(),
    };
    AlarmState {
        spec,
        state: alarm.state_value().map(|state| state.as_str().to_owned()).unwrap_or_default(),
        reason: alarm.state_reason().unwrap_or_default().to_owned(),
        tagged,
    }
}

/// The topic the deployed alarms send to, to keep when `--alarm-topic` is not given.
pub(crate) fn deployed_topic(alarms: &[AlarmState]) -> Option<String> {
    alarms.iter().find_map(|alarm| alarm.spec.actions.first().cloned())
}

/// The alarms a stack wants: thresholds in docs/operations.md, "Alarms".
pub(crate) fn wanted(stack: &Stack, front: Front, timeout_seconds: i32, topic: Option<&str>) -> Vec<AlarmSpec> {
    let [errors, throttles, latency, front_5xx, table_throttles] = names(&stack.name);
    let actions: Vec<String> = topic.map(str::to_owned).into_iter().collect();
    let function = || vec![("FunctionName".to_owned(), stack.name.clone())];
    let alarm = |name: String,
                 namespace: &str,
                 metric: &str,
                 dimensions: Vec<(String, String)>,
                 statistic: &str,
                 threshold: f64| {
        let mut dimensions = dimensions;
        dimensions.sort();
        AlarmSpec {
            name,
            namespace: namespace.to_owned(),
            metric: metric.to_owned(),
            dimensions,
            statistic: statistic.to_owned(),
            threshold,
            comparison: if statistic == "Sum" { "GreaterThanOrEqualToThreshold" } else { "GreaterThanThreshold" }
                .to_owned(),
            period: PERIOD_SECONDS,
            evaluation_periods: 1,
            actions: actions.clone(),
            treat_missing_data: NOT_BREACHING.to_owned(),
        }
    };
    let front_alarm = match front {
        Front::Rest => {
            let rest = vec![("ApiName".to_owned(), stack.name.clone()), ("Stage".to_owned(), stack.stage.clone())];
            alarm(front_5xx, "AWS/ApiGateway", "5XXError", rest, "Sum", 1.0)
        }
        Front::FunctionUrl => alarm(front_5xx, "AWS/Lambda", "Url5xxCount", function(), "Sum", 1.0),
    };
    let updates =
        vec![("TableName".to_owned(), stack.table.clone()), ("Operation".to_owned(), "UpdateItem".to_owned())];
    vec![
        alarm(errors, "AWS/Lambda", "Errors", function(), "Sum", 1.0),
        alarm(throttles, "AWS/Lambda", "Throttles", function(), "Sum", 1.0),
        // Half the timeout: requests that slow get close to failing.
        alarm(latency, "AWS/Lambda", "Duration", function(), "p99", f64::from(timeout_seconds) * 1000.0 / 2.0),
        front_alarm,
        alarm(table_throttles, "AWS/DynamoDB", "ThrottledRequests", updates, "Sum", 1.0),
    ]
}

/// What changes on an alarm.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct AlarmChange {
    pub(crate) definition: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl Changes for AlarmChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.definition, &self.tags].into_iter().flatten().cloned().collect()
    }
}

/// Alarms of the stack to delete, with one call (DeleteAlarms takes up to 100 names).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlarmNames(pub(crate) Vec<String>);

impl Delete for AlarmNames {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        let delete = clients.cloudwatch.delete_alarms().set_alarm_names(Some(self.0.clone())).send().await;
        delete.op("cloudwatch:DeleteAlarms").context("deleting the alarms")?;
        Ok(None)
    }
}

/// One deletion of `names`, shown as one row naming them; absent when there are none.
fn deletion(names: Vec<String>, reason: &str) -> Deletion<AlarmNames> {
    let shown = if names.is_empty() { "alarms".to_owned() } else { names.join(", ") };
    let targets = if names.is_empty() { Vec::new() } else { vec![AlarmNames(names)] };
    Deletion::of(Resource::Alarm, shown, targets, reason)
}

/// The alarms: each wanted one made or brought in line, and the stack's tagged ones that
/// are not wanted (`--alarms off`) deleted.
pub(crate) fn plan(deployed: &[AlarmState], wanted: &[AlarmSpec]) -> (Vec<Planned<AlarmChange>>, Deletion<AlarmNames>) {
    let planned = wanted
        .iter()
        .map(|spec| {
            let action = match deployed.iter().find(|alarm| alarm.spec.name == spec.name) {
                None => Action::Create,
                Some(alarm) => {
                    let change = AlarmChange {
                        definition: (alarm.spec != *spec)
                            .then(|| diff(Field::Definition, alarm.spec.shown(), spec.shown())),
                        tags: (!alarm.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
                    };
                    Action::found(change, false)
                }
            };
            Planned::new(Resource::Alarm, &spec.name, action)
        })
        .collect();
    let unwanted: Vec<String> = deployed
        .iter()
        .filter(|alarm| alarm.tagged && !wanted.iter().any(|spec| spec.name == alarm.spec.name))
        .map(|alarm| alarm.spec.name.clone())
        .collect();
    (planned, deletion(unwanted, "--alarms off"))
}

/// Every alarm of the stack, for uninstall: only those it tagged.
pub(crate) fn teardown(deployed: &[AlarmState]) -> Deletion<AlarmNames> {
    deletion(deployed.iter().filter(|alarm| alarm.tagged).map(|alarm| alarm.spec.name.clone()).collect(), "uninstall")
}

/// Makes or updates one alarm (PutMetricAlarm replaces it whole), tagged.
pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    planned: &Planned<AlarmChange>,
    spec: &AlarmSpec,
) -> anyhow::Result<()> {
    if !planned.changes() {
        return Ok(());
    }
    let dimensions = spec.dimensions.iter().map(|(name, value)| Dimension::builder().name(name).value(value).build());
    let tags = stack.tags().into_iter().map(|(key, value)| Tag::builder().key(key).value(value).build());
    let mut put = client
        .put_metric_alarm()
        .alarm_name(&spec.name)
        .namespace(&spec.namespace)
        .metric_name(&spec.metric)
        .set_dimensions(Some(dimensions.collect()))
        .threshold(spec.threshold)
        .comparison_operator(ComparisonOperator::from(spec.comparison.as_str()))
        .period(spec.period)
        .evaluation_periods(spec.evaluation_periods)
        .treat_missing_data(&spec.treat_missing_data)
        .set_alarm_actions(Some(spec.actions.clone()))
        .set_ok_actions(Some(spec.actions.clone()))
        .set_tags(Some(tags.collect()));
    put = if spec.extended() { put.extended_statistic(&spec.statistic) } else { put.statistic(Statistic::Sum) };
    put.send().await.op("cloudwatch:PutMetricAlarm").with_context(|| format!("putting the alarm {}", spec.name))?;
    Ok(())
}

/// The alarms' contract.
pub(crate) struct AlarmsContract;

impl crate::resources::Contract for AlarmsContract {
    const KIND: crate::change::Resource = crate::change::Resource::Alarm;
    type State = AlarmState;
    type Change = AlarmChange;
    type Target = AlarmNames;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        let alarms = scope.context.account.arn("cloudwatch", &format!("alarm:{}-*", scope.context.stack.name));
        let actions = &[
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DeleteAlarms",
            "cloudwatch:DescribeAlarms",
            "cloudwatch:TagResource",
            "cloudwatch:ListTagsForResource",
        ];
        vec![crate::resources::Grant::new("Alarms", actions, vec![alarms])]
    }
}
