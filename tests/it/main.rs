//! counterctl's integration tests: one binary, a module per feature. They run against real
//! servers on loopback: moto for AWS (started by scripts/test.sh), the shipped Lambda
//! bootstrap served through a Lambda Runtime API and an API Gateway REST front, and
//! `counterctl serve` as a process of its own.

mod alarms;
mod api;
mod asset;
mod cli_calls;
mod cli_errors;
mod client_crate;
mod cloudformation;
mod concurrency;
mod counters;
mod docs;
mod domain;
mod events;
mod export;
mod front_auth;
mod fronts;
mod function_url;
mod global_tables;
mod iam_auth;
mod idempotency;
mod install;
mod install_faults;
mod lifecycle;
mod logs;
mod metrics;
mod newcomer;
mod operator_policy;
mod regions;
mod serve;
mod serve_history;
mod serve_service;
mod sidecar;
mod storage;
mod support;
mod uninstall;
mod versions;
mod waits;
