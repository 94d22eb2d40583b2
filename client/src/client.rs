//! The counter API's calls at one endpoint, or at several that fail over, retried by the
//! project's one policy.

use std::sync::Arc;
use std::time::Duration;

use counter_function::api::{
    API_KEY_HEADER, ApiError, CurrentValue, ErrorBody, IDEMPOTENCY_KEY_HEADER, INCREMENT_PATH, Incremented, VALUE_PATH,
};
use counter_function::retry::{Backoff, Retry};
use serde::de::DeserializeOwned;

use crate::endpoint::{Auth, Endpoint};
use crate::error::{Error, causes};
use crate::failover::{EndpointState, Endpoints};

/// API Gateway gives up on an integration after 29 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// With several endpoints, how long one attempt may take before it goes to the next
/// (with the same `Idempotency-Key`): an increment takes milliseconds, a cold start
/// hundreds, and a region that stops answering must not hold a block fetch for long.
const FAILOVER_ATTEMPT: Duration = Duration::from_secs(1);
/// The counter an endpoint that is down is asked the value of, to learn whether it
/// answers again; a read changes nothing, and `404 counter_not_found` is an answer.
pub const HEALTH_PROBE_COUNTER: &str = "counterctl-health-probe";

/// How a call is retried: connection errors, throttling and server errors usually pass
/// within a second or two.
pub(crate) const CALL: Backoff =
    Backoff::new(Duration::from_millis(200), Duration::from_secs(2), Duration::from_secs(5));

/// A client of the counter API, at one endpoint or at several that fail over. Cheap to
/// clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Endpoints,
    http: reqwest::Client,
}

impl Client {
    /// A client of the API at `endpoint`, with a 30 s timeout per request (API
    /// Gateway's own integration limit is 29 s).
    pub fn new(endpoint: Endpoint) -> Self {
        Self::with_http(endpoint, default_http())
    }

    /// A client that sends through `http` (its timeouts, proxy and TLS settings).
    pub fn with_http(endpoint: Endpoint, http: reqwest::Client) -> Self {
        Self { inner: Arc::new(Inner { endpoints: Endpoints::new(vec![endpoint]), http }) }
    }

    /// A client of one counter API at several endpoints, such as the regions of a
    /// multi-region stack, all on one table: each call goes to `preferred` while it is
    /// up, else to the first of `fallbacks` that is.
    ///
    /// A call that gets no answer (a connection error, or no answer within 1 s) or a
    /// server error (5xx) at one endpoint is sent at once to the next, with the same
    /// `Idempotency-Key`, so a request that had in fact been applied there is answered
    /// with its first values. An endpoint that failed is asked again about every second,
    /// in the background while calls are made, and preferred again once it answers.
    pub fn with_fallbacks(preferred: Endpoint, fallbacks: Vec<Endpoint>) -> Self {
        let endpoints = std::iter::once(preferred).chain(fallbacks).collect();
        Self { inner: Arc::new(Inner { endpoints: Endpoints::new(endpoints), http: default_http() }) }
    }

