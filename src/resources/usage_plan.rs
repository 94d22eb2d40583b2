//! The usage plan that throttles the stack's API key on its stage.
//!
//! UpdateUsagePlan is limited to 1 call every 20 s per account
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), so it
//! waits out throttling with backoff sized to that.

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{ApiStage, Op, PatchOperation, ThrottleSettings};

use super::Error;
use super::apigateway::{NOT_FOUND, THROTTLED, Throttle, patch, tag, throttle_wording};
use crate::aws::{AwsError, Clients, Operation, found, gone, has_code};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, RowList, Rows, diff, rows};
use crate::retry;
use crate::stack::{Stack, choose, duplicates, made_again};

/// One usage plan named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UsagePlanState {
    pub(crate) id: String,
    pub(crate) tagged: bool,
    /// `(API id, stage)` pairs.
    pub(crate) stages: Vec<(String, String)>,
    pub(crate) throttle: Option<Throttle>,
    pub(crate) key_ids: Vec<String>,
    /// The run that made it ([`crate::stack::RUN_TAG`]).
    pub(crate) run: Option<String>,
}

impl UsagePlanState {
    pub(crate) fn serves(&self, api_id: &str) -> bool {
        self.stages.iter().any(|(api, _)| api == api_id)
    }
}

/// Every usage plan named `stack_name`, with its keys.
pub(crate) async fn read(client: &Client, stack_name: &str) -> Result<Vec<UsagePlanState>, AwsError> {
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
                run: crate::stack::run_of(plan.tags()),
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

/// Of the usage plans named after the stack, the stack's: a tagged one serving its API,
/// else any tagged one, else an untagged one (the smallest id, for a stable choice).
pub(crate) fn choose_usage_plan<'a>(plans: &'a [UsagePlanState], api_id: Option<&str>) -> Option<&'a UsagePlanState> {
    choose(plans, |plan| plan.tagged, |plan| api_id.is_some_and(|id| plan.serves(id)), |plan| plan.id.clone())
}

/// What changes on the stack's usage plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct UsagePlanChange {
    /// The stack's API and stage added.
    pub(crate) stage: Option<Diff>,
    pub(crate) throttle: Option<Diff>,
    /// The stack's key added.
    pub(crate) key: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl Changes for UsagePlanChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.stage, &self.throttle, &self.key, &self.tags].into_iter().flatten().cloned().collect()
    }
}

/// The stack's usage plan when callers send a key, and the duplicates to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UsagePlanPlan {
    pub(crate) planned: Planned<UsagePlanChange>,
    /// The plan kept; `None` when it is created.
    pub(crate) usage_plan: Option<UsagePlanState>,
    pub(crate) duplicates: Vec<Deletion<UsagePlanState>>,
}

impl Rows for UsagePlanPlan {
    fn rows(&self) -> RowList {
        let Self { planned, usage_plan: _, duplicates } = self;
        rows([planned.rows(), duplicates.rows()])
    }
}

/// What the usage plan should serve and hold.
pub(crate) struct UsagePlanSpec<'a> {
    pub(crate) stack: &'a Stack,
    /// The API kept; `None` when it is created.
    pub(crate) api_id: Option<&'a str>,
    pub(crate) throttle: Throttle,
    /// The key kept; `None` when it is created.
    pub(crate) key_id: Option<&'a str>,
}

