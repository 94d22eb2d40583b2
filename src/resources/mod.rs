//! The resources of a deployment, one module each, each with everything about it side
//! by side: its deployed state and how it is read, its typed change and how it is
//! planned (pure), how that change is applied, and how it is deleted.

pub(crate) mod alarms;
pub(crate) mod api;
pub(crate) mod api_key;
pub(crate) mod apigateway;
pub(crate) mod domain;
pub(crate) mod function;
pub(crate) mod function_url;
pub(crate) mod log_group;
pub(crate) mod permission;
pub(crate) mod role;
pub(crate) mod routes;
pub(crate) mod stage;
pub(crate) mod table;
pub(crate) mod topic;
pub(crate) mod usage_plan;

use crate::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("function {name} is in state {state}: {reason}")]
    FunctionFailed { name: String, state: String, reason: String },
    #[error(transparent)]
    Timeout(#[from] crate::retry::TimedOut),
}