    /// Where it calls: the preferred endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        self.inner.endpoints.endpoint(0)
    }

    /// Every endpoint, the preferred first.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.inner.endpoints.iter()
    }

    /// What the calls found at each endpoint, the preferred first.
    pub fn endpoint_states(&self) -> Vec<EndpointState> {
        self.inner.endpoints.states()
    }

    /// `POST /counter/increment`: reserves `count` consecutive values (one when `None`)
    /// and answers the last, and with `count` the first. Retries reuse
    /// `idempotency_key`, so a retried request that had in fact succeeded answers its
    /// first values instead of taking others.
    ///
    /// Retried on connection errors, throttling and server errors for about 5 s, and on
    /// `409 idempotency_key_in_progress` after its `Retry-After`.
    pub async fn increment(
        &self,
        counter: &str,
        count: Option<u32>,
        idempotency_key: &str,
    ) -> Result<Incremented<'static>, Error> {
        CALL.retry_as(|| self.increment_once(counter, count, idempotency_key), Error::retry).await
    }

    /// `GET /counter/value`: the counter's current value, the highest value it has
    /// reserved. `404 counter_not_found` when it was never incremented.
    pub async fn value(&self, counter: &str) -> Result<CurrentValue<'static>, Error> {
        let query = [("counter", counter)];
        CALL.retry_as(|| self.call(reqwest::Method::GET, VALUE_PATH, &query, None), Error::retry).await
    }

    /// One attempt of [`increment`](Self::increment), not retried.
    pub(crate) async fn increment_once(
        &self,
        counter: &str,
        count: Option<u32>,
        idempotency_key: &str,
    ) -> Result<Incremented<'static>, Error> {
        let count = count.map(|count| count.to_string());
        let mut query = vec![("counter", counter)];
        if let Some(count) = &count {
            query.push(("count", count));
        }
        self.call(reqwest::Method::POST, INCREMENT_PATH, &query, Some(idempotency_key)).await
    }

    /// One attempt: at the first endpoint up, then, while it fails with no answer or a
    /// server error, at the next.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let endpoints = &self.inner.endpoints;
        if endpoints.len() == 1 {
            return self.inner.call_at(0, method, path, query, idempotency_key).await;
        }
        for index in endpoints.due_checks(std::time::Instant::now()) {
            tokio::spawn(check(Arc::clone(&self.inner), index));
        }
        let order = endpoints.order();
        let mut last = None;
        for (tried, &index) in order.iter().enumerate() {
            match self.inner.call_at(index, method.clone(), path, query, idempotency_key).await {
                Err(error) if error.moves_on() => {
                    let moved = tried + 1 < order.len();
                    if moved {
                        tracing::warn!(url = endpoints.endpoint(index).url(), %error, "moving on to the next endpoint");
                    }
                    endpoints.failed(index, &error, moved);
                    last = Some(error);
                }
                outcome => {
                    endpoints.answered(index);
                    return outcome;
                }
            }
        }
        Err(last.expect("a client has an endpoint"))
    }
}

fn default_http() -> reqwest::Client {
    reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("a TLS backend")
}

/// Asks the endpoint `index`, which is down, whether it answers again.
async fn check(inner: Arc<Inner>, index: usize) {
    let query = [("counter", HEALTH_PROBE_COUNTER)];
    match inner.call_at::<CurrentValue<'static>>(index, reqwest::Method::GET, VALUE_PATH, &query, None).await {
        Err(error) if error.moves_on() => inner.endpoints.failed(index, &error, false),
        _ => inner.endpoints.answered(index),
    }
}

impl Inner {
    /// One attempt at the endpoint `index`.
    async fn call_at<T: DeserializeOwned>(
        &self,
        index: usize,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let endpoint = self.endpoints.endpoint(index);
        let url = format!("{}{path}", endpoint.url());
        // Percent-encoded by hand: a space as %20 and `+` as %2B, never `+` for a space
        // (which form encoding writes), so a signature means one thing to the signer and
        // to AWS.
        let encoded: Vec<String> =
            query.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect();
        let target = if encoded.is_empty() { url.clone() } else { format!("{url}?{}", encoded.join("&")) };
        // Before signing: a signature covers every header sent.
        let mut request = self.http.request(method, &target).headers(endpoint.headers().clone());
        if self.endpoints.len() > 1 {
            request = request.timeout(FAILOVER_ATTEMPT);
        }
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Auth::ApiKey(key) = endpoint.auth() {
            request = request.header(API_KEY_HEADER, key);
        }
        let mut request =
            request.build().map_err(|error| Error::InvalidUrl { url: target, reason: error.to_string() })?;
        // Signed anew for each attempt: a signature carries its time.
        let signer = match endpoint.auth() {
            Auth::Iam(signer) => Some((signer, signer.sign(&mut request).await?)),
            _ => None,
        };
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(error) => return Err(Error::Unreachable { url, reason: causes(&error) }),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => return Err(Error::Unreachable { url, reason: causes(&error) }),
        };
        match (interpret(&url, status, &body, retry_after), signer) {
            (Err(Error::Forbidden { status, message }), Some((signer, access_key))) => {
                Err(Error::SignatureRefused { status, message, access_key, action: signer.service().invoke_action() })
            }
            (outcome, _) => outcome,
        }
    }
}

