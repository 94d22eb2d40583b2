//! API keys, secure by default: one key named after the stack, in a usage plan that
//! throttles it on the stage.

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{ApiKey, ApiStage, Op, PatchOperation, ThrottleSettings, UsagePlan};

use super::{Error, Mode};
use crate::aws::{AwsError, Operation, found, gone};
use crate::progress::Outcome;
use crate::stack::Stack;

const NOT_FOUND: &[&str] = &["NotFoundException"];

/// Steady rate (requests per second) and burst of the usage plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: i32,
}

/// The stack's API key, by exact name.
pub async fn find_key(client: &Client, stack: &Stack) -> Result<Option<ApiKey>, AwsError> {
    let mut pages = client.get_api_keys().name_query(&stack.name).limit(500).into_paginator().send();
    while let Some(page) = pages.next().await {
        if let Some(key) = page.op("apigateway:GetApiKeys")?.items().iter().find(|key| key.name() == Some(&stack.name))
        {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}

/// The key's secret value.
pub async fn key_value(client: &Client, key_id: &str) -> Result<Option<String>, AwsError> {
    let key = client.get_api_key().api_key(key_id).include_value(true).send().await.op("apigateway:GetApiKey")?;
    Ok(key.value)
}

pub async fn find_usage_plan(client: &Client, stack: &Stack) -> Result<Option<UsagePlan>, AwsError> {
    let mut pages = client.get_usage_plans().limit(500).into_paginator().send();
    while let Some(page) = pages.next().await {
        if let Some(plan) =
            page.op("apigateway:GetUsagePlans")?.items().iter().find(|plan| plan.name() == Some(&stack.name))
        {
            return Ok(Some(plan.clone()));
        }
    }
    Ok(None)
}

/// Finds or creates the enabled API key; its id is `None` only when planning.
pub async fn ensure_key(client: &Client, stack: &Stack, mode: Mode) -> Result<(Option<String>, Outcome), Error> {
    match find_key(client, stack).await? {
        Some(key) if key.enabled() => Ok((key.id, Outcome::Unchanged)),
        Some(key) => {
            if mode == Mode::Apply {
                client
                    .update_api_key()
                    .api_key(key.id().unwrap_or_default())
                    .patch_operations(patch(Op::Replace, "/enabled", "true"))
                    .send()
                    .await
                    .op("apigateway:UpdateApiKey")?;
            }
            Ok((key.id, Outcome::Updated { changes: vec!["enable".into()] }))
        }
        None if mode == Mode::Plan => Ok((None, Outcome::Created)),
        None => {
            let key = client
                .create_api_key()
                .name(&stack.name)
                .description("counterctl: the key clients send as x-api-key")
                .enabled(true)
                .set_tags(Some(stack.tags()))
                .send()
                .await
                .op("apigateway:CreateApiKey")?;
            Ok((key.id, Outcome::Created))
        }
    }
}

/// Makes the usage plan throttle the stage and contain the key, given what
/// [`find_usage_plan`] found.
pub async fn ensure_usage_plan(
    client: &Client,
    stack: &Stack,
    plan: Option<UsagePlan>,
    (api_id, key_id): (Option<&str>, Option<&str>),
    throttle: Throttle,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let (Some(api_id), Some(key_id)) = (api_id, key_id) else {
        return Ok((
            (),
            if plan.is_some() {
                Outcome::Updated { changes: vec!["add the new API or key".into()] }
            } else {
                Outcome::Created
            },
        ));
    };
    let Some(plan) = plan else {
        if mode == Mode::Apply {
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
            add_key(client, created.id().unwrap_or_default(), key_id).await?;
        }
        return Ok(((), Outcome::Created));
    };
    let plan_id = plan.id().unwrap_or_default();
    let mut patches = Vec::new();
    let mut changes = Vec::new();
    if !plan.api_stages().iter().any(|stage| stage.api_id() == Some(api_id) && stage.stage() == Some(&stack.stage)) {
        changes.push(format!("add stage {api_id}:{}", stack.stage));
        patches.push(patch(Op::Add, "/apiStages", format!("{api_id}:{}", stack.stage)));
    }
    let current = plan.throttle().map(|t| Throttle { rate: t.rate_limit(), burst: t.burst_limit() });
    if current != Some(throttle) {
        changes.push(format!("throttle {} req/s, burst {}", throttle.rate, throttle.burst));
        patches.push(patch(Op::Replace, "/throttle/rateLimit", throttle.rate.to_string()));
        patches.push(patch(Op::Replace, "/throttle/burstLimit", throttle.burst.to_string()));
    }
    let keys = client
        .get_usage_plan_keys()
        .usage_plan_id(plan_id)
        .limit(500)
        .send()
        .await
        .op("apigateway:GetUsagePlanKeys")?;
    let has_key = keys.items().iter().any(|key| key.id() == Some(key_id));
    if !has_key {
        changes.push("add the API key".into());
    }
    if mode == Mode::Apply {
        if !patches.is_empty() {
            client
                .update_usage_plan()
                .usage_plan_id(plan_id)
                .set_patch_operations(Some(patches))
                .send()
                .await
                .op("apigateway:UpdateUsagePlan")?;
        }
        if !has_key {
            add_key(client, plan_id, key_id).await?;
        }
    }
    Ok(((), Outcome::from_changes(changes)))
}

fn patch(op: Op, path: &str, value: impl Into<String>) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).value(value).build()
}

async fn add_key(client: &Client, plan_id: &str, key_id: &str) -> Result<(), AwsError> {
    client
        .create_usage_plan_key()
        .usage_plan_id(plan_id)
        .key_id(key_id)
        .key_type("API_KEY")
        .send()
        .await
        .op("apigateway:CreateUsagePlanKey")?;
    Ok(())
}

/// Deletes the usage plan and the key (`--auth none`, uninstall). Reports `Deleted`
/// when either was there.
pub async fn remove(client: &Client, stack: &Stack, mode: Mode) -> Result<((), Outcome), Error> {
    let (plan, key) = tokio::try_join!(find_usage_plan(client, stack), find_key(client, stack))?;
    if plan.is_none() && key.is_none() {
        return Ok(((), Outcome::Absent));
    }
    if mode == Mode::Apply {
        if let Some(plan) = &plan {
            delete_usage_plan(client, plan).await?;
        }
        if let Some(key_id) = key.as_ref().and_then(ApiKey::id) {
            gone("apigateway:DeleteApiKey", client.delete_api_key().api_key(key_id).send().await, NOT_FOUND)?;
        }
    }
    Ok(((), Outcome::Deleted))
}

/// AWS refuses to delete a usage plan that still has API stages, so they are detached
/// first (one whose API is already gone may refuse to detach; that is fine).
async fn delete_usage_plan(client: &Client, plan: &UsagePlan) -> Result<(), AwsError> {
    let plan_id = plan.id().unwrap_or_default();
    for stage in plan.api_stages() {
        let value = format!("{}:{}", stage.api_id().unwrap_or_default(), stage.stage().unwrap_or_default());
        let detach = client
            .update_usage_plan()
            .usage_plan_id(plan_id)
            .patch_operations(patch(Op::Remove, "/apiStages", value))
            .send()
            .await;
        found("apigateway:UpdateUsagePlan", detach, &["NotFoundException", "BadRequestException"])?;
    }
    gone("apigateway:DeleteUsagePlan", client.delete_usage_plan().usage_plan_id(plan_id).send().await, NOT_FOUND)?;
    Ok(())
}
