//! counterctl's integration tests: one binary, a module per feature. They run against real
//! servers on loopback: moto for AWS (started by scripts/test.sh) and the shipped Lambda
//! bootstrap served through a Lambda Runtime API and an API Gateway REST front.

mod api;
mod asset;
mod concurrency;
mod events;
mod idempotency;
mod storage;
mod support;
