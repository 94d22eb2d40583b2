//! The resources of a deployment, one module each: reading a resource's deployed state
//! into plain data, and the calls that change it. What to change is decided by
//! [`crate::plan`], never here.

pub mod api;
pub mod auth;
pub mod function;
pub mod function_url;
pub mod log_group;
pub mod role;
pub mod table;

use crate::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("function {name} is in state {state}: {reason}")]
    FunctionFailed { name: String, state: String, reason: String },
    #[error("{what} did not settle within {seconds} s")]
    Timeout { what: String, seconds: u64 },
}
