//! `counterctl increment` and `get`: calls to a deployed counter API (or to
//! `counterctl serve`), with the URL and API key found from the stack when not given.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use counter_function::api::{ApiError, CurrentValue, ErrorBody, INCREMENT_PATH, Incremented, VALUE_PATH};
use serde::de::DeserializeOwned;

use crate::aws::Clients;
use crate::cli::{Auth, AwsOptions, EndpointOptions, GetArgs, IncrementArgs, OutputFormat, StackOptions};
use crate::progress::out;
use crate::resources::api::{self, choose_api};
use crate::resources::api_key::{self, choose_key};
use crate::resources::routes::AWS_IAM;
use crate::resources::stage::deployed_stage;
use crate::resources::usage_plan::{self, choose_usage_plan};
use crate::retry::{self, Retry};

/// API Gateway gives up on an integration after 29 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the counter API is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL; the API's paths (`/counter/...`) go below it.
    pub url: String,
    pub credential: Credential,
}

/// What a call carries to be let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    /// Sent as `x-api-key`.
    ApiKey(String),
    /// A SigV4 signature for `service` in `region`, made with these credentials.
    Iam {
        region: String,
        service: &'static str,
        credentials: aws_credential_types::Credentials,
    },
}

impl Credential {
    /// The key, if calls send one.
    pub fn api_key(&self) -> Option<&str> {
        match self {
            Self::ApiKey(key) => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "could not reach {url}: {reason}\n\
         hint: check --url / COUNTERCTL_URL (for `counterctl serve`, is it running?)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the counter API answered {status} {code}: {description}")]
    Service { status: u16, code: String, description: String, retry_after: Option<Duration> },
    #[error(
        "API Gateway answered {status}: {message}\n\
         hint: this API needs its key: pass --api-key or set COUNTERCTL_API_KEY \
         (`counterctl status --show-api-key` prints it), or omit --url to have it fetched; \
         a stack with --auth iam (or a function URL) takes a signature instead: pass --auth iam"
    )]
    Forbidden { status: u16, message: String },
    #[error(
        "{status} for a signed call: {message}\n\
         hint: the caller's IAM identity ({access_key}) may lack {action} on this API \
         (`counterctl status --caller-policy` prints the policy it needs), or its credentials are wrong or expired"
    )]
    SignatureRefused { status: u16, message: String, access_key: String, action: &'static str },
    #[error("signing the request: {0}")]
    Signing(String),
    #[error("{url} answered {status} with an unexpected body: {body}")]
    Unexpected { url: String, status: u16, body: String },
    #[error(
        "no API named {name} in {region}\n\
         hint: run `counterctl install` (with the same --name and --region), or pass --url / COUNTERCTL_URL"
    )]
    NoApi { name: String, region: String },
}

/// The endpoint from the options, else the stack's invoke URL and key from AWS.
pub async fn endpoint(options: &EndpointOptions, aws: &AwsOptions, stack: &StackOptions) -> anyhow::Result<Endpoint> {
    if let Some(url) = &options.url {
        let credential = match (options.auth, &options.api_key) {
            (Some(Auth::Iam), _) => iam_credential(url, aws).await?,
            (Some(Auth::ApiKey) | None, Some(key)) => Credential::ApiKey(key.clone()),
            (Some(Auth::ApiKey), None) => {
                anyhow::bail!("--auth api-key needs the key\nhint: pass --api-key or set COUNTERCTL_API_KEY")
            }
            (Some(Auth::None) | None, _) => Credential::None,
        };
        return Ok(Endpoint { url: url.clone(), credential });
    }
    let clients = Clients::connect(aws).await?;
    let mut endpoint = discover(&clients, stack).await?;
    if let Some(key) = &options.api_key {
        endpoint.credential = Credential::ApiKey(key.clone());
    }
    Ok(endpoint)
}

