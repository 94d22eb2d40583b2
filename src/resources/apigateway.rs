//! What API Gateway's resources of the stack share: the throttle type, the error codes,
//! tagging by path, and patch operations.

use std::collections::HashMap;

use aws_sdk_apigateway::Client;
use aws_sdk_apigateway::types::{Op, PatchOperation};

use crate::aws::{AwsError, Operation};
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
    let arn = format!("arn:{}:apigateway:{region}::{path}", crate::aws::partition_of(&region));
    client.tag_resource().resource_arn(arn).set_tags(Some(tags)).send().await.op("apigateway:TagResource")?;
    Ok(())
}

pub(crate) fn patch(op: Op, path: &str, value: impl Into<String>) -> PatchOperation {
    PatchOperation::builder().op(op).path(path).value(value).build()
}
