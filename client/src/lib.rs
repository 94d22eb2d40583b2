//! # counterctl-client
//!
//! The client of the counter API that counterctl deploys on AWS
//! (API Gateway or a function URL in front of a Lambda function and a DynamoDB table)
//! or serves on one machine (`counterctl serve`):
//!
//! - [`Client`]: the API's calls, `POST /counter/increment` and `GET /counter/value`,
//!   with an API key or SigV4 ([`Signer`]), retried by one backoff policy, answering
//!   the API's own types. [`Client::with_fallbacks`] calls one API at several
//!   endpoints (the regions of a multi-region stack) and fails over between them.
//! - [`Pool`]: unique IDs of one counter from blocks reserved with one upstream write
//!   each, double-buffered, so that taking an ID is one atomic add and does not wait on
//!   the network. [`Pools`] keeps one per counter. With a [`LedgerFile`] they remember
//!   what they received across restarts.
//!
//! ```no_run
//! use counterctl_client::{Auth, Client, Endpoint, Pool, PoolOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::new("http://127.0.0.1:8080", Auth::None)?;
//! let pool = Pool::new(Client::new(endpoint), "tenants", PoolOptions::default());
//! let tenant_id = pool.next().await?;
//! # Ok(()) }
//! ```
//!
//! ## What a pool promises
//! - A value is never handed out twice: not by one pool, nor across pools and processes.
//! - Values are increasing within one pool. Across pools they only trend upward, because
//!   two pools interleave.
//! - Values a pool still held when its process ended are never handed out: a gap of at
//!   most two blocks per pool per counter.
//! - An upstream answer that cannot be right (another counter, another count, a range
//!   overlapping one already received) is refused, and nothing from it is handed out.
//! - With a [`LedgerFile`] ([`Pools::with_ledger_file`]), the end of every range is on
//!   disk before any of it is handed out, and a process started again refuses every
//!   range at or below it: an upstream that went back (restored from a backup) is
//!   refused instead of handing out its values again.
//!
//! ## Features
//! - `aws-config`: `Signer::from_environment` and `Signer::from_config`, credentials
//!   from the AWS default chain. Without it the crate builds no AWS SDK service crate.

#![warn(missing_docs)]

mod client;
mod cursor;
mod endpoint;
mod error;
mod failover;
mod ledger;
mod ledger_file;
mod pool;
mod signer;

pub use client::{Client, HEALTH_PROBE_COUNTER};
pub use counter_function::api::{CurrentValue, Incremented};
pub use counter_function::validate::MAX_COUNT;
pub use endpoint::{Auth, Endpoint};
pub use error::{Error, causes};
pub use failover::EndpointState;
pub use ledger_file::{LedgerFile, LedgerFileError};
pub use pool::{Pool, PoolError, PoolOptions, PoolStats, Pools, RETRY_AFTER};
pub use signer::{Signer, SigningService};

/// The README's examples, compiled by `cargo test --doc` so that they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
