//! The REST API in front of the function (`--front rest`, the default): one API named
//! after the stack, chosen among duplicates, made or adopted, and read with its routes
//! ([`super::routes`]) and stages ([`super::stage`]).
//!
//! API Gateway limits some control-plane calls per account, whatever the API
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html, "These
//! quotas can't be increased"): DeleteRestApi 1 every 30 s. That call waits out
//! throttling with backoff sized to its quota.
//!
//! Two installs of one stack at the same time: both may create an API. After creating
//! one, install waits [`SETTLE`] and lists the stack's APIs; the oldest (by API
//! Gateway's creation time, then id) wins, and the loser deletes its own API and leaves
//! the key and usage plan to the winner. Each run tags what it creates with its token
//! ([`crate::stack::RUN_TAG`]), so two APIs of one run (a lost answer, retried) are told
//! from a concurrent install's: the run keeps one and deletes the other at once
//! ([`settle`]). The wait is longer than the creation time's
//! resolution (1 s), so of two APIs created in the same second each run sees both and
//! both pick the same one; of two created in different seconds, the later run sees the
//! earlier and yields.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, IntegrationType};

use super::apigateway::{NOT_FOUND, THROTTLED, Throttle, tag};
use super::routes::{METHOD, MethodState, RouteRead, resources};
use super::stage::StageState;
use super::usage_plan::UsagePlanState;
use crate::aws::{AwsError, Clients, Operation, found, gone, has_code};
use crate::change::{Action, Changes, Delete, Deletion, Diff, Field, Planned, Resource, RowList, Rows, diff, rows};
use crate::retry;
use crate::stack::{PROXY_PATH, Stack, choose, duplicates};

/// How long after creating an API install looks for a concurrent install's.
pub(crate) const SETTLE: Duration = Duration::from_millis(1500);

/// One REST API named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiSummary {
    pub(crate) id: String,
    pub(crate) tagged: bool,
    /// The CloudFormation stack that made it, if one did.
    pub(crate) cloudformation: Option<String>,
    /// Seconds since the epoch.
    pub(crate) created: i64,
    /// The run that made it ([`crate::stack::RUN_TAG`]).
    pub(crate) run: Option<String>,
}

/// The chosen API's routes and stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ApiDetail {
    pub(crate) root_id: String,
    pub(crate) proxy_id: Option<String>,
    pub(crate) method: Option<MethodState>,
    pub(crate) stages: Vec<StageState>,
}

impl ApiDetail {
    pub(crate) fn stage(&self, name: &str) -> Option<&StageState> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    pub(crate) fn route(&self) -> RouteRead<'_> {
        RouteRead { proxy_id: self.proxy_id.as_deref(), method: self.method.as_ref() }
    }
}

/// The chosen API, as apply needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChosenApi {
    pub(crate) id: String,
    pub(crate) detail: ApiDetail,
}

/// Of the APIs named after the stack, the one the stack uses: a tagged one (the one a
/// usage plan of the stack serves, else the oldest), else the oldest untagged one, which
/// install adopts.
pub(crate) fn choose_api<'a>(apis: &'a [ApiSummary], usage_plans: &[UsagePlanState]) -> Option<&'a ApiSummary> {
    let in_use = |api: &ApiSummary| usage_plans.iter().any(|plan| plan.tagged && plan.serves(&api.id));
    choose(apis, |api| api.tagged, in_use, |api| (api.created, api.id.clone()))
}

/// The API adopted: it gets the stack's tags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiChange {
    pub(crate) tags: Diff,
}

impl Changes for ApiChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.tags.clone()]
    }
}

/// The stack's API: kept, adopted (tagged) or created, and its tagged duplicates deleted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiPlan {
    pub(crate) planned: Planned<ApiChange>,
    /// The API kept; `None` when it is created.
    pub(crate) chosen: Option<ChosenApi>,
    pub(crate) duplicates: Vec<Deletion<ApiId>>,
}

impl Rows for ApiPlan {
    fn rows(&self) -> RowList {
        let Self { planned, chosen: _, duplicates } = self;
        rows([planned.rows(), duplicates.rows()])
    }
}

pub(crate) fn plan(
    apis: &[ApiSummary],
    chosen: Option<&ApiSummary>,
    detail: Option<&ApiDetail>,
    stack_name: &str,
) -> ApiPlan {
    let chosen_api = chosen.zip(detail).map(|(api, detail)| ChosenApi { id: api.id.clone(), detail: detail.clone() });
    let action = match chosen {
        None => Action::Create,
        Some(api) if api.tagged => Action::Keep,
        Some(_) => Action::Adopt(ApiChange { tags: diff(Field::Tags, "none", "counterctl") }),
    };
    let duplicates = duplicates(apis, chosen, |api| api.tagged, |api| &api.id)
        .into_iter()
        .map(|api| {
            let reason = format!("a duplicate of the stack's API {}", chosen.map_or("", |chosen| chosen.id.as_str()));
            Deletion::of(Resource::Api, &api.id, vec![ApiId(api.id.clone())], reason)
        })
        .collect();
    ApiPlan { planned: Planned::new(Resource::Api, stack_name, action), chosen: chosen_api, duplicates }
}