/// SigV4 for a URL given by hand: `lambda` for a Function URL, else `execute-api`; the
/// region from the host (`ID.execute-api.REGION.amazonaws.com`,
/// `ID.lambda-url.REGION.on.aws`), else from the AWS options.
async fn iam_credential(url: &str, aws: &AwsOptions) -> anyhow::Result<Credential> {
    let host = reqwest::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    let host = host.host_str().unwrap_or_default().to_owned();
    let labels: Vec<&str> = host.split('.').collect();
    let (service, host_region) = match labels.as_slice() {
        [_, "lambda-url", region, "on", "aws"] => ("lambda", Some(*region)),
        [_, "execute-api", region, ..] => ("execute-api", Some(*region)),
        _ => ("execute-api", None),
    };
    let mut aws = aws.clone();
    if let Some(region) = host_region {
        aws.region = Some(region.to_owned());
    }
    let config = crate::aws::load_config(&aws).await?;
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    Ok(Credential::Iam { region, service, credentials: caller_credentials(&config).await? })
}

async fn caller_credentials(config: &aws_config::SdkConfig) -> anyhow::Result<aws_credential_types::Credentials> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = config.credentials_provider().context("no AWS credentials provider")?;
    provider.provide_credentials().await.context("reading the caller's AWS credentials to sign with")
}

/// The stack's invoke URL (the stage asked for, else the one counterctl deployed), and
/// how its method lets callers in: its API key, or a SigV4 signature.
pub async fn discover(clients: &Clients, stack: &StackOptions) -> anyhow::Result<Endpoint> {
    let client = &clients.apigateway;
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    // A caller that may not read the function's URL config uses the REST front.
    let url = match crate::resources::function_url::read(&clients.lambda, &stack.name).await {
        Err(error) if error.code.as_deref().is_some_and(|code| code.starts_with("AccessDenied")) => None,
        url => url.context("looking for the function's URL")?,
    };
    if let Some(url) = url {
        let credential = match url.auth_type.as_str() {
            AWS_IAM => {
                Credential::Iam { region, service: "lambda", credentials: caller_credentials(&clients.config).await? }
            }
            _ => Credential::None,
        };
        return Ok(Endpoint { url: url.url.trim_end_matches('/').to_owned(), credential });
    }
    let (apis, usage_plans) =
        tokio::try_join!(async { api::list(client, &stack.name).await.context("looking for the API") }, async {
            usage_plan::read(client, &stack.name).await.context("looking for the usage plan")
        },)?;
    let Some(chosen) = choose_api(&apis, &usage_plans) else {
        return Err(CallError::NoApi { name: stack.name.clone(), region }.into());
    };
    let detail = api::detail(client, &chosen.id).await.context("reading the API's routes")?;
    let stage = stack.stage.clone().unwrap_or_else(|| deployed_stage(&detail.stages));
    let credential = match detail.method {
        Some(method) if method.authorization == AWS_IAM => Credential::Iam {
            region: region.clone(),
            service: "execute-api",
            credentials: caller_credentials(&clients.config).await?,
        },
        Some(method) if method.key_required => {
            let keys = api_key::read(client, &stack.name).await.context("looking for the API key")?;
            let usage_plan = choose_usage_plan(&usage_plans, Some(&chosen.id));
            let key = match choose_key(&keys, usage_plan.map_or(&[], |plan| &plan.key_ids)) {
                Some(key) => api_key::key_value(client, &key.id).await.context("reading the API key")?,
                None => None,
            };
            key.map_or(Credential::None, Credential::ApiKey)
        }
        _ => Credential::None,
    };
    Ok(Endpoint { url: crate::stack::invoke_url(&region, &chosen.id, &stage), credential })
}

/// The counter API at one endpoint.
pub struct CounterApi {
    endpoint: Endpoint,
    http: reqwest::Client,
}

impl CounterApi {
    pub fn new(endpoint: Endpoint) -> Self {
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("a TLS backend");
        Self { endpoint, http }
    }

