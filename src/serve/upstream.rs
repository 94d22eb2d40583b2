//! `serve --upstream URL`: the counter API answered from ID pools whose blocks are
//! reserved at another counter API (an AWS stack, or another serve), one pool per
//! counter. A store like the local one, to the API's code. Several `--upstream`s are one
//! API's endpoints (the regions of a multi-region stack), which the client fails over
//! between.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use counter_function::store::{CounterStore, Increment, StoreError};
use counterctl_client::{
    Auth, Client, Endpoint, EndpointState, Error, HEALTH_PROBE_COUNTER, LedgerFile, LedgerFileError, PoolError,
    PoolOptions, PoolStats, Pools, RETRY_AFTER,
};
use sha2::{Digest, Sha256};

use crate::aws::Connection;
use crate::cli::{UpstreamAuth, UpstreamOptions};

/// `/healthz` asks the upstream at most this often, however often it is polled.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long `/healthz` waits for the upstream's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The hop marker: every call a sidecar makes upstream carries it, with the sidecar's
/// instance id, and a sidecar refuses to forward a request that carries it. So a
/// sidecar whose upstream is itself, or two pointed at each other, answer
/// [`LOOP_CODE`] at once instead of forwarding a request round and round.
pub(super) const FORWARDED_HEADER: &str = "counterctl-forwarded-by";
/// The refusal of a forwarded request: `508 Loop Detected` (RFC 5842, section 7.2).
pub(super) const LOOP_STATUS: u16 = 508;
pub(super) const LOOP_CODE: &str = "upstream_loop";
/// The answer while the upstream refuses this sidecar's key or signature (403): a bad
/// gateway, the sidecar's own configuration to fix, not an outage to wait out.
const FORBIDDEN_STATUS: u16 = 502;
const FORBIDDEN_CODE: &str = "upstream_refused";

pub(super) struct Upstream {
    pools: Pools,
    /// Random, this process's: sent in [`FORWARDED_HEADER`], so that a request that
    /// comes back here is known as this server's own.
    instance: String,
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
    /// It is a counterctl sidecar, which refuses what another one forwards.
    Sidecar,
    /// It is this server.
    Itself,
}

impl Reach {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::Sidecar => "sidecar",
            Self::Itself => "itself",
        }
    }
}

/// What `/healthz` says.
pub(super) struct Health {
    /// Whether IDs can be handed out: the upstream answers, or a pool holds some, and
    /// no pool refuses an upstream that went back.
    pub ok: bool,
    pub reach: Reach,
    /// Why the upstream's answers are refused, when it went back.
    pub refused: Option<String>,
    /// What calls found at each upstream URL, the preferred first.
    pub endpoints: Vec<EndpointState>,
}

impl Upstream {
    /// The pools of the API at `urls` (the first preferred, the others its fallbacks),
    /// reached as `options` say, with their ledger in `state_dir`.
    pub(super) async fn connect(urls: &[String], options: &UpstreamOptions, state_dir: &Path) -> anyhow::Result<Self> {
        let key = upstream_key(options)?;
        let instance = uuid::Uuid::new_v4().to_string();
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let auth = match (options.upstream_auth, &key) {
                (Some(UpstreamAuth::ApiKey) | None, Some(key)) => Auth::ApiKey(key.clone()),
                (Some(UpstreamAuth::ApiKey), None) => anyhow::bail!(
                    "--upstream-auth api-key needs the upstream's key\n\
                     hint: pass --upstream-api-key-file PATH or set COUNTERCTL_UPSTREAM_API_KEY"
                ),
                (Some(UpstreamAuth::Iam), _) => {
                    let aws = Connection {
                        region: options.region.clone(),
                        profile: options.profile.clone(),
                        endpoint_url: None,
                        skip_region_validation: false,
                    };
                    let signer =
                        crate::call::signer_for(url, &aws).await.context("reading the AWS credentials to sign with")?;
                    Auth::Iam(signer)
                }
                (Some(UpstreamAuth::None) | None, _) => Auth::None,
            };
            let endpoint = Endpoint::new(url, auth)
                .and_then(|endpoint| endpoint.with_header(FORWARDED_HEADER, &instance))
                .context("checking --upstream")?;
            if endpoints.iter().any(|seen: &Endpoint| seen.url() == endpoint.url()) {
                anyhow::bail!("--upstream {url} is given twice: give each region's URL once");
            }
            endpoints.push(endpoint);
        }
        let mut pool_options = PoolOptions::default();
        if let Some(seconds) = options.block_seconds {
            pool_options = pool_options.block_duration(Duration::from_secs(seconds));
        }
        if let Some(seconds) = options.pool_idle_seconds {
            pool_options = pool_options.drop_idle_after(Duration::from_secs(seconds));
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
        let ledger = open_ledger(state_dir, &endpoints)?;
        let mut endpoints = endpoints.into_iter();
        let preferred = endpoints.next().context("--upstream is needed")?;
        let client = match endpoints.len() {
            0 => Client::new(preferred),
            _ => Client::with_fallbacks(preferred, endpoints.collect()),
        };
        let pools = Pools::with_ledger_file(client, pool_options, ledger);
        Ok(Self { pools, instance, probed: Mutex::new(None) })
    }

    /// Where the ranges received are recorded.
    pub(super) fn ledger_path(&self) -> &Path {
        self.pools.ledger_file().expect("a sidecar's pools have a ledger").path()
    }

