//! The resources of a deployment, one module each. Every `ensure` is
//! get-or-create-or-update: it reads first and writes only what differs, so a re-run
//! converges; in [`Mode::Plan`] it only reads and says what it would do.

pub mod api;
pub mod auth;
pub mod function;
pub mod role;
pub mod table;

use crate::aws::AwsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// Read calls only (`--dry-run`, `status`).
    Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "table {table} exists with key schema {found}, not the counter layout (key `id`, type S)\n\
         hint: pass --table NAME to use another table; counterctl changes nothing in this one"
    )]
    TableKeySchema { table: String, found: String },
    #[error("function {name} is in state {state}: {reason}")]
    FunctionFailed { name: String, state: String, reason: String },
    #[error("{what} did not settle within {seconds} s")]
    Timeout { what: String, seconds: u64 },
}
