//! What API Gateway's resources of the stack share: the throttle type, the error codes,
//! tagging by path, and patch operations.

use std::collections::HashMap;

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{Op, PatchOperation};

use super::Grant;
use crate::aws::{Account, AwsError, Clients, Operation};
use crate::change::Delete;
use crate::stack::Stack;

pub(crate) const NOT_FOUND: &[&str] = &["NotFoundException"];
pub(crate) const THROTTLED: &[&str] = &["TooManyRequestsException"];

/// Steady rate (requests per second) and burst: of the usage plan, or of the stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throttle {
    pub(crate) rate: f64,
    pub(crate) burst: i32,
}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} req/s, burst {}", self.rate, self.burst)
    }
}

/// The wording of a throttle that may not be set.
pub(crate) fn throttle_wording(throttle: Option<Throttle>) -> String {
    throttle.map_or_else(|| "none".to_owned(), |throttle| throttle.to_string())
}

/// Tags the API Gateway resource at `path` (`/restapis/ID`, `/apikeys/ID`,
/// `/usageplans/ID`) with the stack's tags.
pub(crate) async fn tag(client: &Client, stack: &Stack, path: &str) -> Result<(), AwsError> {
    tag_with(client, path, stack.tags()).await
}

/// Tags the API Gateway resource at `path` with `tags`.
pub(crate) async fn tag_with(client: &Client, path: &str, tags: HashMap<String, String>) -> Result<(), AwsError> {
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    let arn = arn_in(crate::aws::partition_of(&region), &region, path);
    client.tag_resource().resource_arn(arn).set_tags(Some(tags)).send().await.op("apigateway:TagResource")?;
    Ok(())
}

pub(crate) fn patch(op: Op, path: &str, value: impl Into<String>) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).value(value).build()
}

/// An API Gateway resource's ARN: its path, with no account.
fn arn_in(partition: &str, region: &str, path: &str) -> String {
    format!("arn:{partition}:apigateway:{region}::{path}")
}

pub(crate) fn arn(account: &Account, path: &str) -> String {
    arn_in(&account.partition, &account.region, path)
}

/// Reading the resources at `paths`. API Gateway authorizes by method on the resource's
/// path; an API's (key's, usage plan's) id is made when it is created, so the stack's
/// are the region's `/restapis/*`. Every kind's read grants are one statement.
pub(crate) fn read_grants(account: &Account, paths: &[&str]) -> Vec<Grant> {
    vec![Grant::new("ReadTheFront", &["apigateway:GET"], paths.iter().map(|path| arn(account, path)).collect())]
}

/// Reading and changing the resources at `paths`, and tagging them (`/tags/*`): one
/// statement for reads and one for changes, whichever kinds add to them.
pub(crate) fn grants(account: &Account, paths: &[&str]) -> Vec<Grant> {
    let changes = paths.iter().chain(&["/tags/*"]).map(|path| arn(account, path)).collect();
    let mut grants = read_grants(account, paths);
    let actions = &["apigateway:POST", "apigateway:PUT", "apigateway:PATCH", "apigateway:DELETE"];
    grants.push(Grant::new("ChangeTheFront", actions, changes));
    grants
}

/// The deletion target of a part of a REST API (its route, integration, stage), which is
/// never deleted on its own: it goes with its API. No value of it exists.
pub(crate) enum WithItsApi {}

impl Delete for WithItsApi {
    async fn delete(&self, _: &Clients) -> anyhow::Result<Option<String>> {
        match *self {}
    }
}
