//! `GET /metrics`: what serve has done, in the OpenMetrics text format Prometheus scrapes.

use std::time::Duration;

use counter_function::api::{INCREMENT_PATH, VALUE_PATH};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What Prometheus expects the exposition to be labelled with.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// One of a few fixed paths (or `unknown`), never what a client sent.
    route: &'static str,
    status: u16,
}

pub(super) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The two answers nearly every request gets, looked up once.
    increments: Counter,
    values: Counter,
    commits: Counter,
    commit_failures: Counter,
    batch_size: Histogram,
    commit_seconds: Histogram,
    pub open_connections: Gauge,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("counterctl");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route and status", requests.clone());
        let commits = Counter::default();
        registry.register("commits", "Transactions committed (one fsync each when they wrote)", commits.clone());
        let commit_failures = Counter::default();
        registry.register(
            "commit_failures",
            "Transactions that failed; their requests got errors",
            commit_failures.clone(),
        );
        // 1 to 1,024: a batch holds at most 1,024 requests.
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register("commit_batch_size", "Requests applied per commit", batch_size.clone());
        // 100 µs to about 3 s.
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register("commit_seconds", "Time to apply and commit a batch, fsync included", commit_seconds.clone());
        let open_connections = Gauge::default();
        registry.register("open_connections", "HTTP connections open", open_connections.clone());
        let answered = |route| requests.get_or_create(&RequestLabels { route, status: 200 }).clone();
        let (increments, values) = (answered(INCREMENT_PATH), answered(VALUE_PATH));
        Self {
            registry,
            requests,
            increments,
            values,
            commits,
            commit_failures,
            batch_size,
            commit_seconds,
            open_connections,
        }
    }

    pub(super) fn answered(&self, route: &'static str, status: u16) {
        match (route, status) {
            (INCREMENT_PATH, 200) => self.increments.inc(),
            (VALUE_PATH, 200) => self.values.inc(),
            _ => self.requests.get_or_create(&RequestLabels { route, status }).inc(),
        };
    }

    pub(super) fn committed(&self, batch_size: usize, took: Duration, succeeded: bool) {
        if !succeeded {
            self.commit_failures.inc();
            return;
        }
        self.commits.inc();
        self.batch_size.observe(batch_size as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub(super) fn exposition(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