    /// `POST /counter/increment`; retries reuse `idempotency_key`, so a retried request
    /// that had in fact succeeded answers its first value instead of taking another.
    pub async fn increment(
        &self,
        counter: &str,
        count: Option<u32>,
        idempotency_key: &str,
    ) -> Result<Incremented<'static>, CallError> {
        let mut query = vec![("counter", counter.to_owned())];
        if let Some(count) = count {
            query.push(("count", count.to_string()));
        }
        self.call(reqwest::Method::POST, INCREMENT_PATH, &query, Some(idempotency_key)).await
    }

    /// `GET /counter/value`.
    pub async fn value(&self, counter: &str) -> Result<CurrentValue<'static>, CallError> {
        self.call(reqwest::Method::GET, VALUE_PATH, &[("counter", counter.to_owned())], None).await
    }

    /// One call, retried by the project's backoff ([`retry::CALL`]) on connection
    /// errors, throttling and server errors, and on `409 idempotency_key_in_progress`
    /// after its `Retry-After`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, CallError> {
        let url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        // Percent-encoded by hand: a space as %20 and `+` as %2B, never `+` for a space
        // (which reqwest's form encoding writes), so a signature means one thing to the
        // signer and to AWS.
        let encoded: Vec<String> =
            query.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect();
        let target = if encoded.is_empty() { url.clone() } else { format!("{url}?{}", encoded.join("&")) };
        let attempt = || self.attempt(method.clone(), &url, &target, idempotency_key);
        retry::CALL.retry_as(attempt, retry).await
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        target: &str,
        idempotency_key: Option<&str>,
    ) -> Result<T, CallError> {
        let mut request = self.http.request(method, target);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(key) = self.endpoint.credential.api_key() {
            request = request.header("x-api-key", key);
        }
        let mut request = request.build().map_err(|error| CallError::Signing(error.to_string()))?;
        // Signed anew for each attempt: a signature carries its time.
        if let Credential::Iam { region, service, credentials } = &self.endpoint.credential {
            sign(&mut request, region, service, credentials)?;
        }
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            // With its causes: "error sending request: … Connection refused".
            Err(error) => {
                let reason = format!("{:#}", anyhow::Error::new(error));
                return Err(CallError::Unreachable { url: url.to_owned(), reason });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        match (interpret(url, status, &body, retry_after), &self.endpoint.credential) {
            (Err(CallError::Forbidden { status, message }), Credential::Iam { service, credentials, .. }) => {
                Err(CallError::SignatureRefused {
                    status,
                    message,
                    access_key: credentials.access_key_id().to_owned(),
                    action: if *service == "lambda" { "lambda:InvokeFunctionUrl" } else { "execute-api:Invoke" },
                })
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

/// Whether and when a failed call is made again.
fn retry(error: &CallError) -> Retry {
    match error {
        CallError::Unreachable { .. } => Retry::Backoff,
        // A 409 that asks to come back after its `Retry-After`.
        CallError::Service { code, retry_after, .. } if code == ApiError::IdempotencyKeyInProgress.code() => {
            retry_after.map_or(Retry::Backoff, Retry::After)
        }
        CallError::Service { status, retry_after, .. } if *status == 429 || *status >= 500 => {
            retry_after.map_or(Retry::Backoff, Retry::After)
        }
        CallError::Unexpected { status, .. } if *status == 429 || *status >= 500 => Retry::Backoff,
        CallError::Service { .. }
        | CallError::Unexpected { .. }
        | CallError::Forbidden { .. }
        | CallError::SignatureRefused { .. }
        | CallError::Signing(_)
        | CallError::NoApi { .. } => Retry::No,
    }
}

/// Signs `request` with SigV4 (the `aws-sigv4` crate, as the AWS SDKs do): adds
/// `Authorization`, `X-Amz-Date` and, for temporary credentials, `X-Amz-Security-Token`.
fn sign(
    request: &mut reqwest::Request,
    region: &str,
    service: &str,
    credentials: &aws_credential_types::Credentials,
) -> Result<(), CallError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let failed = |error: &dyn std::fmt::Display| CallError::Signing(error.to_string());
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|error| failed(&error))?
        .into();
    let body = request.body().and_then(reqwest::Body::as_bytes).unwrap_or_default();
    let headers = request.headers().iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let signable =
        SignableRequest::new(request.method().as_str(), request.url().as_str(), headers, SignableBody::Bytes(body))
            .map_err(|error| failed(&error))?;
    let (instructions, _) = sign(signable, &params).map_err(|error| failed(&error))?.into_parts();
    for (name, value) in instructions.headers() {
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|error| failed(&error))?;
        request
            .headers_mut()
            .insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| failed(&e))?, value);
    }
    Ok(())
}

