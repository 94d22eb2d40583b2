//! The API key callers send as `x-api-key` (`--auth api-key`, the default): one key named
//! after the stack, in the stack's usage plan.

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::Op;

use super::apigateway::{NOT_FOUND, patch, tag};
use crate::aws::{AwsError, Clients, Operation, gone};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, RowList, Rows, diff, rows};
use crate::stack::{Stack, choose, duplicates, made_again};

/// One API key named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyState {
    pub(crate) id: String,
    pub(crate) enabled: bool,
    pub(crate) tagged: bool,
    pub(crate) created: i64,
    /// The run that made it ([`crate::stack::RUN_TAG`]).
    pub(crate) run: Option<String>,
}

/// Every API key named `stack_name`.
pub(crate) async fn read(client: &Client, stack_name: &str) -> Result<Vec<KeyState>, AwsError> {
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
                    run: crate::stack::run_of(key.tags()),
                });
            }
        }
    }
    Ok(keys)
}

/// Of the keys named after the stack, the one callers use: a tagged one (one in the
/// stack's usage plan, `in_plan`, else the oldest), else the oldest untagged one.
pub(crate) fn choose_key<'a>(keys: &'a [KeyState], in_plan: &[String]) -> Option<&'a KeyState> {
    choose(keys, |key| key.tagged, |key| in_plan.contains(&key.id), |key| (key.created, key.id.clone()))
}

/// The key's secret value.
pub(crate) async fn key_value(client: &Client, key_id: &str) -> Result<Option<String>, AwsError> {
    let key = client.get_api_key().api_key(key_id).include_value(true).send().await.op("apigateway:GetApiKey")?;
    Ok(key.value)
}

/// What changes on the stack's key.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct KeyChange {
    pub(crate) enabled: Option<Diff>,
    pub(crate) tags: Option<Diff>,
}

impl Changes for KeyChange {
    fn diffs(&self) -> Vec<Diff> {
        [&self.enabled, &self.tags].into_iter().flatten().cloned().collect()
    }
}

/// The stack's key when callers send one, and the duplicates to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyPlan {
    pub(crate) planned: Planned<KeyChange>,
    /// The key kept; `None` when it is created.
    pub(crate) key: Option<KeyState>,
    /// The value a new key is made with (the stack's key in its other regions); else
    /// API Gateway picks one.
    pub(crate) value: Option<String>,
    pub(crate) duplicates: Vec<Deletion<KeyId>>,
}

impl Rows for KeyPlan {
    fn rows(&self) -> RowList {
        let Self { planned, key: _, value: _, duplicates } = self;
        rows([planned.rows(), duplicates.rows()])
    }
}

pub(crate) fn plan(keys: &[KeyState], in_plan: &[String], stack_name: &str, value: Option<&str>) -> KeyPlan {
    let key = choose_key(keys, in_plan);
    let action = match key {
        None => Action::Create,
        Some(key) => {
            let change = KeyChange {
                enabled: (!key.enabled).then(|| diff(Field::Enabled, "no", "yes")),
                tags: (!key.tagged).then(|| diff(Field::Tags, "none", "counterctl")),
            };
            Action::found(change, !key.tagged)
        }
    };
    let duplicates = duplicates(keys, key, |key| key.tagged, |key| &key.id)
        .into_iter()
        .map(|other| {
            let reason = "a duplicate of the stack's API key";
            Deletion::of(Resource::ApiKey, &other.id, vec![KeyId(other.id.clone())], reason)
        })
        .collect();
    KeyPlan {
        planned: Planned::new(Resource::ApiKey, stack_name, action),
        key: key.cloned(),
        value: value.map(str::to_owned),
        duplicates,
    }
}

/// No key wanted (`--auth iam|none`, or the function URL front): every key of the stack
/// goes, which breaks the callers that send one.
pub(crate) fn unwanted(keys: &[KeyState], stack_name: &str, reason: &str) -> Deletion<KeyId> {
    let targets = keys.iter().filter(|key| key.tagged).map(|key| KeyId(key.id.clone())).collect();
    Deletion::of(Resource::ApiKey, stack_name, targets, reason).breaking_if(true)
}

/// Makes or completes the stack's key; returns it. A key this run made besides the one
/// it keeps (a CreateApiKey whose answer was lost, retried) is deleted at once.
pub(crate) async fn apply(client: &Client, stack: &Stack, plan: &KeyPlan) -> anyhow::Result<KeyState> {
    let Some(key) = &plan.key else {
        let made = create(client, stack, plan.value.as_deref()).await.context("creating the API key")?;
        let keys = read(client, &stack.name).await.context("listing the API keys")?;
        let run = (crate::stack::run_token(), made.id.as_str());
        for extra in made_again(&keys, run, |key| key.run.as_deref(), |key| &key.id) {
            delete(client, &extra.id).await.context("deleting an API key this run made twice")?;
        }
        return Ok(made);
    };
    if let Some(KeyChange { enabled, tags }) = plan.planned.action.change() {
        if enabled.is_some() {
            enable(client, &key.id).await.context("enabling the API key")?;
        }
        if tags.is_some() {
            tag(client, stack, &format!("/apikeys/{}", key.id)).await.context("tagging the API key")?;
        }
    }
    Ok(key.clone())
}

/// CreateApiKey takes the value to use
/// (https://docs.aws.amazon.com/apigateway/latest/api/API_CreateApiKey.html: "value").
async fn create(client: &Client, stack: &Stack, value: Option<&str>) -> Result<KeyState, AwsError> {
    let key = client
        .create_api_key()
        .name(&stack.name)
        .set_value(value.map(str::to_owned))
        .description("counterctl: the key clients send as x-api-key")
        .enabled(true)
        .set_tags(Some(stack.tags_of_run()))
        .send()
        .await
        .op("apigateway:CreateApiKey")?;
    Ok(KeyState {
        id: key.id().unwrap_or_default().to_owned(),
        enabled: true,
        tagged: true,
        created: key.created_date().map_or(0, |date| date.secs()),
        run: Some(crate::stack::run_token().to_owned()),
    })
}

async fn delete(client: &Client, key_id: &str) -> Result<bool, AwsError> {
    gone("apigateway:DeleteApiKey", client.delete_api_key().api_key(key_id).send().await, NOT_FOUND)
}

async fn enable(client: &Client, key_id: &str) -> Result<(), AwsError> {
    let update = client.update_api_key().api_key(key_id).patch_operations(patch(Op::Replace, "/enabled", "true"));
    update.send().await.op("apigateway:UpdateApiKey")?;
    Ok(())
}

/// An API key, by id, to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyId(pub(crate) String);

impl Delete for KeyId {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.apigateway, &self.0).await.context("deleting an API key")?;
        Ok(None)
    }
}

/// The API key's contract.
pub(crate) struct KeyContract;

impl crate::resources::Contract for KeyContract {
    const KIND: crate::change::Resource = crate::change::Resource::ApiKey;
    type State = KeyState;
    type Change = KeyChange;
    type Target = KeyId;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        super::apigateway::grants(scope.context.account, &["/apikeys", "/apikeys/*"])
    }
}
