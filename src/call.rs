//! `counterctl increment` and `get`: calls to a deployed counter API (or to
//! `counterctl serve`), with the URL and API key found from the stack when not given.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::cli::{AwsOptions, EndpointOptions, GetArgs, IncrementArgs, OutputFormat, StackOptions};
use crate::deployed::Clients;
use crate::progress::out;
use crate::resources::{api, auth};

/// Attempts per call: the first and three retries.
const ATTEMPTS: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// API Gateway gives up on an integration after 29 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the counter API is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Base URL; the API's paths (`/counter/...`) go below it.
    pub url: String,
    pub api_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "could not reach {url}: {reason}\n\
         hint: check --url / COUNTERCTL_URL (for `counterctl serve`, is it running?)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the counter API answered {status} {code}: {description}")]
    Service { status: u16, code: String, description: String },
    #[error(
        "API Gateway answered {status}: {message}\n\
         hint: this API needs its key: pass --api-key or set COUNTERCTL_API_KEY \
         (`counterctl status --show-api-key` prints it), or omit --url to have it fetched"
    )]
    Forbidden { status: u16, message: String },
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
        return Ok(Endpoint { url: url.clone(), api_key: options.api_key.clone() });
    }
    let clients = Clients::connect(aws).await?;
    let mut endpoint = discover(&clients.apigateway, stack).await?;
    if options.api_key.is_some() {
        endpoint.api_key = options.api_key.clone();
    }
    Ok(endpoint)
}

/// The stack's invoke URL (the stage asked for, else the one counterctl deployed), and
/// its API key when the API requires one.
pub async fn discover(client: &aws_sdk_apigateway::Client, stack: &StackOptions) -> anyhow::Result<Endpoint> {
    let region = client.config().region().map(ToString::to_string).unwrap_or_default();
    let (apis, usage_plans) =
        tokio::try_join!(async { api::list(client, &stack.name).await.context("looking for the API") }, async {
            auth::usage_plans(client, &stack.name).await.context("looking for the usage plan")
        },)?;
    let Some(chosen) = crate::plan::choose_api(&apis, &usage_plans) else {
        return Err(CallError::NoApi { name: stack.name.clone(), region }.into());
    };
    let detail = api::detail(client, &chosen.id).await.context("reading the API's routes")?;
    let stage = stack.stage.clone().unwrap_or_else(|| crate::plan::deployed_stage(&detail));
    let api_key = match detail.method {
        Some(method) if method.key_required => {
            let keys = auth::keys(client, &stack.name).await.context("looking for the API key")?;
            let usage_plan = crate::plan::choose_usage_plan(&usage_plans, Some(&chosen.id));
            match crate::plan::choose_key(&keys, usage_plan) {
                Some(key) => auth::key_value(client, &key.id).await.context("reading the API key")?,
                None => None,
            }
        }
        _ => None,
    };
    Ok(Endpoint { url: crate::stack::invoke_url(&region, &chosen.id, &stage), api_key })
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
    ) -> Result<Value, CallError> {
        let mut query = vec![("counter", counter.to_owned())];
        if let Some(count) = count {
            query.push(("count", count.to_string()));
        }
        self.call(reqwest::Method::POST, "/counter/increment", &query, Some(idempotency_key)).await
    }

    /// `GET /counter/value`.
    pub async fn value(&self, counter: &str) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, "/counter/value", &[("counter", counter.to_owned())], None).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.endpoint.url.trim_end_matches('/'));
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), &url).query(query);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(key) = &self.endpoint.api_key {
                request = request.header("x-api-key", key);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    interpret(&url, status, &body)
                }
                // With its causes: "error sending request: … Connection refused".
                Err(error) => {
                    Err(CallError::Unreachable { url: url.clone(), reason: format!("{:#}", anyhow::Error::new(error)) })
                }
            };
            match outcome {
                Err(error) if retryable(&error) && attempt < ATTEMPTS => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

fn retryable(error: &CallError) -> bool {
    match error {
        CallError::Unreachable { .. } => true,
        CallError::Service { status, .. } | CallError::Unexpected { status, .. } => *status == 429 || *status >= 500,
        CallError::Forbidden { .. } | CallError::NoApi { .. } => false,
    }
}

fn interpret(url: &str, status: u16, body: &str) -> Result<Value, CallError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    match json {
        Some(value) if status == 200 => Ok(value),
        Some(value) if value["error_code"].is_string() => Err(CallError::Service {
            status,
            code: value["error_code"].as_str().unwrap_or_default().to_owned(),
            description: value["error_description"].as_str().unwrap_or("no description").to_owned(),
        }),
        // API Gateway's own answers, e.g. {"message":"Forbidden"} without a valid key.
        Some(value) if status == 403 && value["message"].is_string() => {
            Err(CallError::Forbidden { status, message: value["message"].as_str().unwrap_or_default().to_owned() })
        }
        _ => Err(CallError::Unexpected { url: url.to_owned(), status, body: body.chars().take(200).collect() }),
    }
}

fn print(value: &Value, text: impl FnOnce(&Value) -> Option<String>, output: OutputFormat) -> anyhow::Result<ExitCode> {
    match output {
        OutputFormat::Json => out(value)?,
        OutputFormat::Text => {
            out(text(value).with_context(|| format!("the counter API answered an unexpected body: {value}"))?)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn increment(args: IncrementArgs) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint(&args.endpoint, &args.aws, &args.stack).await.context("finding the counter API")?;
    let key = args.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let answer = CounterApi::new(endpoint).increment(&args.counter, args.count, &key).await?;
    print(
        &answer,
        |answer| {
            let last = answer["new_value"].as_i64()?;
            Some(match args.count {
                Some(_) => format!("{}-{last}", answer["first_value"].as_i64()?),
                None => last.to_string(),
            })
        },
        args.output.output,
    )
}

pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint(&args.endpoint, &args.aws, &args.stack).await.context("finding the counter API")?;
    let answer = CounterApi::new(endpoint).value(&args.counter).await?;
    print(&answer, |answer| Some(answer["value"].as_i64()?.to_string()), args.output.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_errors_throttling_and_server_errors_are_retried() {
        let url = "http://127.0.0.1:8080/counter/increment";
        let answer = |status, body: &str| interpret(url, status, body);
        assert!(retryable(&answer(429, r#"{"error_code":"throttled","error_description":"retry"}"#).unwrap_err()));
        assert!(retryable(&answer(500, r#"{"error_code":"error_incrementing_probably_database_error"}"#).unwrap_err()));
        assert!(retryable(&answer(502, r#"{"message":"Internal server error"}"#).unwrap_err()));
        assert!(retryable(&CallError::Unreachable { url: url.into(), reason: "refused".into() }));
        assert!(!retryable(&answer(400, r#"{"error_code":"invalid_count","error_description":"no"}"#).unwrap_err()));
        assert!(!retryable(&answer(403, r#"{"message":"Forbidden"}"#).unwrap_err()));
        assert!(!retryable(&answer(409, r#"{"error_code":"idempotency_key_reused"}"#).unwrap_err()));
        assert_eq!(answer(200, r#"{"counter":"a","value":3}"#).unwrap()["value"], 3);
    }
}
