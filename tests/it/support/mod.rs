//! What the tests run against: moto (DynamoDB) on loopback, the shipped bootstrap behind a
//! Lambda Runtime API, and API Gateway's REST front; and `counterctl serve`.

pub(crate) mod aws_proxy;
pub(crate) mod backend;
pub(crate) mod cli;
pub(crate) mod counters;
pub(crate) mod deployed_lambda;
pub(crate) mod function;
pub(crate) mod function_url;
pub(crate) mod global_tables;
pub(crate) mod iam;
pub(crate) mod rest_api;
pub(crate) mod runtime_api;
pub(crate) mod serve;
pub(crate) mod tcp_proxy;
pub(crate) mod upstreams;

pub(crate) use backend::Backend;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_json::Value;

use function::Function;
use rest_api::{MethodAuth, RestApi};

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The moto server started by `scripts/test.sh`.
pub(crate) fn moto_url() -> String {
    std::env::var("COUNTERCTL_TEST_MOTO_URL")
        .expect("COUNTERCTL_TEST_MOTO_URL is not set: run the tests with scripts/test.sh, which starts moto")
}

/// A name no other test in this run uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(crate) async fn dynamodb(endpoint: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .endpoint_url(endpoint)
        .load()
        .await;
    Client::new(&config)
}

/// A table in the original service's layout: key `id` (S).
pub(crate) async fn create_counter_table(client: &Client, name: &str) {
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .send()
        .await
        .expect("moto creates the table");
}

/// The whole deployment as `counterctl install` makes it: a table, the shipped function
/// in `environments` execution environments, and the REST API in front. Its HTTP helpers
/// come with [`Backend`].
pub(crate) struct LambdaStack {
    pub table: String,
    pub dynamodb: Client,
    pub function: Arc<Function>,
    pub api: RestApi,
    pub http: reqwest::Client,
}

impl LambdaStack {
    pub(crate) async fn start(environments: usize) -> Self {
        Self::start_with_endpoint(&moto_url(), environments).await
    }

    /// As `start`, with the function reaching DynamoDB at `function_endpoint`.
    pub(crate) async fn start_with_endpoint(function_endpoint: &str, environments: usize) -> Self {
        Self::start_front(function_endpoint, environments, MethodAuth::none()).await
    }

    /// As `start`, behind a REST API whose method requires what `auth` says: an API key,
    /// or SigV4 signatures (`AWS_IAM`).
    pub(crate) async fn start_with_auth(environments: usize, auth: MethodAuth) -> Self {
        Self::start_front(&moto_url(), environments, auth).await
    }

    async fn start_front(function_endpoint: &str, environments: usize, auth: MethodAuth) -> Self {
        let dynamodb = dynamodb(&moto_url()).await;
        let table = unique_name("counters");
        create_counter_table(&dynamodb, &table).await;
        let function = Arc::new(Function::start(&table, function_endpoint, environments).await);
        let api = RestApi::start_with_auth(Arc::clone(&function), auth).await;
        Self { table, dynamodb, function, api, http: reqwest::Client::new() }
    }

    /// The table's item with this `id`, read directly from DynamoDB.
    pub(crate) async fn item(&self, id: &str) -> Option<HashMap<String, AttributeValue>> {
        let key = AttributeValue::S(id.to_owned());
        self.dynamodb.get_item().table_name(&self.table).key("id", key).send().await.unwrap().item
    }
}

/// An axum app on a free loopback port, stopped when dropped: the stand-ins' server.
pub(crate) struct LoopbackServer {
    pub address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    /// Serves `app`, with the peer's address for the fronts that put it in their events.
    pub(crate) async fn start(app: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let task = tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        Self { address, task }
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends a request and returns its status and JSON body.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the API answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: body is not JSON: {text:?}")))
}
