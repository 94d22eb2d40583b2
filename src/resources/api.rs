//! The REST API in front of the function: one `{proxy+}` resource whose `ANY` method is
//! a Lambda proxy integration, deployed to the stage.
//!
//! API Gateway limits some control-plane calls per account, whatever the API
//! (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html, "These
//! quotas can't be increased"): CreateDeployment "1 request every 5 seconds per
//! account", DeleteRestApi 1 every 30 s. Those calls wait out throttling with backoff
//! sized to their quota.

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, IntegrationType, Resource};

use super::Error;
use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::retry::Backoff;
use crate::stack::{PROXY_PATH, Stack};

const NOT_FOUND: &[&str] = &["NotFoundException"];
pub const METHOD: &str = "ANY";
pub const THROTTLED: &[&str] = &["TooManyRequestsException"];
/// What the description of each deployment counterctl makes starts with.
pub const DEPLOYMENT_PREFIX: &str = "counterctl ";

/// One REST API named after the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSummary {
    pub id: String,
    pub tagged: bool,
    /// Seconds since the epoch.
    pub created: i64,
}

/// The chosen API's routes and stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiDetail {
    pub root_id: String,
    pub proxy_id: Option<String>,
    pub method: Option<MethodState>,
    pub stages: Vec<StageState>,
}

/// The `ANY` method of `{proxy+}`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodState {
    pub authorization: String,
    pub key_required: bool,
    /// The AWS_PROXY POST integration's URI; `None` when there is no such integration.
    pub integration_uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageState {
    pub name: String,
    /// The description of the deployment the stage serves.
    pub deployment: Option<String>,
    /// The throttle of every method (`*/*` method settings), if set.
    pub throttle: Option<crate::resources::auth::Throttle>,
}

/// Method authorization for callers signing with SigV4.
pub const AWS_IAM: &str = "AWS_IAM";
/// Method authorization for everyone else (with or without an API key).
pub const NO_AUTHORIZATION: &str = "NONE";

/// Every API named `stack_name`.
pub async fn list(client: &Client, stack_name: &str) -> Result<Vec<ApiSummary>, AwsError> {
    let mut pages = client.get_rest_apis().limit(500).into_paginator().send();
    let mut apis = Vec::new();
    while let Some(page) = pages.next().await {
        for api in page.op("apigateway:GetRestApis")?.items() {
            if api.name() == Some(stack_name) {
                apis.push(ApiSummary {
                    id: api.id().unwrap_or_default().to_owned(),
                    tagged: Stack::tagged_map(stack_name, api.tags()),
                    created: api.created_date().map_or(0, |date| date.secs()),
                });
            }
        }
    }
    Ok(apis)
}

/// The API's `{proxy+}` method and its stages with their deployments' descriptions.
pub async fn detail(client: &Client, api_id: &str) -> Result<ApiDetail, AwsError> {
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
        let throttle = every_method.map(|settings| crate::resources::auth::Throttle {
            rate: settings.throttling_rate_limit(),
            burst: settings.throttling_burst_limit(),
        });
        detail.stages.push(StageState {
            name: stage.stage_name().unwrap_or_default().to_owned(),
            deployment,
            throttle,
        });
    }
    Ok(detail)
}

async fn resources(client: &Client, api_id: &str) -> Result<Vec<Resource>, AwsError> {
    let mut pages = client.get_resources().rest_api_id(api_id).embed("methods").limit(500).into_paginator().send();
    let mut resources = Vec::new();
    while let Some(page) = pages.next().await {
        resources.extend(page.op("apigateway:GetResources")?.items().iter().cloned());
    }
    Ok(resources)
}

/// Creates the API; returns it and its routes (just the root).
pub async fn create(client: &Client, stack: &Stack) -> Result<(ApiSummary, ApiDetail), AwsError> {
    let created = client
        .create_rest_api()
        .name(&stack.name)
        .description("counterctl: sequential unique IDs")
        .endpoint_configuration(EndpointConfiguration::builder().types(EndpointType::Regional).build())
        .set_tags(Some(stack.tags()))
        .send()
        .await
        .op("apigateway:CreateRestApi")?;
    let id = created.id().unwrap_or_default().to_owned();
    let detail = match created.root_resource_id() {
        Some(root) => ApiDetail { root_id: root.to_owned(), ..ApiDetail::default() },
        None => detail(client, &id).await?,
    };
    let summary = ApiSummary { id, tagged: true, created: created.created_date().map_or(0, |date| date.secs()) };
    Ok((summary, detail))
}

