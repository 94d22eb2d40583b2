//! The REST API in front of the function: one `{proxy+}` resource whose `ANY` method is
//! a Lambda proxy integration, deployed to the stage.

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, IntegrationType, Resource, RestApi};

use super::{Error, Mode};
use crate::aws::{Account, AwsError, Operation, found, gone, has_code};
use crate::progress::Outcome;
use crate::retry::Backoff;
use crate::stack::{PROXY_PATH, Stack};

const NOT_FOUND: &[&str] = &["NotFoundException"];
const METHOD: &str = "ANY";

/// This stack's API: the one named NAME that carries the stack tag, else an untagged
/// one named NAME (the original manual setup's), which is then adopted.
pub async fn find(client: &Client, stack: &Stack) -> Result<Option<RestApi>, AwsError> {
    let mut pages = client.get_rest_apis().limit(500).into_paginator().send();
    let mut untagged = None;
    while let Some(page) = pages.next().await {
        for api in page.op("apigateway:GetRestApis")?.items() {
            if api.name() != Some(stack.name.as_str()) {
                continue;
            }
            if stack.tagged(api.tags().into_iter().flatten().map(|(key, value)| (key.as_str(), value.as_str()))) {
                return Ok(Some(api.clone()));
            }
            untagged.get_or_insert_with(|| api.clone());
        }
    }
    Ok(untagged)
}

/// Creates the API unless [`find`] found it; its id is `None` only when planning its
/// creation.
pub async fn ensure(
    client: &Client,
    stack: &Stack,
    found: Option<RestApi>,
    mode: Mode,
) -> Result<(Option<String>, Outcome), Error> {
    if let Some(api) = found {
        let id = api.id().unwrap_or_default().to_owned();
        if stack.tagged(api.tags().into_iter().flatten().map(|(key, value)| (key.as_str(), value.as_str()))) {
            return Ok((Some(id), Outcome::Unchanged));
        }
        if mode == Mode::Apply {
            let region = client.config().region().map(ToString::to_string).unwrap_or_default();
            let arn = format!("arn:{}:apigateway:{region}::/restapis/{id}", crate::aws::partition_of(&region));
            client
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(stack.tags()))
                .send()
                .await
                .op("apigateway:TagResource")?;
        }
        return Ok((Some(id), Outcome::Adopted { note: "existing API of this name, now tagged and managed".into() }));
    }
    if mode == Mode::Plan {
        return Ok((None, Outcome::Created));
    }
    let created = client
        .create_rest_api()
        .name(&stack.name)
        .description("counterctl: sequential unique IDs")
        .endpoint_configuration(EndpointConfiguration::builder().types(EndpointType::Regional).build())
        .set_tags(Some(stack.tags()))
        .send()
        .await
        .op("apigateway:CreateRestApi")?;
    Ok((created.id, Outcome::Created))
}

async fn resources(client: &Client, api_id: &str) -> Result<Vec<Resource>, AwsError> {
    let mut pages = client.get_resources().rest_api_id(api_id).embed("methods").limit(500).into_paginator().send();
    let mut resources = Vec::new();
    while let Some(page) = pages.next().await {
        resources.extend(page.op("apigateway:GetResources")?.items().iter().cloned());
    }
    Ok(resources)
}

/// Where the `ANY` method is, and whether it already proxies to `uri`.
#[derive(Debug, Clone)]
pub struct Route {
    /// `None` when planning the resource's creation.
    pub resource_id: Option<String>,
    pub integration_uri: Option<String>,
}

