//! The test AWS proxy's DynamoDB global tables (moto has none): a strongly consistent
//! table made as AWS makes one, served in every replica region from one table, and
//! refused where AWS refuses. The multi-region stack's tests stand on these.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, CreateGlobalTableWitnessGroupMemberAction, CreateReplicationGroupMemberAction,
    GlobalTableWitnessGroupUpdate, MultiRegionConsistency, ReplicationGroupUpdate,
};

use crate::support::aws_proxy::AwsProxy;
use crate::support::{create_counter_table, moto_url, unique_name};

async fn dynamodb_in(proxy: &AwsProxy, region: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .endpoint_url(&proxy.url)
        .load()
        .await;
    Client::new(&config)
}

fn create_replica(region: &str) -> ReplicationGroupUpdate {
    let create = CreateReplicationGroupMemberAction::builder().region_name(region).build().unwrap();
    ReplicationGroupUpdate::builder().create(create).build()
}

fn create_witness(region: &str) -> GlobalTableWitnessGroupUpdate {
    let create = CreateGlobalTableWitnessGroupMemberAction::builder().region_name(region).build().unwrap();
    GlobalTableWitnessGroupUpdate::builder().create(create).build()
}

/// The error code of a refused call.
fn code<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: E) -> String {
    error.code().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_strongly_consistent_table_is_one_table_in_every_replica_region() {
    let proxy = AwsProxy::start(&moto_url()).await;
    let (home, east, west) = (
        dynamodb_in(&proxy, "us-east-1").await,
        dynamodb_in(&proxy, "us-east-2").await,
        dynamodb_in(&proxy, "us-west-2").await,
    );
    let table = unique_name("global");
    create_counter_table(&home, &table).await;
    home.update_table()
        .table_name(&table)
        .replica_updates(create_replica("us-east-2"))
        .replica_updates(create_replica("us-west-2"))
        .multi_region_consistency(MultiRegionConsistency::Strong)
        .send()
        .await
        .unwrap();
    let described = east.describe_table().table_name(&table).send().await.unwrap();
    let described = described.table().unwrap();
    assert_eq!(described.multi_region_consistency(), Some(&MultiRegionConsistency::Strong));
    let mut replicas: Vec<&str> = described.replicas().iter().filter_map(|r| r.region_name()).collect();
    replicas.sort_unstable();
    assert_eq!(replicas, ["us-east-1", "us-west-2"], "the asking region is left out by default");

    west.put_item()
        .table_name(&table)
        .item("id", AttributeValue::S("c".into()))
        .item("lastValue", AttributeValue::N("7".into()))
        .send()
        .await
        .unwrap();
    let read = home.get_item().table_name(&table).key("id", AttributeValue::S("c".into())).consistent_read(true);
    let item = read.send().await.unwrap();
    assert_eq!(
        item.item().unwrap()["lastValue"],
        AttributeValue::N("7".into()),
        "written in one region, read in another"
    );

    let east_arn = described.table_arn().unwrap();
    assert!(east_arn.starts_with("arn:aws:dynamodb:us-east-2:"), "each replica has its region's ARN: {east_arn}");
    let tag = aws_sdk_dynamodb::types::Tag::builder().key("k").value("v").build().unwrap();
    east.tag_resource().resource_arn(east_arn).tags(tag).send().await.unwrap();
    let tags = east.list_tags_of_resource().resource_arn(east_arn).send().await.unwrap();
    assert_eq!(tags.tags().len(), 1, "tagged by its replica's ARN");

    let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder().enabled(true).attribute_name("expires_at");
    let refused = east.update_time_to_live().table_name(&table).time_to_live_specification(ttl.build().unwrap());
    assert_eq!(code(refused.send().await.unwrap_err()), "ValidationException", "no TTL on MRSC");
    assert_eq!(code(home.delete_table().table_name(&table).send().await.unwrap_err()), "ValidationException");
    let more = home.update_table().table_name(&table).replica_updates(create_replica("us-east-2"));
    assert_eq!(code(more.send().await.unwrap_err()), "ValidationException", "no replica is added later");
}

#[tokio::test]
async fn what_aws_refuses_in_making_a_strongly_consistent_table_is_refused() {
    let proxy = AwsProxy::start(&moto_url()).await;
    let home = dynamodb_in(&proxy, "us-east-1").await;
    let table = unique_name("refused");
    create_counter_table(&home, &table).await;
    let update = || home.update_table().table_name(&table).multi_region_consistency(MultiRegionConsistency::Strong);
    let single = update().replica_updates(create_replica("us-east-2")).send().await.unwrap_err();
    assert_eq!(code(single), "ValidationException");
    let mixed =
        update().replica_updates(create_replica("us-east-2")).global_table_witness_updates(create_witness("eu-west-1"));
    assert_eq!(code(mixed.send().await.unwrap_err()), "ValidationException");
    home.put_item().table_name(&table).item("id", AttributeValue::S("c".into())).send().await.unwrap();
    let full =
        update().replica_updates(create_replica("us-east-2")).global_table_witness_updates(create_witness("us-west-2"));
    assert_eq!(code(full.send().await.unwrap_err()), "ValidationException", "a table with items is not made MRSC");
    assert_eq!(proxy.global_table(&table), None);

    let empty = unique_name("witnessed");
    create_counter_table(&home, &empty).await;
    let witnessed = home
        .update_table()
        .table_name(&empty)
        .multi_region_consistency(MultiRegionConsistency::Strong)
        .replica_updates(create_replica("us-east-2"))
        .global_table_witness_updates(create_witness("us-west-2"));
    witnessed.send().await.unwrap();
    let (_, replicas, witness) = proxy.global_table(&empty).unwrap();
    assert_eq!(
        (replicas, witness.as_deref()),
        (vec!["us-east-1".to_owned(), "us-east-2".to_owned()], Some("us-west-2"))
    );
    let at_witness = dynamodb_in(&proxy, "us-west-2").await;
    let missing = at_witness.describe_table().table_name(&empty).send().await.unwrap_err();
    assert_eq!(code(missing), "ResourceNotFoundException", "a witness holds no table to call");
}
