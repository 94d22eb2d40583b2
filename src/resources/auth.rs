//! API keys, secure by default: one key named after the stack, in a usage plan that
//! throttles it on the stage.
//!
//! UpdateUsagePlan is limited to 1 call every 20 s per account
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), so it
//! waits out throttling with backoff sized to that.

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{ApiStage, Op, PatchOperation, ThrottleSettings};

use super::Error;
use super::api::THROTTLED;
use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::retry::Backoff;
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["NotFoundException"];

/// Steady rate (requests per second) and burst of the usage plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: i32,
}

/// One API key named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub id: String,
    pub enabled: bool,
    pub tagged: bool,
    pub created: i64,
}

/// One usage plan named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePlanState {
    pub id: String,
    pub tagged: bool,
    /// `(API id, stage)` pairs.
    pub stages: Vec<(String, String)>,
    pub throttle: Option<Throttle>,
    pub key_ids: Vec<String>,
}

/// Every API key named `stack_name`.
pub async fn keys(client: &Client, stack_name: &str) -> Result<Vec<KeyState>, AwsError> {
    let mut pages = client.get_api_keys().name_query(stack_name).limit(500).into_paginator().send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        for key in page.op("apigateway:GetApiKeys")?.items() {
            if key.name() == Some(stack_name) {
                keys.push(KeyState {
                    id: key.id().unwrap_or_default().to_owned(),
                    enabled: key.enabled(),
                    tagged: Stack::tagged_map(stack_name, key.tags()),
                    created: key.created_date().map_or(0, |date| date.secs()),
                });
            }
        }
    }
    Ok(keys)
}

/// The key's secret value.
pub async fn key_value(client: &Client, key_id: &str) -> Result<Option<String>, AwsError> {
    let key = client.get_api_key().api_key(key_id).include_value(true).send().await.op("apigateway:GetApiKey")?;
    Ok(key.value)
}

/// Every usage plan named `stack_name`, with its keys.
pub async fn usage_plans(client: &Client, stack_name: &str) -> Result<Vec<UsagePlanState>, AwsError> {
    let mut pages = client.get_usage_plans().limit(500).into_paginator().send();
    let mut plans = Vec::new();
    while let Some(page) = pages.next().await {
        for plan in page.op("apigateway:GetUsagePlans")?.items() {
            if plan.name() != Some(stack_name) {
                continue;
            }
            let id = plan.id().unwrap_or_default().to_owned();
            let keys = client.get_usage_plan_keys().usage_plan_id(&id).limit(500).send().await;
            let keys = found("apigateway:GetUsagePlanKeys", keys, NOT_FOUND)?;
            plans.push(UsagePlanState {
                tagged: Stack::tagged_map(stack_name, plan.tags()),
                stages: plan
                    .api_stages()
                    .iter()
                    .map(|stage| {
                        (stage.api_id().unwrap_or_default().to_owned(), stage.stage().unwrap_or_default().to_owned())
                    })
                    .collect(),
                throttle: plan.throttle().map(|t| Throttle { rate: t.rate_limit(), burst: t.burst_limit() }),
                key_ids: keys
                    .map(|keys| keys.items().iter().filter_map(|key| key.id().map(str::to_owned)).collect())
                    .unwrap_or_default(),
                id,
            });
        }
    }
    Ok(plans)
}

pub async fn create_key(client: &Client, stack: &Stack) -> Result<KeyState, AwsError> {
    let key = client
        .create_api_key()
        .name(&stack.name)
        .description("counterctl: the key clients send as x-api-key")
        .enabled(true)
        .set_tags(Some(stack.tags()))
        .send()
        .await
        .op("apigateway:CreateApiKey")?;
    Ok(KeyState {
        id: key.id().unwrap_or_default().to_owned(),
        enabled: true,
        tagged: true,
        created: key.created_date().map_or(0, |date| date.secs()),
    })
}

pub async fn enable_key(client: &Client, key_id: &str) -> Result<(), AwsError> {
    client
        .update_api_key()
        .api_key(key_id)
        .patch_operations(patch(Op::Replace, "/enabled", "true"))
        .send()
        .await
        .op("apigateway:UpdateApiKey")?;
    Ok(())
}

