//! `serve --upstream URL`: the counter API answered from ID pools whose blocks are
//! reserved at another counter API (an AWS stack, or another serve), one pool per
//! counter. A store like the local one, to the API's code.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use counter_function::store::{CounterStore, Increment, StoreError};
use counterctl_client::{Auth, Client, Endpoint, Error, PoolError, PoolOptions, PoolStats, Pools, RETRY_AFTER};

use crate::cli::{AwsOptions, UpstreamAuth, UpstreamOptions};

/// Read by `/healthz` upstream: any counter's value shows the upstream answers, and a
/// read changes nothing.
const HEALTH_PROBE: &str = "counterctl-health-probe";
/// `/healthz` asks the upstream at most this often, however often it is polled.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long `/healthz` waits for the upstream's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Upstream {
    pools: Pools,
    /// The last probe: when, and what the upstream said.
    probed: Mutex<Option<(Instant, Reach)>>,
}

/// Whether the upstream answers this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    Reachable,
    /// It answers, and refuses this server's key or signature (403).
    Refused,
    Unreachable,
}

impl Reach {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
        }
    }
}

/// What `/healthz` says.
pub(super) struct Health {
    /// Whether IDs can be handed out: the upstream answers, or a pool holds some.
    pub ok: bool,
    pub reach: Reach,
}

impl Upstream {
    /// The pools of the API at `url`, reached as `options` say.
    pub(super) async fn connect(url: &str, options: &UpstreamOptions) -> anyhow::Result<Self> {
        let key = upstream_key(options)?;
        let auth = match (options.upstream_auth, key) {
            (Some(UpstreamAuth::ApiKey) | None, Some(key)) => Auth::ApiKey(key),
            (Some(UpstreamAuth::ApiKey), None) => anyhow::bail!(
                "--upstream-auth api-key needs the upstream's key\n\
                 hint: pass --upstream-api-key-file PATH or set COUNTERCTL_UPSTREAM_API_KEY"
            ),
            (Some(UpstreamAuth::Iam), _) => {
                let aws =
                    AwsOptions { region: options.region.clone(), profile: options.profile.clone(), endpoint_url: None };
                let signer =
                    crate::call::signer_for(url, &aws).await.context("reading the AWS credentials to sign with")?;
                Auth::Iam(signer)
            }
            (Some(UpstreamAuth::None) | None, _) => Auth::None,
        };
        let endpoint = Endpoint::new(url, auth).context("checking --upstream")?;
        let mut pool_options = PoolOptions::default();
        if let Some(seconds) = options.block_seconds {
            pool_options = pool_options.block_duration(Duration::from_secs(seconds));
        }
        match (options.min_block, options.max_block) {
            (Some(min), Some(max)) if min > max => {
                anyhow::bail!("--min-block {min} is larger than --max-block {max}")
            }
            (min, max) => {
                if let Some(max) = max {
                    pool_options = pool_options.max_block(max);
                }
                if let Some(min) = min {
                    pool_options = pool_options.min_block(min);
                }
            }
        }
        Ok(Self { pools: Pools::new(Client::new(endpoint), pool_options), probed: Mutex::new(None) })
    }

    pub(super) fn url(&self) -> &str {
        self.pools.client().endpoint().url()
    }

    pub(super) fn stats(&self) -> PoolStats {
        self.pools.stats()
    }

    /// Whether the upstream answers (asked at most every [`PROBE_EVERY`]), and whether
    /// IDs can be handed out.
    pub(super) async fn health(&self) -> Health {
        let recent = *self.probed.lock().expect("never poisoned");
        let reach = match recent {
            Some((at, reach)) if at.elapsed() < PROBE_EVERY => reach,
            _ => {
                let reach = self.probe().await;
                *self.probed.lock().expect("never poisoned") = Some((Instant::now(), reach));
                reach
            }
        };
        Health { ok: reach == Reach::Reachable || self.stats().buffered > 0, reach }
    }

    /// Asks the upstream for a counter's value, as a caller would.
    pub(super) async fn probe(&self) -> Reach {
        match tokio::time::timeout(PROBE_TIMEOUT, self.pools.client().value(HEALTH_PROBE)).await {
            Ok(Ok(_)) => Reach::Reachable,
            Ok(Err(error)) if error.code() == Some("counter_not_found") => Reach::Reachable,
            Ok(Err(Error::Forbidden { .. } | Error::SignatureRefused { .. })) => Reach::Refused,
            Ok(Err(_)) | Err(_) => Reach::Unreachable,
        }
    }
}

/// `--upstream-api-key-file`, else `COUNTERCTL_UPSTREAM_API_KEY`.
fn upstream_key(options: &UpstreamOptions) -> anyhow::Result<Option<String>> {
    if let Some(path) = &options.upstream_api_key_file {
        if matches!(options.upstream_auth, Some(UpstreamAuth::None | UpstreamAuth::Iam)) {
            anyhow::bail!("--upstream-api-key-file goes with --upstream-auth api-key, not another");
        }
        return super::key_from_file(path, "the upstream's API key").map(Some);
    }
    Ok(std::env::var("COUNTERCTL_UPSTREAM_API_KEY").ok().filter(|key| !key.is_empty()))
}

impl CounterStore for Upstream {
    async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
        let pool = self.pools.get(request.counter);
        let new_value = match request.idempotency_key {
            // Unchanged, so the key means the same here as at the upstream and at every
            // other sidecar.
            Some(key) => {
                let count = (request.count > 1).then_some(request.count);
                pool.increment_with_key(count, key).await.map(|answer| answer.new_value)
            }
            None if request.count == 1 => pool.next().await,
            None => pool.take(request.count).await.map(|range| *range.end()),
        };
        new_value.map_err(pool_error)
    }

    /// The upstream's value: the highest value reserved, which may be above any value
    /// handed out yet.
    async fn value(&self, counter: &str) -> Result<Option<i64>, StoreError> {
        match self.pools.client().value(counter).await {
            Ok(answer) => Ok(Some(answer.value)),
            Err(error) if error.code() == Some("counter_not_found") => Ok(None),
            Err(error) => Err(refused(error)),
        }
    }
}

fn pool_error(error: PoolError) -> StoreError {
    let retry_after = error.retry_after();
    match error {
        PoolError::Unavailable { reason, .. } => StoreError::Unavailable { reason, retry_after },
        PoolError::Refused(error) => refused(error),
        invalid @ PoolError::InvalidCount => StoreError::Database(invalid.to_string()),
    }
}

/// The upstream's own refusal, answered as it was given; any other failure makes it
/// unavailable.
fn refused(error: Error) -> StoreError {
    match error {
        Error::Service { status, code, description, .. } if error.is_refusal() => {
            StoreError::Refused { status, code, description: Some(description) }
        }
        error => StoreError::Unavailable { reason: error.to_string(), retry_after: RETRY_AFTER },
    }
}