pub(crate) fn plan(chosen: Option<&UsagePlanState>, all: &[UsagePlanState], spec: &UsagePlanSpec<'_>) -> UsagePlanPlan {
    let stage = &spec.stack.stage;
    let action = match chosen {
        None => Action::Create,
        Some(plan) => {
            let serves = spec.api_id.is_some_and(|api| plan.stages.iter().any(|(id, s)| id == api && s == stage));
            let change = UsagePlanChange {
                stage: (!serves)
                    .then(|| diff(Field::Stage, "none", format!("{}:{stage}", spec.api_id.unwrap_or("new API")))),
                throttle: (plan.throttle != Some(spec.throttle))
                    .then(|| diff(Field::Throttle, throttle_wording(plan.throttle), spec.throttle)),
                key: (!spec.key_id.is_some_and(|key| plan.key_ids.iter().any(|id| id == key)))
                    .then(|| diff(Field::Key, "none", "the stack's key")),
                tags: (!plan.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
            };
            Action::found(change, !plan.tagged)
        }
    };
    let duplicates = duplicates(all, chosen, |plan| plan.tagged, |plan| &plan.id)
        .into_iter()
        .map(|other| {
            let reason = "a duplicate of the stack's usage plan";
            Deletion::of(Resource::UsagePlan, &other.id, vec![other.clone()], reason)
        })
        .collect();
    UsagePlanPlan {
        planned: Planned::new(Resource::UsagePlan, &spec.stack.name, action),
        usage_plan: chosen.cloned(),
        duplicates,
    }
}

/// No key wanted: every usage plan of the stack goes.
pub(crate) fn unwanted(plans: &[UsagePlanState], stack_name: &str, reason: &str) -> Deletion<UsagePlanState> {
    let targets = plans.iter().filter(|plan| plan.tagged).cloned().collect();
    Deletion::of(Resource::UsagePlan, stack_name, targets, reason).breaking_if(true)
}

/// Makes or completes the stack's usage plan for API `api_id` and key `key_id`. A plan
/// this run made besides the one it keeps (a CreateUsagePlan whose answer was lost,
/// retried) is deleted at once, before the key joins.
pub(crate) async fn apply(
    client: &Client,
    stack: &Stack,
    plan: &UsagePlanPlan,
    throttle: Throttle,
    (api_id, key_id): (&str, &str),
) -> anyhow::Result<()> {
    let Some(usage_plan) = &plan.usage_plan else {
        let id = create(client, stack, api_id, throttle).await.context("creating the usage plan")?;
        let plans = read(client, &stack.name).await.context("listing the usage plans")?;
        for extra in made_again(&plans, (crate::stack::run_token(), &id), |plan| plan.run.as_deref(), |plan| &plan.id) {
            delete(client, extra).await.context("deleting a usage plan this run made twice")?;
        }
        add_key(client, &id, key_id).await.context("adding the key to the usage plan")?;
        return Ok(());
    };
    let Some(UsagePlanChange { stage, throttle: throttle_change, key, tags }) = plan.planned.action.change() else {
        return Ok(());
    };
    let mut patches = Vec::new();
    if stage.is_some() {
        patches.push(patch(Op::Add, "/apiStages", format!("{api_id}:{}", stack.stage)));
    }
    if throttle_change.is_some() {
        patches.push(patch(Op::Replace, "/throttle/rateLimit", throttle.rate.to_string()));
        patches.push(patch(Op::Replace, "/throttle/burstLimit", throttle.burst.to_string()));
    }
    if !patches.is_empty() {
        update(client, &usage_plan.id, patches).await.context("updating the usage plan")?;
    }
    if key.is_some() {
        add_key(client, &usage_plan.id, key_id).await.context("adding the key to the usage plan")?;
    }
    if tags.is_some() {
        let path = format!("/usageplans/{}", usage_plan.id);
        tag(client, stack, &path).await.context("tagging the usage plan")?;
    }
    Ok(())
}

async fn create(client: &Client, stack: &Stack, api_id: &str, throttle: Throttle) -> Result<String, AwsError> {
    let created = client
        .create_usage_plan()
        .name(&stack.name)
        .description("counterctl: throttles the API key")
        .api_stages(ApiStage::builder().api_id(api_id).stage(&stack.stage).build())
        .throttle(ThrottleSettings::builder().rate_limit(throttle.rate).burst_limit(throttle.burst).build())
        .set_tags(Some(stack.tags_of_run()))
        .send()
        .await
        .op("apigateway:CreateUsagePlan")?;
    Ok(created.id.unwrap_or_default())
}

/// One UpdateUsagePlan call, waiting out its quota.
async fn update(client: &Client, plan_id: &str, patches: Vec<PatchOperation>) -> Result<(), Error> {
    retry::QUOTA_20_SECONDS
        .retry(
            || client.update_usage_plan().usage_plan_id(plan_id).set_patch_operations(Some(patches.clone())).send(),
            |error| has_code(error, THROTTLED),
        )
        .await
        .op("apigateway:UpdateUsagePlan")?;
    Ok(())
}

/// Adds the key to the plan. ConflictException means the key is in it already (a
/// concurrent install added it) or in another plan of the same stage; only the first is
/// fine, so the plan is asked.
async fn add_key(client: &Client, plan_id: &str, key_id: &str) -> Result<(), AwsError> {
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
impl Delete for UsagePlanState {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.apigateway, self).await?;
        Ok(None)
    }
}

async fn delete(client: &Client, plan: &UsagePlanState) -> anyhow::Result<()> {
    for (api_id, stage) in &plan.stages {
        let detach = retry::QUOTA_20_SECONDS
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
        found("apigateway:UpdateUsagePlan", detach, &["NotFoundException", "BadRequestException"])
            .context("deleting a usage plan")?;
    }
    let deleted = client.delete_usage_plan().usage_plan_id(&plan.id).send().await;
    gone("apigateway:DeleteUsagePlan", deleted, NOT_FOUND).context("deleting a usage plan")?;
    Ok(())
}

/// The usage plan's contract.
pub(crate) struct UsagePlanContract;

impl crate::resources::Contract for UsagePlanContract {
    const KIND: crate::change::Resource = crate::change::Resource::UsagePlan;
    type State = UsagePlanState;
    type Change = UsagePlanChange;
    type Target = UsagePlanState;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        super::apigateway::grants(scope.context.account, &["/usageplans", "/usageplans/*"])
    }
}
