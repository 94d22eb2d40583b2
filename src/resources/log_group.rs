//! The function's log group `/aws/lambda/NAME`, made by install with a retention: one
//! Lambda makes by itself keeps logs forever.

use aws_sdk_cloudwatchlogs::Client;

use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

/// The log group as deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct LogGroupState {
    /// `None`: logs are kept forever.
    pub retention_days: Option<i32>,
    pub tagged: bool,
}

pub async fn read(client: &Client, stack_name: &str, name: &str) -> Result<Option<LogGroupState>, AwsError> {
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
    let tagged = Stack::tagged_map(stack_name, tags.as_ref().and_then(|tags| tags.tags()));
    Ok(Some(LogGroupState { retention_days: group.retention_in_days(), tagged }))
}

/// Creates the log group, tagged; `false` when it exists already (a lost answer, or
/// Lambda made it a moment ago).
pub async fn create(client: &Client, stack: &Stack) -> Result<bool, AwsError> {
    let create = client.create_log_group().log_group_name(stack.log_group()).set_tags(Some(stack.tags()));
    match create.send().await {
        Err(error) if has_code(&error, &["ResourceAlreadyExistsException"]) => Ok(false),
        created => created.map(|_| true).op("logs:CreateLogGroup"),
    }
}

pub async fn set_retention(client: &Client, stack: &Stack, days: i32) -> Result<(), AwsError> {
    let put = client.put_retention_policy().log_group_name(stack.log_group()).retention_in_days(days);
    put.send().await.op("logs:PutRetentionPolicy")?;
    Ok(())
}

pub async fn tag(client: &Client, stack: &Stack) -> Result<(), AwsError> {
    #[allow(deprecated, reason = "TagResource needs the ARN without `:*`; this takes the name")]
    let tag = client.tag_log_group().log_group_name(stack.log_group()).set_tags(Some(stack.tags()));
    tag.send().await.op("logs:TagLogGroup")?;
    Ok(())
}

pub async fn delete(client: &Client, name: &str) -> Result<bool, AwsError> {
    gone("logs:DeleteLogGroup", client.delete_log_group().log_group_name(name).send().await, NOT_FOUND)
}