pub async fn tag(client: &Client, stack: &Stack, path: &str) -> Result<(), AwsError> {
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    let arn = format!("arn:{}:apigateway:{region}::{path}", crate::aws::partition_of(&region));
    client.tag_resource().resource_arn(arn).set_tags(Some(stack.tags())).send().await.op("apigateway:TagResource")?;
    Ok(())
}

pub async fn delete_key(client: &Client, key_id: &str) -> Result<bool, AwsError> {
    gone("apigateway:DeleteApiKey", client.delete_api_key().api_key(key_id).send().await, NOT_FOUND)
}

pub async fn create_usage_plan(
    client: &Client,
    stack: &Stack,
    api_id: &str,
    throttle: Throttle,
) -> Result<String, AwsError> {
    let created = client
        .create_usage_plan()
        .name(&stack.name)
        .description("counterctl: throttles the API key")
        .api_stages(ApiStage::builder().api_id(api_id).stage(&stack.stage).build())
        .throttle(ThrottleSettings::builder().rate_limit(throttle.rate).burst_limit(throttle.burst).build())
        .set_tags(Some(stack.tags()))
        .send()
        .await
        .op("apigateway:CreateUsagePlan")?;
    Ok(created.id.unwrap_or_default())
}

/// The patches that add `api_id:stage` and set the throttle.
pub fn stage_patch(api_id: &str, stage: &str) -> PatchOperation {
    patch(Op::Add, "/apiStages", format!("{api_id}:{stage}"))
}

pub fn throttle_patches(throttle: Throttle) -> [PatchOperation; 2] {
    [
        patch(Op::Replace, "/throttle/rateLimit", throttle.rate.to_string()),
        patch(Op::Replace, "/throttle/burstLimit", throttle.burst.to_string()),
    ]
}

pub async fn update_usage_plan(client: &Client, plan_id: &str, patches: Vec<PatchOperation>) -> Result<(), Error> {
    Backoff::QUOTA_20_SECONDS
        .retry(
            || client.update_usage_plan().usage_plan_id(plan_id).set_patch_operations(Some(patches.clone())).send(),
            |error| has_code(error, THROTTLED),
        )
        .await
        .op("apigateway:UpdateUsagePlan")?;
    Ok(())
}

fn patch(op: Op, path: &str, value: impl Into<String>) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).value(value).build()
}

/// Adds the key to the plan. ConflictException means the key is in it already (a
/// concurrent install added it) or in another plan of the same stage; only the first is
/// fine, so the plan is asked.
pub async fn add_key(client: &Client, plan_id: &str, key_id: &str) -> Result<(), AwsError> {
    let add = client.create_usage_plan_key().usage_plan_id(plan_id).key_id(key_id).key_type("API_KEY").send().await;
    match add {
        Err(error) if has_code(&error, &["ConflictException"]) => {
            let member = client.get_usage_plan_key().usage_plan_id(plan_id).key_id(key_id).send().await;
            match found("apigateway:GetUsagePlanKey", member, NOT_FOUND)? {
                Some(_) => Ok(()),
                None => Err(AwsError::new("apigateway:CreateUsagePlanKey", error)),
            }
        }
        added => added.map(|_| ()).op("apigateway:CreateUsagePlanKey"),
    }
}

/// AWS refuses to delete a usage plan that still has API stages, so they are detached
/// first (one whose API is already gone may refuse to detach; that is fine).
pub async fn delete_usage_plan(client: &Client, plan: &UsagePlanState) -> Result<bool, Error> {
    for (api_id, stage) in &plan.stages {
        let detach = Backoff::QUOTA_20_SECONDS
            .retry(
                || {
                    client
                        .update_usage_plan()
                        .usage_plan_id(&plan.id)
                        .patch_operations(patch(Op::Remove, "/apiStages", format!("{api_id}:{stage}")))
                        .send()
                },
                |error| has_code(error, THROTTLED),
            )
            .await;
        found("apigateway:UpdateUsagePlan", detach, &["NotFoundException", "BadRequestException"])?;
    }
    let deleted = client.delete_usage_plan().usage_plan_id(&plan.id).send().await;
    Ok(gone("apigateway:DeleteUsagePlan", deleted, NOT_FOUND)?)
}