/// Every tagged API of the stack, deleted for `reason` (a row each), or one absent row.
pub(crate) fn unwanted(apis: &[ApiSummary], stack_name: &str, reason: &str, breaking: bool) -> Vec<Deletion<ApiId>> {
    let deletions: Vec<Deletion<ApiId>> = apis
        .iter()
        .filter(|api| api.tagged)
        .map(|api| Deletion::of(Resource::Api, &api.id, vec![ApiId(api.id.clone())], reason).breaking_if(breaking))
        .collect();
    if deletions.is_empty() {
        return vec![Deletion::absent(Resource::Api, stack_name)];
    }
    deletions
}

/// How the race settles for the run `run`, which made `created`: the oldest tagged API
/// wins, as every run sees it. The run's own APIs are `created` and those with its token
/// (a CreateRestApi whose answer was lost and retried makes two): one of them winning is
/// this run winning, with that one; the others go at once (all of them when it lost).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settled {
    pub(crate) winner: String,
    pub(crate) won: bool,
    /// This run's APIs to delete.
    pub(crate) own_extras: Vec<String>,
}

pub(crate) fn settle(apis: &[ApiSummary], created: &ApiSummary, run: &str) -> Settled {
    // `created` counts even before the listing shows it.
    let candidates = apis.iter().filter(|api| api.tagged).chain(std::iter::once(created));
    let winner = candidates.min_by_key(|api| (api.created, api.id.clone())).unwrap_or(created);
    let ours = |api: &ApiSummary| api.id == created.id || api.run.as_deref() == Some(run);
    let won = ours(winner);
    let mut own_extras: Vec<String> = Vec::new();
    for api in std::iter::once(created).chain(apis.iter().filter(|api| api.tagged && ours(api))) {
        if (!won || api.id != winner.id) && !own_extras.contains(&api.id) {
            own_extras.push(api.id.clone());
        }
    }
    Settled { winner: winner.id.clone(), won, own_extras }
}

/// The API the stack ends up with: this run's, or the one a concurrent install made
/// that won.
pub(crate) enum Race {
    Won(String),
    Lost(String),
}

/// Makes the API (settling a race with a concurrent install) or tags the one adopted.
/// `connect` puts the routes on a new API while the race settles.
pub(crate) async fn apply<F: Future<Output = anyhow::Result<()>>>(
    client: &Client,
    stack: &Stack,
    plan: &ApiPlan,
    progress: &crate::progress::Progress,
    connect: impl Fn(String, ApiDetail) -> F,
) -> anyhow::Result<Race> {
    let Some(chosen) = plan.chosen.as_ref().filter(|_| plan.planned.action != Action::Create) else {
        let create = async { create(client, stack).await.context("creating the API") };
        let (created, detail) = progress.step(plan.planned.row(), create).await?;
        let settle = async {
            tokio::time::sleep(SETTLE).await;
            let apis = list(client, &stack.name).await.context("listing the APIs")?;
            anyhow::Ok(settle(&apis, &created, crate::stack::run_token()))
        };
        let (routes, settled) = tokio::join!(connect(created.id.clone(), detail), settle);
        let Settled { winner, won, own_extras } = settled?;
        for extra in &own_extras {
            delete(client, extra).await.context("deleting an API this run made twice or lost the race with")?;
        }
        if !won {
            return Ok(Race::Lost(winner));
        }
        if winner != created.id {
            // Made by this run's create whose answer was lost, and older: the routes go there.
            let detail = self::detail(client, &winner).await.context("reading the API's routes and stages")?;
            connect(winner.clone(), detail).await?;
            return Ok(Race::Won(winner));
        }
        routes?;
        return Ok(Race::Won(created.id));
    };
    let retag = async {
        if let Some(ApiChange { tags: _ }) = plan.planned.action.change() {
            tag(client, stack, &format!("/restapis/{}", chosen.id)).await.context("tagging the API")?;
        }
        anyhow::Ok(())
    };
    progress.step(plan.planned.row(), retag).await?;
    connect(chosen.id.clone(), chosen.detail.clone()).await?;
    Ok(Race::Won(chosen.id.clone()))
}

