//! The function's log group `/aws/lambda/NAME`, made by install with a retention: one
//! Lambda makes by itself keeps logs forever.

use anyhow::Context;
use aws_sdk_cloudwatchlogs::Client;

use crate::aws::{AwsError, Clients, Made, Operation, found, gone, made};
use crate::change::{Action, Changes, Delete, Diff, Field, Planned, Resource, diff};
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

/// The log group as deployed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogGroupState {
    /// `None`: logs are kept forever.
    pub(crate) retention_days: Option<i32>,
    pub(crate) tagged: bool,
    /// The CloudFormation stack that made it, if one did.
    pub(crate) cloudformation: Option<String>,
}

pub(crate) async fn read(client: &Client, stack_name: &str, name: &str) -> Result<Option<LogGroupState>, AwsError> {
    let mut pages = client.describe_log_groups().log_group_name_prefix(name).into_paginator().send();
    let mut group = None;
    while let Some(page) = pages.next().await {
        let page = page.op("logs:DescribeLogGroups")?;
        if let Some(found) = page.log_groups().iter().find(|group| group.log_group_name() == Some(name)) {
            group = Some(found.clone());
            break;
        }
    }
    let Some(group) = group else {
        return Ok(None);
    };
    #[allow(deprecated, reason = "ListTagsForResource needs the ARN without `:*`; this takes the name")]
    let tags = client.list_tags_log_group().log_group_name(name).send().await;
    let tags = found("logs:ListTagsLogGroup", tags, NOT_FOUND)?;
    let tags = tags.as_ref().and_then(|tags| tags.tags());
    let (tagged, cloudformation) = (Stack::tagged_map(stack_name, tags), Stack::cloudformation_map(tags));
    Ok(Some(LogGroupState { retention_days: group.retention_in_days(), tagged, cloudformation }))
}

/// Creates the log group, tagged; `Existed` when it exists already (a lost answer, or
/// Lambda made it a moment ago).
async fn create(client: &Client, stack: &Stack) -> Result<Made<()>, AwsError> {
    let create = client.create_log_group().log_group_name(stack.log_group()).set_tags(Some(stack.tags()));
    let made = made("logs:CreateLogGroup", create.send().await, &["ResourceAlreadyExistsException"])?;
    Ok(made.map(drop))
}

async fn set_retention(client: &Client, stack: &Stack, days: i32) -> Result<(), AwsError> {
    let put = client.put_retention_policy().log_group_name(stack.log_group()).retention_in_days(days);
    put.send().await.op("logs:PutRetentionPolicy")?;
    Ok(())
}

async fn tag(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    #[allow(deprecated, reason = "TagResource needs the ARN without `:*`; this takes the name")]
    let tag = client.tag_log_group().log_group_name(stack.log_group()).set_tags(Some(stack.tags()));
    tag.send().await.op("logs:TagLogGroup")?;
    Ok(())
}

async fn delete(client: &Client, name: &str) -> Result<bool, AwsError> {
    gone("logs:DeleteLogGroup", client.delete_log_group().log_group_name(name).send().await, NOT_FOUND)
}

/// What changes on the log group.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct LogGroupChange {
    pub(crate) retention: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl Changes for LogGroupChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.retention, &self.tags].into_iter().flatten().cloned().collect()
    }
}

fn days(retention: Option<i32>) -> String {
    retention.map_or_else(|| "forever".to_owned(), |days| format!("{days} days"))
}

/// The log group: the retention wanted (`None`: forever, as found), and the stack's tag.
pub(crate) fn plan(
    group: Option<&LogGroupState>,
    stack: &Stack,
    retention_days: Option<i32>,
    advisories: &mut Vec<String>,
) -> Planned<LogGroupChange> {
    let action = match group {
        None => Action::Create,
        Some(group) => {
            if group.retention_days.is_none() && retention_days.is_none() {
                advisories
                    .push(format!("log group {} keeps logs forever (set --log-retention-days)", stack.log_group()));
            }
            let change = LogGroupChange {
                retention: (group.retention_days != retention_days)
                    .then(|| diff(Field::Retention, days(group.retention_days), days(retention_days))),
                tags: (!group.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
            };
            Action::found(change, false)
        }
    };
    Planned::new(Resource::LogGroup, stack.log_group(), action)
}

pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    planned: &Planned<LogGroupChange>,
    retention_days: Option<i32>,
) -> anyhow::Result<()> {
    let created = planned.action == Action::Create;
    // One that appeared since the read (Lambda makes it on a first invocation) is tagged.
    let appeared = created && create(client, stack).await.context("creating the log group")? == Made::Existed;
    let (retention, tags) = match planned.action.change() {
        Some(LogGroupChange { retention, tags }) => (retention.is_some(), tags.is_some()),
        None => (false, false),
    };
    if (created || retention)
        && let Some(days) = retention_days
    {
        set_retention(client, stack, days).await.context("setting the log retention")?;
    }
    if tags || appeared {
        tag(client, stack).await.context("tagging the log group")?;
    }
    Ok(())
}

/// A log group, by name, to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogGroupName(pub(crate) String);

impl Delete for LogGroupName {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.logs, &self.0).await.context("deleting the log group")?;
        Ok(None)
    }
}

/// The log group's contract.
pub(crate) struct LogGroupContract;

impl crate::resources::Contract for LogGroupContract {
    const KIND: crate::change::Resource = crate::change::Resource::LogGroup;
    type State = LogGroupState;
    type Change = LogGroupChange;
    type Target = LogGroupName;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        use crate::resources::Grant;
        let log_group = scope.context.stack.log_group_arn(scope.context.account);
        vec![
            Grant::new(
                "LogGroup",
                &[
                    "logs:CreateLogGroup",
                    "logs:DeleteLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:TagLogGroup",
                    // CreateLogGroup with tags needs it.
                    "logs:TagResource",
                    "logs:ListTagsLogGroup",
                ],
                vec![log_group.clone(), format!("{log_group}:*")],
            ),
            // DescribeLogGroups has no resource type: it lists the account's log groups.
            Grant::on_any("FindTheLogGroup", &["logs:DescribeLogGroups"]),
        ]
    }
}
