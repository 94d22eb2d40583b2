//! DynamoDB as the function uses it: the original table layout, and outages.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::support::aws_proxy::{AwsProxy, Fault};
use crate::support::tcp_proxy::TcpProxy;
use crate::support::{Backend, LambdaStack, moto_url};

#[tokio::test]
async fn a_table_from_the_original_service_continues_where_it_stopped() {
    let stack = LambdaStack::start(1).await;
    stack
        .dynamodb
        .put_item()
        .table_name(&stack.table)
        .item("id", AttributeValue::S("tenants".into()))
        .item("lastValue", AttributeValue::N("714".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(stack.value("tenants").await, Some(714));
    assert_eq!(stack.increment("tenants").await, 715);

    let item = stack.item("tenants").await.unwrap();
    assert_eq!(item["lastValue"], AttributeValue::N("715".into()), "the same attribute, as a number");
    assert_eq!(item.len(), 2, "no attributes added: {item:?}");
}

#[tokio::test]
async fn dynamodb_unreachable_gives_the_original_500_and_service_resumes() {
    let moto: std::net::SocketAddr = moto_url().trim_start_matches("http://").parse().unwrap();
    let outage = TcpProxy::start(moto).await;
    let stack = LambdaStack::start_with_endpoint(&outage.url(), 1).await;
    assert_eq!(stack.increment("resilient").await, 1);

    outage.set_up(false);
    for path in ["/counter/increment?counter=resilient", "/counter/increment?counter=resilient&count=5"] {
        let (status, body) = stack.post(path).await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error_code"], "error_incrementing_probably_database_error");
        assert!(!body.to_string().contains("127.0.0.1"), "no internals in the answer: {body}");
    }
    let (status, body) = stack.get("/counter/value?counter=resilient").await;
    assert_eq!((status, body["error_code"].as_str()), (500, Some("error_incrementing_probably_database_error")));
    assert!(stack.function.all_running(), "the environment survived the outage");

    outage.set_up(true);
    assert_eq!(stack.increment("resilient").await, 2, "served again, nothing was counted meanwhile");
}

#[tokio::test]
async fn throttling_after_retries_is_a_429_with_retry_after() {
    let proxy = AwsProxy::start(&moto_url()).await;
    let stack = LambdaStack::start_with_endpoint(&proxy.url, 1).await;
    assert_eq!(stack.increment("hot").await, 1);

    let throttled = Fault::new(
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
    );
    proxy.inject("UpdateItem", throttled, usize::MAX);
    let before = proxy.actions().len();
    let response = stack.http.post(stack.url("/counter/increment?counter=hot")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "throttled");
    let attempts = proxy.actions()[before..].iter().filter(|action| *action == "UpdateItem").count();
    assert!(attempts > 1, "the SDK retried before giving up ({attempts} attempts)");

    proxy.inject("UpdateItem", Fault::new(400, "ThrottlingException", "unused"), 0);
    assert_eq!(stack.increment("hot").await, 2);
}
