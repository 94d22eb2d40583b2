//! The API's one route: `{proxy+}` with its `ANY` method (the auth callers need) and the
//! Lambda proxy integration behind it.

use anyhow::Context;
use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{IntegrationType, Resource as ApiResource};

use super::apigateway::NOT_FOUND;
use crate::aws::{AwsError, Operation, gone, has_code};
use crate::change::{Action, Changes, Diff, Field, Planned, Resource, diff};
use crate::settings::Auth;
use crate::stack::PROXY_PATH;

pub(crate) const METHOD: &str = "ANY";
/// Method authorization for callers signing with SigV4.
pub(crate) const AWS_IAM: &str = "AWS_IAM";
/// Method authorization for everyone else (with or without an API key).
pub(crate) const NO_AUTHORIZATION: &str = "NONE";

/// The `ANY` method of `{proxy+}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MethodState {
    pub(crate) authorization: String,
    pub(crate) key_required: bool,
    /// The AWS_PROXY POST integration's URI; `None` when there is no such integration.
    pub(crate) integration_uri: Option<String>,
}

impl MethodState {
    /// The auth callers of this method need.
    pub(crate) fn auth(&self) -> Auth {
        match (self.authorization.as_str(), self.key_required) {
            (AWS_IAM, _) => Auth::Iam,
            (_, true) => Auth::ApiKey,
            (_, false) => Auth::None,
        }
    }
}

/// The method's (or a function URL's) authorization type for `auth`.
pub(crate) fn method_authorization(auth: Auth) -> &'static str {
    if auth == Auth::Iam { AWS_IAM } else { NO_AUTHORIZATION }
}

pub(crate) fn auth_wording(auth: Auth) -> &'static str {
    match auth {
        Auth::ApiKey => "API key required",
        Auth::Iam => "AWS_IAM (SigV4)",
        Auth::None => "no auth",
    }
}

/// The method put again with the wanted auth.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteChange {
    pub(crate) method: Diff,
}

impl Changes for RouteChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.method.clone()]
    }
}

/// The integration pointed at this function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntegrationChange {
    pub(crate) uri: Diff,
}

impl Changes for IntegrationChange {
    fn diffs(&self) -> Vec<Diff> {
        vec![self.uri.clone()]
    }
}

/// The route of an API as read: `{proxy+}`'s id and its method.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteRead<'a> {
    pub(crate) proxy_id: Option<&'a str>,
    pub(crate) method: Option<&'a MethodState>,
}

/// The route and the integration of the API kept (`None`: a new API).
pub(crate) fn plan(
    api: Option<RouteRead<'_>>,
    auth: Auth,
    deployed_auth: Option<Auth>,
    integration_uri: &str,
    stack_name: &str,
) -> (Planned<RouteChange>, Planned<IntegrationChange>) {
    let method = api.and_then(|api| api.method);
    let wanted = (method_authorization(auth), auth == Auth::ApiKey);
    let route = match (api, method) {
        (None, _) => Action::Create,
        (Some(api), _) if api.proxy_id.is_none() => Action::Create,
        (Some(_), None) => Action::Update(RouteChange { method: diff(Field::Method, "none", auth_wording(auth)) }),
        (Some(_), Some(method)) if (method.authorization.as_str(), method.key_required) != wanted => {
            let deployed = deployed_auth.map_or("other", auth_wording);
            Action::Update(RouteChange { method: diff(Field::Method, deployed, auth_wording(auth)) })
        }
        (Some(_), Some(_)) => Action::Keep,
    };
    let route_replaced = route.changes();
    let integration = match method.and_then(|method| method.integration_uri.as_deref()) {
        _ if route_replaced => Action::Create,
        None => Action::Create,
        Some(uri) if uri == integration_uri => Action::Keep,
        Some(uri) => Action::Update(IntegrationChange { uri: diff(Field::Integration, uri, integration_uri) }),
    };
    let auth_changes = deployed_auth.is_some_and(|deployed| deployed != auth);
    (
        Planned::new(Resource::Route, PROXY_PATH, route).breaking_if(auth_changes),
        Planned::new(Resource::Integration, stack_name, integration),
    )
}

/// Makes `{proxy+}` if needed and puts its method with `auth`; returns the route's id.
pub(crate) async fn apply_route(
    client: &Client,
    (api_id, root_id): (&str, &str),
    route: RouteRead<'_>,
    planned: &Planned<RouteChange>,
    auth: Auth,
) -> anyhow::Result<String> {
    let resource_id = match route.proxy_id {
        Some(id) => id.to_owned(),
        None => create_proxy(client, api_id, root_id).await.context("creating {proxy+}")?,
    };
    // Created, or its method replaced: `RouteChange` is that one call.
    if planned.changes() {
        let put = put_method(
            client,
            api_id,
            &resource_id,
            route.method.is_some(),
            (method_authorization(auth), auth == Auth::ApiKey),
        );
        put.await.context("putting the ANY method")?;
    }
    Ok(resource_id)
}

pub(crate) async fn apply_integration(
    client: &Client,
    (api_id, resource_id): (&str, &str),
    planned: &Planned<IntegrationChange>,
    uri: &str,
) -> anyhow::Result<()> {
    // Created, or `IntegrationChange`'s one call.
    if planned.changes() {
        put_integration(client, api_id, resource_id, uri).await.context("connecting the method to the function")?;
    }
    Ok(())
}

/// Makes `{proxy+}` under the root; an existing one (a concurrent install made it) is
/// used.
async fn create_proxy(client: &Client, api_id: &str, root_id: &str) -> Result<String, AwsError> {
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
async fn put_method(
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

async fn put_integration(client: &Client, api_id: &str, resource_id: &str, uri: &str) -> Result<(), AwsError> {
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

/// Every resource (path) of the API, with its methods.
pub(crate) async fn resources(client: &Client, api_id: &str) -> Result<Vec<ApiResource>, AwsError> {
    let mut pages = client.get_resources().rest_api_id(api_id).embed("methods").limit(500).into_paginator().send();
    let mut resources = Vec::new();
    while let Some(page) = pages.next().await {
        resources.extend(page.op("apigateway:GetResources")?.items().iter().cloned());
    }
    Ok(resources)
}

/// The route's contract: it goes with its API.
pub(crate) struct RouteContract;

impl crate::resources::Contract for RouteContract {
    const KIND: crate::change::Resource = crate::change::Resource::Route;
    type State = MethodState;
    type Change = RouteChange;
    type Target = super::apigateway::WithItsApi;

    /// Authorized as paths under its API (`/restapis/*`), by the API's own grants.
    fn grants(_: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        Vec::new()
    }
}

/// The integration's contract: read with its method, it goes with its API.
pub(crate) struct IntegrationContract;

impl crate::resources::Contract for IntegrationContract {
    const KIND: crate::change::Resource = crate::change::Resource::Integration;
    type State = MethodState;
    type Change = IntegrationChange;
    type Target = super::apigateway::WithItsApi;

    /// Authorized as paths under its API (`/restapis/*`), by the API's own grants.
    fn grants(_: &crate::resources::Scope<'_>) -> Vec<crate::resources::Grant> {
        Vec::new()
    }
}