/// RFC 3986 unreserved characters stay, everything else is percent-encoded.
fn encode(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

impl Error {
    /// Whether and when a failed call is made again.
    pub(crate) fn retry(&self) -> Retry {
        match self {
            Self::Unreachable { .. } => Retry::Backoff,
            // A 409 that asks to come back after its `Retry-After`.
            Self::Service { code, retry_after, .. } if code == ApiError::IdempotencyKeyInProgress.code() => {
                retry_after.map_or(Retry::Backoff, Retry::After)
            }
            // A loop answers the same however often it is asked.
            Self::Service { status: 508, .. } => Retry::No,
            Self::Service { status, retry_after, .. } if *status == 429 || *status >= 500 => {
                retry_after.map_or(Retry::Backoff, Retry::After)
            }
            Self::Unexpected { status, .. } if *status == 429 || *status >= 500 => Retry::Backoff,
            Self::Service { .. }
            | Self::Unexpected { .. }
            | Self::Forbidden { .. }
            | Self::SignatureRefused { .. }
            | Self::Signing(_)
            | Self::Credentials(_)
            | Self::InvalidUrl { .. }
            | Self::InvalidHeader { .. } => Retry::No,
        }
    }
}

/// The answer as the API's own types: the body on 200, the `error_code` otherwise, API
/// Gateway's own `{"message": …}` on a refused 403.
fn interpret<T: DeserializeOwned>(
    url: &str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<T, Error> {
    let unexpected = || Error::Unexpected { url: url.to_owned(), status, body: body.chars().take(200).collect() };
    if status == 200 {
        return serde_json::from_str(body).map_err(|_| unexpected());
    }
    if let Ok(error) = serde_json::from_str::<ErrorBody<'_>>(body) {
        return Err(Error::Service {
            status,
            code: error.error_code.into_owned(),
            description: error.error_description.unwrap_or_else(|| "no description".to_owned()),
            retry_after,
        });
    }
    // API Gateway says `message`, a Function URL `Message`.
    #[derive(serde::Deserialize)]
    struct GatewayMessage {
        #[serde(alias = "Message")]
        message: String,
    }
    match serde_json::from_str::<GatewayMessage>(body) {
        Ok(gateway) if status == 403 => Err(Error::Forbidden { status, message: gateway.message }),
        _ => Err(unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_errors_throttling_server_errors_and_keys_in_progress_are_retried() {
        let url = "http://127.0.0.1:8080/counter/increment";
        let answer = |status, body: &str, after| interpret::<CurrentValue<'static>>(url, status, body, after);
        let retry_of = |status, body: &str| answer(status, body, None).unwrap_err().retry();
        assert_eq!(retry_of(429, r#"{"error_code":"throttled","error_description":"retry"}"#), Retry::Backoff);
        assert_eq!(retry_of(500, r#"{"error_code":"error_incrementing_probably_database_error"}"#), Retry::Backoff);
        assert_eq!(retry_of(502, r#"{"message":"Internal server error"}"#), Retry::Backoff);
        assert_eq!(Error::Unreachable { url: url.into(), reason: "refused".into() }.retry(), Retry::Backoff);
        assert_eq!(retry_of(400, r#"{"error_code":"invalid_count","error_description":"no"}"#), Retry::No);
        assert_eq!(retry_of(403, r#"{"message":"Forbidden"}"#), Retry::No);
        assert_eq!(retry_of(409, r#"{"error_code":"idempotency_key_reused"}"#), Retry::No);
        assert_eq!(retry_of(508, r#"{"error_code":"upstream_loop","error_description":"loop"}"#), Retry::No);
        let in_progress = r#"{"error_code":"idempotency_key_in_progress","error_description":"wait"}"#;
        let after = Some(Duration::from_secs(1));
        assert_eq!(answer(409, in_progress, after).unwrap_err().retry(), Retry::After(Duration::from_secs(1)));
        assert_eq!(answer(200, r#"{"counter":"a","value":3}"#, None).unwrap().value, 3);
        assert!(matches!(answer(200, r#"{"counter":"a"}"#, None), Err(Error::Unexpected { .. })));
    }

    #[test]
    fn an_endpoint_needs_a_scheme_and_a_host() {
        for bad in ["127.0.0.1:8080", "localhost", "ftp://host/x", "http://"] {
            assert!(matches!(Endpoint::new(bad, Auth::None), Err(Error::InvalidUrl { .. })), "{bad}");
        }
        let endpoint = Endpoint::new("https://abc.execute-api.eu-west-1.amazonaws.com/prod/", Auth::None).unwrap();
        assert_eq!(endpoint.url(), "https://abc.execute-api.eu-west-1.amazonaws.com/prod");
    }

    #[test]
    fn query_values_are_percent_encoded_for_signing() {
        assert_eq!(encode("a b+c/é"), "a%20b%2Bc%2F%C3%A9");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
    }
}