/// Every API named `stack_name`.
pub(crate) async fn list(client: &Client, stack_name: &str) -> Result<Vec<ApiSummary>, AwsError> {
    let mut pages = client.get_rest_apis().limit(500).into_paginator().send();
    let mut apis = Vec::new();
    while let Some(page) = pages.next().await {
        for api in page.op("apigateway:GetRestApis")?.items() {
            if api.name() == Some(stack_name) {
                apis.push(ApiSummary {
                    id: api.id().unwrap_or_default().to_owned(),
                    tagged: Stack::tagged_map(stack_name, api.tags()),
                    cloudformation: Stack::cloudformation_map(api.tags()),
                    created: api.created_date().map_or(0, |date| date.secs()),
                    run: crate::stack::run_of(api.tags()),
                });
            }
        }
    }
    Ok(apis)
}

/// The API's `{proxy+}` method and its stages with their deployments' descriptions.
pub(crate) async fn detail(client: &Client, api_id: &str) -> Result<ApiDetail, AwsError> {
    let (resources, stages) = tokio::join!(resources(client, api_id), async {
        client.get_stages().rest_api_id(api_id).send().await.op("apigateway:GetStages")
    });
    let resources = resources?;
    let mut detail = ApiDetail {
        root_id: resources
            .iter()
            .find(|resource| resource.path() == Some("/"))
            .and_then(|root| root.id())
            .unwrap_or_default()
            .to_owned(),
        ..ApiDetail::default()
    };
    let proxy = resources.iter().find(|resource| resource.path() == Some(PROXY_PATH));
    detail.proxy_id = proxy.and_then(|proxy| proxy.id().map(str::to_owned));
    detail.method = proxy.and_then(|proxy| proxy.resource_methods()?.get(METHOD)).map(|method| {
        let integration = method.method_integration().filter(|integration| {
            integration.r#type() == Some(&IntegrationType::AwsProxy) && integration.http_method() == Some("POST")
        });
        MethodState {
            authorization: method.authorization_type().unwrap_or("NONE").to_owned(),
            key_required: method.api_key_required().unwrap_or(false),
            integration_uri: integration.and_then(|integration| integration.uri().map(str::to_owned)),
        }
    });
    for stage in stages?.item() {
        let deployment = match stage.deployment_id() {
            Some(id) => {
                let deployment = client.get_deployment().rest_api_id(api_id).deployment_id(id).send().await;
                found("apigateway:GetDeployment", deployment, NOT_FOUND)?.and_then(|deployment| deployment.description)
            }
            None => None,
        };
        let every_method = stage.method_settings().and_then(|settings| settings.get("*/*"));
        let throttle = every_method.map(|settings| Throttle {
            rate: settings.throttling_rate_limit(),
            burst: settings.throttling_burst_limit(),
        });
        detail.stages.push(StageState {
            name: stage.stage_name().unwrap_or_default().to_owned(),
            deployment,
            deployment_id: stage.deployment_id().map(str::to_owned),
            throttle,
        });
    }
    Ok(detail)
}

/// Creates the API; returns it and its routes (just the root).
async fn create(client: &Client, stack: &Stack) -> Result<(ApiSummary, ApiDetail), AwsError> {
    let created = client
        .create_rest_api()
        .name(&stack.name)
        .description("counterctl: sequential unique IDs")
        .endpoint_configuration(EndpointConfiguration::builder().types(EndpointType::Regional).build())
        .set_tags(Some(stack.tags_of_run()))
        .send()
        .await
        .op("apigateway:CreateRestApi")?;
    let id = created.id().unwrap_or_default().to_owned();
    let detail = match created.root_resource_id() {
        Some(root) => ApiDetail { root_id: root.to_owned(), ..ApiDetail::default() },
        None => detail(client, &id).await?,
    };
    let summary = ApiSummary {
        id,
        tagged: true,
        cloudformation: None,
        created: created.created_date().map_or(0, |date| date.secs()),
        run: Some(crate::stack::run_token().to_owned()),
    };
    Ok((summary, detail))
}

/// Deletes the API, waiting out DeleteRestApi's one call per 30 s per account.
async fn delete(client: &Client, api_id: &str) -> Result<bool, AwsError> {
    let result = retry::QUOTA_30_SECONDS
        .retry(|| client.delete_rest_api().rest_api_id(api_id).send(), |error| has_code(error, THROTTLED))
        .await;
    gone("apigateway:DeleteRestApi", result, NOT_FOUND)
}

/// An API, by id, to delete.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiId(pub(crate) String);

impl Delete for ApiId {
    async fn delete(&self, clients: &Clients) -> anyhow::Result<Option<String>> {
        delete(&clients.apigateway, &self.0).await.context("deleting an API")?;
        Ok(None)
    }
}

/// The REST API's contract; its routes, integration and stages are paths under it.
pub(crate) struct ApiContract;

impl crate::resources::Contract for ApiContract {
    const KIND: crate::change::Resource = crate::change::Resource::Api;
    type State = ApiSummary;
    type Change = ApiChange;
    type Target = ApiId;

    fn grants(scope: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        super::apigateway::grants(scope.context.account, &["/restapis", "/restapis/*"])
    }
}