/// The answer as the API's own types: the body on 200, the `error_code` otherwise, API
/// Gateway's own `{"message": …}` on a refused 403.
fn interpret<T: DeserializeOwned>(
    url: &str,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<T, CallError> {
    let unexpected = || CallError::Unexpected { url: url.to_owned(), status, body: body.chars().take(200).collect() };
    if status == 200 {
        return serde_json::from_str(body).map_err(|_| unexpected());
    }
    if let Ok(error) = serde_json::from_str::<ErrorBody<'_>>(body) {
        return Err(CallError::Service {
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
        Ok(gateway) if status == 403 => Err(CallError::Forbidden { status, message: gateway.message }),
        _ => Err(unexpected()),
    }
}

fn print<T: serde::Serialize>(answer: &T, text: String, output: OutputFormat) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => out(serde_json::to_string(answer)?)?,
        OutputFormat::Text => out(text)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn increment(args: IncrementArgs) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint(&args.endpoint, &args.aws, &args.stack).await.context("finding the counter API")?;
    let key = args.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let answer = CounterApi::new(endpoint).increment(&args.counter, args.count, &key).await?;
    let text = match answer.first_value {
        Some(first) => format!("{first}-{}", answer.new_value),
        None => answer.new_value.to_string(),
    };
    print(&answer, text, args.output.output)
}

pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint(&args.endpoint, &args.aws, &args.stack).await.context("finding the counter API")?;
    let answer = CounterApi::new(endpoint).value(&args.counter).await?;
    print(&answer, answer.value.to_string(), args.output.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_errors_throttling_server_errors_and_keys_in_progress_are_retried() {
        let url = "http://127.0.0.1:8080/counter/increment";
        let answer = |status, body: &str, after| interpret::<CurrentValue<'static>>(url, status, body, after);
        let retry_of = |status, body: &str| retry(&answer(status, body, None).unwrap_err());
        assert_eq!(retry_of(429, r#"{"error_code":"throttled","error_description":"retry"}"#), Retry::Backoff);
        assert_eq!(retry_of(500, r#"{"error_code":"error_incrementing_probably_database_error"}"#), Retry::Backoff);
        assert_eq!(retry_of(502, r#"{"message":"Internal server error"}"#), Retry::Backoff);
        assert_eq!(retry(&CallError::Unreachable { url: url.into(), reason: "refused".into() }), Retry::Backoff);
        assert_eq!(retry_of(400, r#"{"error_code":"invalid_count","error_description":"no"}"#), Retry::No);
        assert_eq!(retry_of(403, r#"{"message":"Forbidden"}"#), Retry::No);
        assert_eq!(retry_of(409, r#"{"error_code":"idempotency_key_reused"}"#), Retry::No);
        let in_progress = r#"{"error_code":"idempotency_key_in_progress","error_description":"wait"}"#;
        let after = Some(Duration::from_secs(1));
        assert_eq!(retry(&answer(409, in_progress, after).unwrap_err()), Retry::After(Duration::from_secs(1)));
        assert_eq!(answer(200, r#"{"counter":"a","value":3}"#, None).unwrap().value, 3);
        assert!(matches!(answer(200, r#"{"counter":"a"}"#, None), Err(CallError::Unexpected { .. })));
    }
}
