//! The DynamoDB table: on-demand, key `id` (S), deletion protection, point-in-time
//! recovery, and TTL on the idempotency records' `expires_at`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, ScalarAttributeType, Select, TableDescription, TableStatus, Tag,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use counter_function::dynamo::EXPIRES_AT;

use super::{Error, Mode};
use crate::aws::{AwsError, Operation, found, gone, has_code};
use crate::progress::Outcome;
use crate::retry::Backoff;
use crate::stack::Stack;

const KEY: &str = "id";
const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];

pub async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, AwsError> {
    let output = found("dynamodb:DescribeTable", client.describe_table().table_name(table).send().await, NOT_FOUND)?;
    Ok(output.and_then(|output| output.table))
}

/// Refuses a table whose key is not `id` (S): counterctl would corrupt it.
pub fn check_key_schema(table: &str, description: &TableDescription) -> Result<(), Error> {
    let keys: Vec<String> = description
        .key_schema()
        .iter()
        .map(|key| {
            let kind = description
                .attribute_definitions()
                .iter()
                .find(|definition| definition.attribute_name() == key.attribute_name())
                .map_or("?".to_owned(), |definition| definition.attribute_type().as_str().to_owned());
            format!("{} {} ({kind})", key.attribute_name(), key.key_type().as_str())
        })
        .collect();
    if keys == [format!("{KEY} HASH (S)")] {
        Ok(())
    } else {
        Err(Error::TableKeySchema { table: table.to_owned(), found: keys.join(", ") })
    }
}

/// Makes the table match, given what [`describe`] found (and [`check_key_schema`] passed).
pub async fn ensure(
    client: &Client,
    stack: &Stack,
    existing: Option<TableDescription>,
    mode: Mode,
) -> Result<((), Outcome), Error> {
    let description = match existing {
        Some(description) => description,
        None if mode == Mode::Plan => return Ok(((), Outcome::Created)),
        None => {
            if create(client, stack).await? {
                return Ok(((), Outcome::Created));
            }
            // A run interrupted a moment ago created it after all: converge that one.
            wait_active(client, &stack.table).await?;
            let timeout = || Error::Timeout {
                what: format!("table {}", stack.table),
                seconds: Backoff::POLL.give_up_after.as_secs(),
            };
            let description = describe(client, &stack.table).await?.ok_or_else(timeout)?;
            check_key_schema(&stack.table, &description)?;
            description
        }
    };
    let arn = description.table_arn().unwrap_or_default();
    let (tags, backups, ttl) = tokio::join!(
        client.list_tags_of_resource().resource_arn(arn).send(),
        client.describe_continuous_backups().table_name(&stack.table).send(),
        client.describe_time_to_live().table_name(&stack.table).send(),
    );
    let tags = tags.op("dynamodb:ListTagsOfResource")?;
    if !stack.tagged(tags.tags().iter().map(|tag| (tag.key(), tag.value()))) {
        // Someone else's table (the original manual setup's, say): used as is, data untouched.
        let items = description.item_count().unwrap_or(0);
        let note = format!("existing table kept as is, about {items} items (DynamoDB refreshes this count every ~6 h)");
        return Ok(((), Outcome::Adopted { note }));
    }
    let pitr_on = backups
        .op("dynamodb:DescribeContinuousBackups")?
        .continuous_backups_description()
        .and_then(|backups| backups.point_in_time_recovery_description())
        .and_then(|pitr| pitr.point_in_time_recovery_status())
        == Some(&PointInTimeRecoveryStatus::Enabled);
    let ttl = ttl.op("dynamodb:DescribeTimeToLive")?;
    let ttl_on = ttl.time_to_live_description().is_some_and(|ttl| {
        ttl.attribute_name() == Some(EXPIRES_AT)
            && matches!(ttl.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
    });
    let mut changes = Vec::new();
    if description.deletion_protection_enabled() != Some(true) {
        changes.push("turn deletion protection on".to_owned());
    }
    if !pitr_on {
        changes.push("turn point-in-time recovery on".to_owned());
    }
    if !ttl_on {
        changes.push(format!("turn TTL on `{EXPIRES_AT}`"));
    }
    if mode == Mode::Apply {
        if description.deletion_protection_enabled() != Some(true) {
            client
                .update_table()
                .table_name(&stack.table)
                .deletion_protection_enabled(true)
                .send()
                .await
                .op("dynamodb:UpdateTable")?;
            wait_active(client, &stack.table).await?;
        }
        if !pitr_on {
            enable_point_in_time_recovery(client, &stack.table).await?;
        }
        if !ttl_on {
            enable_ttl(client, &stack.table).await?;
        }
    }
    Ok(((), Outcome::from_changes(changes)))
}

/// Creates the table; `false` when it turned out to exist already.
async fn create(client: &Client, stack: &Stack) -> Result<bool, Error> {
    let tags = stack
        .tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build().expect("key and value set"))
        .collect();
    let output = client
        .create_table()
        .table_name(&stack.table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().expect("complete"))
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete"),
        )
        .deletion_protection_enabled(true)
        .set_tags(Some(tags))
        .send()
        .await;
    let output = match output {
        Err(error) if has_code(&error, &["ResourceInUseException"]) => return Ok(false),
        output => output.op("dynamodb:CreateTable")?,
    };
    let status = output.table_description().and_then(|table| table.table_status());
    if status != Some(&TableStatus::Active) {
        wait_active(client, &stack.table).await?;
    }
    enable_point_in_time_recovery(client, &stack.table).await?;
    enable_ttl(client, &stack.table).await?;
    Ok(true)
}