    /// The refusal of a request another sidecar (or this one, `from` being this
    /// server's instance) forwarded here.
    pub(super) fn refuse_forwarded(&self, from: &[u8]) -> StoreError {
        let description = if from == self.instance.as_bytes() {
            format!(
                "this request came back to the counterctl sidecar that forwarded it (instance {}): its --upstream \
                 is itself; give it the URL of the counter API it should reserve blocks at",
                self.instance
            )
        } else {
            "this server is a counterctl sidecar, and this request was forwarded by another one: a sidecar does \
             not forward what a sidecar forwarded, so two pointed at each other cannot loop; point --upstream at \
             the counter API itself (an AWS stack's URL, or serve --data-dir)"
                .to_owned()
        };
        StoreError::Refused { status: LOOP_STATUS, code: LOOP_CODE.to_owned(), description: Some(description) }
    }

    /// The upstream URLs, the preferred first.
    pub(super) fn urls(&self) -> Vec<String> {
        self.pools.client().endpoints().map(|endpoint| endpoint.url().to_owned()).collect()
    }

    pub(super) fn stats(&self) -> PoolStats {
        self.pools.stats()
    }

    /// What calls found at each upstream URL, the preferred first.
    pub(super) fn endpoint_states(&self) -> Vec<EndpointState> {
        self.pools.client().endpoint_states()
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
        let stats = self.stats();
        let refused = (stats.went_back > 0).then(|| {
            format!(
                "the upstream went back: it answered values at or below what this sidecar had received before it \
                 last stopped (recorded in {}); it was restored from a backup, or replaced by a new one, and its \
                 answers are refused until it is above them",
                self.ledger_path().display()
            )
        });
        let ok = refused.is_none() && (reach == Reach::Reachable || stats.buffered > 0);
        Health { ok, reach, refused, endpoints: self.endpoint_states() }
    }

    /// Asks the upstream for a counter's value, as a caller would (at the first URL
    /// that answers).
    async fn probe(&self) -> Reach {
        self.reach(self.pools.client()).await
    }

    /// Asks each upstream URL on its own.
    pub(super) async fn probe_each(&self) -> Vec<(String, Reach)> {
        let mut reaches = Vec::new();
        for endpoint in self.pools.client().endpoints() {
            reaches.push((endpoint.url().to_owned(), self.reach(&Client::new(endpoint.clone())).await));
        }
        reaches
    }

    async fn reach(&self, client: &Client) -> Reach {
        match tokio::time::timeout(PROBE_TIMEOUT, client.value(HEALTH_PROBE_COUNTER)).await {
            Ok(Ok(_)) => Reach::Reachable,
            Ok(Err(error)) if error.code() == Some("counter_not_found") => Reach::Reachable,
            Ok(Err(Error::Forbidden { .. } | Error::SignatureRefused { .. })) => Reach::Refused,
            // Only this server puts its own instance in the refusal.
            Ok(Err(Error::Service { code, description, .. })) if code == LOOP_CODE => {
                if description.contains(&self.instance) { Reach::Itself } else { Reach::Sidecar }
            }
            Ok(Err(_)) | Err(_) => Reach::Unreachable,
        }
    }
}

/// The ledger of the upstream at `endpoints`: `sidecar/HASH.json` in the state directory,
/// HASH being the URLs', in any order (one API whichever region answers), so that
/// sidecars of different upstreams never share one.
fn open_ledger(state_dir: &Path, endpoints: &[Endpoint]) -> anyhow::Result<LedgerFile> {
    let mut urls: Vec<&str> = endpoints.iter().map(Endpoint::url).collect();
    urls.sort_unstable();
    let url = urls.join(" ");
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    let path = state_dir.join("sidecar").join(format!("{name}.json"));
    let holder = format!("counterctl serve --upstream {url}");
    match LedgerFile::open(&path, &holder) {
        Ok(ledger) => Ok(ledger),
        Err(LedgerFileError::InUse { path, holder }) => anyhow::bail!(
            "another sidecar of {url} keeps its ledger in {} ({holder}): two on one ledger could not tell what the \
             other handed out\n\
             hint: give this one a state directory of its own with --state-dir DIR (or COUNTERCTL_STATE_DIR)",
            path.display()
        ),
        Err(error @ LedgerFileError::Unreadable { .. }) => Err(anyhow::anyhow!(error)).context(
            "reading the sidecar's ledger, the values it received from the upstream before; remove the file only \
             if the upstream cannot have gone back (been restored from a backup) since this sidecar last ran",
        ),
        Err(error) => Err(anyhow::anyhow!(error)).context("opening the sidecar's ledger"),
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
        PoolError::Forbidden { reason, .. } => forbidden(&reason),
        invalid @ PoolError::InvalidCount => StoreError::Database(invalid.to_string()),
    }
}

/// The upstream's own refusal (a loop included), answered as it was given; its refusal of
/// this sidecar's key or signature, as `502 upstream_refused`; any other failure makes it
/// unavailable.
fn refused(error: Error) -> StoreError {
    match error {
        Error::Service { status, code, description, .. } if error.is_refusal() => {
            StoreError::Refused { status, code, description: Some(description) }
        }
        Error::Forbidden { .. } | Error::SignatureRefused { .. } => forbidden(&error.to_string()),
        error => StoreError::Unavailable { reason: error.to_string(), retry_after: RETRY_AFTER },
    }
}

/// The answer while the upstream refuses this sidecar's key or signature.
fn forbidden(reason: &str) -> StoreError {
    StoreError::Refused {
        status: FORBIDDEN_STATUS,
        code: FORBIDDEN_CODE.to_owned(),
        description: Some(format!(
            "the upstream refuses this sidecar's key or signature: {reason}; check the sidecar's --upstream-auth \
             and --upstream-api-key-file (or COUNTERCTL_UPSTREAM_API_KEY)"
        )),
    }
}
