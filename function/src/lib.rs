//! The AtomicCounter service: the HTTP API that hands out sequential unique IDs, the
//! storage behind it, and the adapter that serves it from AWS Lambda.
//!
//! The API (`api`) knows nothing of Lambda or DynamoDB: it routes and validates an HTTP
//! request and talks to a [`store::CounterStore`]. `dynamo` is the store the Lambda
//! function uses; `lambda` turns Lambda events into API requests and back.

pub mod api;
#[cfg(feature = "lambda")]
pub mod dynamo;
#[cfg(feature = "lambda")]
pub mod lambda;
#[cfg(feature = "lambda")]
pub mod logging;
pub mod retry;
pub mod store;
pub mod validate;
