//! Serving the API from AWS Lambda: HTTP events in (API Gateway REST and HTTP APIs,
//! Function URLs, ALB), proxy responses out, through the Lambda Runtime API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse;
use lambda_http::aws_lambda_events::encodings::Body;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, Request, RequestExt, Service, service_fn};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::{self, ApiError, ApiRequest};
use crate::dynamo::DEFAULT_TABLE;
use crate::store::CounterStore;

/// What the function reads from the environment Lambda gives it.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `TABLE_NAME`, else the original service's `AtomicCounters`.
    pub table: String,
    pub region: String,
    pub credentials: Credentials,
    /// `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL`, as the AWS SDKs read them
    /// (for DynamoDB Local, LocalStack or moto).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not set; Lambda sets it for every function")]
pub struct MissingVariable(&'static str);

impl Setup {
    pub fn from_environment() -> Result<Self, MissingVariable> {
        let var = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
        let required = |name| var(name).ok_or(MissingVariable(name));
        Ok(Self {
            table: var("TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
            region: required("AWS_REGION").or_else(|_| required("AWS_DEFAULT_REGION"))?,
            credentials: Credentials::new(
                required("AWS_ACCESS_KEY_ID")?,
                required("AWS_SECRET_ACCESS_KEY")?,
                var("AWS_SESSION_TOKEN"),
                None,
                "lambda-environment",
            ),
            endpoint_url: var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| var("AWS_ENDPOINT_URL")),
        })
    }

    /// The DynamoDB client for this environment, made once and shared by all requests.
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            // An attempt that times out may still have been applied, and its retry then
            // skips a value; so only a hung connection is cut short.
            .operation_attempt_timeout(Duration::from_secs(5))
            .build();
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials.clone())
            .http_client(http_client)
            .timeout_config(timeouts);
        if let Some(endpoint) = &self.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }
}

/// What the function returns to the Runtime API.
#[derive(Serialize)]
#[serde(untagged)]
enum Reply<HttpResponse> {
    /// lambda_http's response in the shape the event's source expects.
    Http(HttpResponse),
    /// A direct invocation with something that is not an HTTP event still gets a
    /// proxy-shaped answer, not a failed invocation.
    UnsupportedEvent(Box<ApiGatewayProxyResponse>),
}

/// Serves invocations until the runtime shuts the environment down.
pub async fn run<S: CounterStore + 'static>(store: S) -> Result<(), lambda_http::Error> {
    let store = Arc::new(store);
    let http = service_fn(move |request: Request| {
        let store = Arc::clone(&store);
        async move { Ok::<_, Infallible>(answer(&*store, request).await) }
    });
    let adapter = Adapter::from(http);
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let mut adapter = adapter.clone();
        async move {
            let LambdaEvent { payload, context } = event;
            match serde_json::from_str::<LambdaRequest>(payload.get()) {
                Ok(request) => adapter.call(LambdaEvent::new(request, context)).await.map(Reply::Http),
                Err(error) => {
                    tracing::warn!(request_id = context.request_id, error = %error, "not an HTTP event");
                    Ok(Reply::UnsupportedEvent(Box::new(unsupported_event())))
                }
            }
        }
    }))
    .await
}

async fn answer<S: CounterStore + ?Sized>(store: &S, request: Request) -> http::Response<Body> {
    let request_id = request.lambda_context_ref().map(|context| context.request_id.clone()).unwrap_or_default();
    let path = path_below_stage(&request);
    let api_request = ApiRequest {
        request_id: &request_id,
        method: request.method(),
        path,
        query: request.uri().query(),
        headers: request.headers(),
    };
    api::handle(store, &api_request).await.map(Body::Text)
}

/// lambda_http puts the API Gateway stage in front of the path (`/prod/counter/...`);
/// the routes are the same under any stage, so it is taken off again.
fn path_below_stage(request: &Request) -> &str {
    let path = request.uri().path();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.as_deref(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" => path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path),
        _ => path,
    }
}

fn unsupported_event() -> ApiGatewayProxyResponse {
    let error = ApiError::UnsupportedEvent.into_response();
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(error.status().as_u16());
    response.headers = error.headers().clone();
    response.body = Some(Body::Text(error.into_body()));
    response
}