/// Makes `{proxy+}` with an `ANY` method (requiring a key or not). It needs no function,
/// so it runs while the function is made; [`ensure_integration`] connects the two.
pub async fn ensure_route(
    client: &Client,
    api_id: Option<&str>,
    api_key_required: bool,
    mode: Mode,
) -> Result<(Route, Outcome), Error> {
    let Some(api_id) = api_id else {
        return Ok((Route { resource_id: None, integration_uri: None }, Outcome::Created));
    };
    let resources = resources(client, api_id).await?;
    let root =
        resources.iter().find(|resource| resource.path() == Some("/")).and_then(|root| root.id()).unwrap_or_default();
    let proxy = resources.iter().find(|resource| resource.path() == Some(PROXY_PATH));
    let method = proxy.and_then(|proxy| proxy.resource_methods()?.get(METHOD));
    let method_matches = method.is_some_and(|method| {
        method.api_key_required().unwrap_or(false) == api_key_required && method.authorization_type() == Some("NONE")
    });
    // A replaced method loses its integration.
    let integration = method.filter(|_| method_matches).and_then(|method| method.method_integration());
    let integration_uri = integration
        .filter(|integration| {
            integration.r#type() == Some(&IntegrationType::AwsProxy) && integration.http_method() == Some("POST")
        })
        .and_then(|integration| integration.uri().map(str::to_owned));
    let mut route = Route { resource_id: proxy.and_then(|proxy| proxy.id().map(str::to_owned)), integration_uri };
    let outcome = match (proxy, method) {
        (None, _) => Outcome::Created,
        (Some(_), None) => Outcome::Updated { changes: vec![format!("add {METHOD}")] },
        (Some(_), Some(_)) if !method_matches => Outcome::Updated {
            changes: vec![if api_key_required { "require an API key" } else { "stop requiring an API key" }.to_owned()],
        },
        (Some(_), Some(_)) => Outcome::Unchanged,
    };
    if mode == Mode::Plan || outcome == Outcome::Unchanged {
        return Ok((route, outcome));
    }
    let resource_id = match &route.resource_id {
        Some(id) => id.clone(),
        None => {
            let created =
                client.create_resource().rest_api_id(api_id).parent_id(root).path_part("{proxy+}").send().await;
            created.op("apigateway:CreateResource")?.id.unwrap_or_default()
        }
    };
    if method.is_some() {
        // PutMethod does not update a method in place: replace it.
        let deleted =
            client.delete_method().rest_api_id(api_id).resource_id(&resource_id).http_method(METHOD).send().await;
        gone("apigateway:DeleteMethod", deleted, NOT_FOUND)?;
    }
    client
        .put_method()
        .rest_api_id(api_id)
        .resource_id(&resource_id)
        .http_method(METHOD)
        .authorization_type("NONE")
        .api_key_required(api_key_required)
        .send()
        .await
        .op("apigateway:PutMethod")?;
    route.resource_id = Some(resource_id);
    Ok((route, outcome))
}

/// Makes the method a Lambda proxy integration to the function.
pub async fn ensure_integration(
    client: &Client,
    stack: &Stack,
    account: &Account,
    api_id: Option<&str>,
    route: &Route,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let uri = stack.integration_uri(account);
    let outcome = match &route.integration_uri {
        Some(current) if *current == uri => return Ok(((), Outcome::Unchanged)),
        Some(current) => Outcome::Updated { changes: vec![format!("proxy to {uri}, not {current}")] },
        None => Outcome::Created,
    };
    let (Some(api_id), Some(resource_id), Mode::Apply) = (api_id, &route.resource_id, mode) else {
        return Ok(((), outcome));
    };
    client
        .put_integration()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(METHOD)
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(&uri)
        .send()
        .await
        .op("apigateway:PutIntegration")?;
    Ok(((), outcome))
}

/// Whether the API's `{proxy+}` `ANY` method requires an API key; `None` when there is
/// no such method.
pub async fn requires_key(client: &Client, api_id: &str) -> Result<Option<bool>, AwsError> {
    let resources = resources(client, api_id).await?;
    let method = resources
        .iter()
        .filter(|resource| resource.path() == Some(PROXY_PATH))
        .find_map(|resource| resource.resource_methods()?.get(METHOD).cloned());
    Ok(method.map(|method| method.api_key_required().unwrap_or(false)))
}

pub async fn stage_exists(client: &Client, stack: &Stack, api_id: Option<&str>) -> Result<bool, AwsError> {
    let Some(api_id) = api_id else {
        return Ok(false);
    };
    let stage = client.get_stage().rest_api_id(api_id).stage_name(&stack.stage).send().await;
    Ok(found("apigateway:GetStage", stage, NOT_FOUND)?.is_some())
}

/// Deploys to the stage when the routes changed or the stage does not exist yet.
pub async fn ensure_stage(
    client: &Client,
    stack: &Stack,
    api_id: Option<&str>,
    stage_exists: bool,
    routes_changed: bool,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let outcome = match (stage_exists, routes_changed) {
        (false, _) => Outcome::Created,
        (true, true) => Outcome::Updated { changes: vec!["deploy the changed routes".into()] },
        (true, false) => return Ok(((), Outcome::Unchanged)),
    };
    if let (Some(api_id), Mode::Apply) = (api_id, mode) {
        client
            .create_deployment()
            .rest_api_id(api_id)
            .stage_name(&stack.stage)
            .description("counterctl install")
            .send()
            .await
            .op("apigateway:CreateDeployment")?;
    }
    Ok(((), outcome))
}

/// Deletes the API. DeleteRestApi allows about one call per 30 s per account, so
/// throttling is waited out.
pub async fn delete(client: &Client, api_id: &str) -> Result<bool, AwsError> {
    let result = Backoff::ABOUT_TWO_MINUTES
        .retry(
            || client.delete_rest_api().rest_api_id(api_id).send(),
            |error| has_code(error, &["TooManyRequestsException"]),
        )
        .await;
    gone("apigateway:DeleteRestApi", result, NOT_FOUND)
}