pub async fn tag(client: &Client, stack: &Stack, api_id: &str) -> Result<(), AwsError> {
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    let arn = format!("arn:{}:apigateway:{region}::/restapis/{api_id}", crate::aws::partition_of(&region));
    client.tag_resource().resource_arn(arn).set_tags(Some(stack.tags())).send().await.op("apigateway:TagResource")?;
    Ok(())
}

/// Makes `{proxy+}` under the root; an existing one (a concurrent install made it) is
/// used.
pub async fn create_proxy(client: &Client, api_id: &str, root_id: &str) -> Result<String, AwsError> {
    let created = client.create_resource().rest_api_id(api_id).parent_id(root_id).path_part("{proxy+}").send().await;
    match created {
        Err(error) if has_code(&error, &["ConflictException"]) => {
            let resources = resources(client, api_id).await?;
            let proxy = resources.iter().find(|resource| resource.path() == Some(PROXY_PATH));
            Ok(proxy.and_then(|proxy| proxy.id()).unwrap_or_default().to_owned())
        }
        created => Ok(created.op("apigateway:CreateResource")?.id.unwrap_or_default()),
    }
}

/// Puts the `ANY` method, replacing one that is there (PutMethod does not update a
/// method in place; a replaced method loses its integration).
pub async fn put_method(
    client: &Client,
    api_id: &str,
    resource_id: &str,
    replace: bool,
    (authorization, key_required): (&str, bool),
) -> Result<(), AwsError> {
    if replace {
        let deleted =
            client.delete_method().rest_api_id(api_id).resource_id(resource_id).http_method(METHOD).send().await;
        gone("apigateway:DeleteMethod", deleted, NOT_FOUND)?;
    }
    client
        .put_method()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(METHOD)
        .authorization_type(authorization)
        .api_key_required(key_required)
        .send()
        .await
        .op("apigateway:PutMethod")?;
    Ok(())
}

pub async fn put_integration(client: &Client, api_id: &str, resource_id: &str, uri: &str) -> Result<(), AwsError> {
    client
        .put_integration()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(METHOD)
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(uri)
        .send()
        .await
        .op("apigateway:PutIntegration")?;
    Ok(())
}

/// Deploys the API to the stage with `description` (which carries the fingerprint of
/// what is deployed), waiting out CreateDeployment's one call per 5 s.
pub async fn deploy(client: &Client, api_id: &str, stage: &str, description: &str) -> Result<(), Error> {
    Backoff::QUOTA_5_SECONDS
        .retry(
            || client.create_deployment().rest_api_id(api_id).stage_name(stage).description(description).send(),
            |error| has_code(error, THROTTLED),
        )
        .await
        .op("apigateway:CreateDeployment")?;
    Ok(())
}

/// Throttles every method of the stage (`*/*` method settings), as `--auth iam` does in
/// place of a usage plan.
pub async fn throttle_stage(
    client: &Client,
    api_id: &str,
    stage: &str,
    throttle: crate::resources::auth::Throttle,
) -> Result<(), AwsError> {
    let patch = |path: &str, value: String| {
        aws_sdk_apigateway::types::PatchOperation::builder()
            .op(aws_sdk_apigateway::types::Op::Replace)
            .path(path)
            .value(value)
            .build()
    };
    client
        .update_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .patch_operations(patch("/*/*/throttling/rateLimit", throttle.rate.to_string()))
        .patch_operations(patch("/*/*/throttling/burstLimit", throttle.burst.to_string()))
        .send()
        .await
        .op("apigateway:UpdateStage")?;
    Ok(())
}

/// Deletes the API, waiting out DeleteRestApi's one call per 30 s per account.
pub async fn delete(client: &Client, api_id: &str) -> Result<bool, AwsError> {
    let result = Backoff::QUOTA_30_SECONDS
        .retry(|| client.delete_rest_api().rest_api_id(api_id).send(), |error| has_code(error, THROTTLED))
        .await;
    gone("apigateway:DeleteRestApi", result, NOT_FOUND)
}