async fn wait_active(client: &Client, table: &str) -> Result<(), Error> {
    let backoff = Backoff::POLL;
    let active = backoff
        .poll(|| async {
            let table = describe(client, table).await?;
            Ok::<_, AwsError>(table.is_some_and(|table| table.table_status() == Some(&TableStatus::Active)))
        })
        .await?;
    if active {
        Ok(())
    } else {
        Err(Error::Timeout { what: format!("table {table} becoming ACTIVE"), seconds: backoff.give_up_after.as_secs() })
    }
}

/// Right after CreateTable AWS may still refuse this for a few seconds.
async fn enable_point_in_time_recovery(client: &Client, table: &str) -> Result<(), AwsError> {
    Backoff::ABOUT_TWO_MINUTES
        .retry(
            || {
                client
                    .update_continuous_backups()
                    .table_name(table)
                    .point_in_time_recovery_specification(
                        PointInTimeRecoverySpecification::builder()
                            .point_in_time_recovery_enabled(true)
                            .build()
                            .expect("complete"),
                    )
                    .send()
            },
            |error| has_code(error, &["ContinuousBackupsUnavailableException"]),
        )
        .await
        .op("dynamodb:UpdateContinuousBackups")?;
    Ok(())
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), AwsError> {
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().enabled(true).attribute_name(EXPIRES_AT).build().expect("complete"),
        )
        .send()
        .await
        .op("dynamodb:UpdateTimeToLive")?;
    Ok(())
}

/// How many items the table holds, counted exactly (a Scan of keys only).
pub async fn count_items(client: &Client, table: &str) -> Result<u64, AwsError> {
    let mut pages = client.scan().table_name(table).select(Select::Count).into_paginator().send();
    let mut items = 0u64;
    while let Some(page) = pages.next().await {
        items += u64::try_from(page.op("dynamodb:Scan")?.count()).unwrap_or(0);
    }
    Ok(items)
}

/// Deletes the table and its data: deletion protection off first.
pub async fn delete(client: &Client, table: &str) -> Result<bool, AwsError> {
    let unprotect = client.update_table().table_name(table).deletion_protection_enabled(false).send().await;
    if !gone("dynamodb:UpdateTable", unprotect, NOT_FOUND)? {
        return Ok(false);
    }
    gone("dynamodb:DeleteTable", client.delete_table().table_name(table).send().await, NOT_FOUND)
}
