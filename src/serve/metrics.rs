//! `GET /metrics`: what serve has done, in the OpenMetrics text format Prometheus scrapes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use counter_function::api::{INCREMENT_PATH, VALUE_PATH};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use counterctl_client::EndpointState;

use super::upstream::Upstream;

/// What Prometheus expects the exposition to be labelled with.
pub(super) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One upstream URL of a sidecar: a handful, given at start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// One of a few fixed paths (or `unknown`), never what a client sent.
    route: &'static str,
    status: u16,
}

pub(super) struct Metrics {
    /// Locked only to add the upstream's collector and to encode.
    registry: Mutex<Registry>,
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
            registry: Mutex::new(registry),
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

    /// Adds the upstream's figures (`serve --upstream`): blocks fetched, upstream errors,
    /// answers refused, counters whose upstream went back and IDs buffered, over all counters (a counter's name is never a label).
    pub(super) fn watch_upstream(&self, upstream: Arc<Upstream>) {
        self.registry.lock().expect("never poisoned").register_collector(Box::new(UpstreamFigures(upstream)));
    }

    pub(super) fn exposition(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("never poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

/// The pools' figures, read when scraped.
#[derive(Clone)]
struct UpstreamFigures(Arc<Upstream>);

impl std::fmt::Debug for UpstreamFigures {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UpstreamFigures")
    }
}

impl Collector for UpstreamFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let blocks = ConstCounter::new(stats.blocks_fetched);
        let errors = ConstCounter::new(stats.upstream_errors);
        let refused = ConstCounter::new(stats.answers_refused);
        let went_back = ConstGauge::new(i64::try_from(stats.went_back).unwrap_or(i64::MAX));
        let buffered = ConstGauge::new(i64::try_from(stats.buffered).unwrap_or(i64::MAX));
        let pools = ConstGauge::new(i64::try_from(stats.pools).unwrap_or(i64::MAX));
        let dropped = ConstCounter::new(stats.pools_dropped);
        let figures: [(&str, &str, &dyn EncodeMetric); 7] = [
            ("upstream_blocks_fetched", "Blocks of IDs reserved at the upstream", &blocks),
            ("upstream_errors", "Upstream calls that failed or answered what could not be right", &errors),
            (
                "upstream_answers_refused",
                "Upstream answers refused: not what was asked, overlapping a range received, or at or below what \
                 the sidecar's ledger recorded before it started",
                &refused,
            ),
            (
                "upstream_went_back",
                "Counters whose upstream answered at or below what the sidecar's ledger recorded: it went back",
                &went_back,
            ),
            ("ids_buffered", "IDs held in blocks, ready to hand out", &buffered),
            ("upstream_pools", "Counters with a pool: asked for within --pool-idle-seconds", &pools),
            ("upstream_pools_dropped", "Pools dropped for being unused, with the IDs they held (a gap)", &dropped),
        ];
        for (name, help, figure) in figures {
            figure.encode(encoder.encode_descriptor(name, help, None, figure.metric_type())?)?;
        }
        let endpoints = self.0.endpoint_states();
        type Figure = fn(&EndpointState) -> Box<dyn EncodeMetric>;
        let per_upstream: [(&str, &str, MetricType, Figure); 2] = [
            (
                "upstream_up",
                "Whether calls go to this upstream URL: its last call or check answered",
                MetricType::Gauge,
                |endpoint| Box::new(ConstGauge::new(i64::from(endpoint.up()))),
            ),
            (
                "upstream_moved_away",
                "Calls that failed at this upstream URL and went to the next",
                MetricType::Counter,
                |endpoint| Box::new(ConstCounter::new(endpoint.moved_away)),
            ),
        ];
        for (name, help, kind, figure_of) in per_upstream {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for endpoint in &endpoints {
                figure_of(endpoint).encode(family.encode_family(&UpstreamLabels { url: endpoint.url.clone() })?)?;
            }
        }
        Ok(())
    }
}
