//! The mappings table in DynamoDB (`ESM_MAPPINGS_TABLE`, key `UUID`), and creating both tables.
//!
//! Every write is conditional on the item's `Version`, so two writers (two `esm` commands, or a
//! command and a poller recording an error) can never silently overwrite each other. Items are
//! parsed one by one: a malformed item someone wrote by hand is reported as such and never stops
//! the others from being read.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::clock::now_epoch_seconds;
use crate::config::Tables;
use crate::model::mapping::EventSourceMapping;
use crate::model::store::{Loaded, MappingStore, Status, StoreError};

use super::leases::LEASE_KEY;

/// The DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoMappingStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoMappingStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn from_sdk(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(super::dynamodb_client(sdk), table)
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        uuid: &str,
        e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> StoreError {
        if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") {
            StoreError::Conflict { uuid: uuid.to_owned() }
        } else {
            StoreError::Dynamo { table: self.table.clone(), message: super::error_line(&e) }
        }
    }

    fn item(mapping: &EventSourceMapping) -> Result<HashMap<String, AttributeValue>, StoreError> {
        serde_dynamo::to_item(mapping)
            .map_err(|e| StoreError::Encode { uuid: mapping.uuid.clone(), message: e.to_string() })
    }
}

impl MappingStore for DynamoMappingStore {
    async fn list(&self) -> Result<Vec<Loaded>, StoreError> {
        let items: Vec<_> = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| self.err("*", e))?;
        let mut loaded: Vec<Loaded> = items.into_iter().map(parse).collect();
        loaded.sort_by(|a, b| a.uuid().cmp(&b.uuid()));
        Ok(loaded)
    }

    async fn get(&self, uuid: &str) -> Result<Option<Loaded>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("UUID", AttributeValue::S(uuid.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(uuid, e))?;
        Ok(out.item.map(parse))
    }

    async fn create(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(mapping)?))
            .condition_expression("attribute_not_exists(#u)")
            .expression_attribute_names("#u", "UUID")
            .send()
            .await
            .map_err(|e| self.err(&mapping.uuid, e))?;
        Ok(())
    }

    async fn replace(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        let expected = mapping.version.saturating_sub(1);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(mapping)?))
            .condition_expression(version_condition(expected))
            .expression_attribute_names("#v", "Version")
            .expression_attribute_names("#u", "UUID")
            .expression_attribute_values(":v", AttributeValue::N(expected.to_string()))
            .send()
            .await
            .map_err(|e| self.err(&mapping.uuid, e))?;
        Ok(())
    }

    async fn delete(&self, uuid: &str, version: u64) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("UUID", AttributeValue::S(uuid.to_owned()))
            .condition_expression(version_condition(version))
            .expression_attribute_names("#v", "Version")
            .expression_attribute_names("#u", "UUID")
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .send()
            .await
            .map_err(|e| self.err(uuid, e))?;
        Ok(())
    }

    async fn set_status(&self, uuid: &str, expected_version: Option<u64>, status: &Status) -> Result<(), StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("UUID", AttributeValue::S(uuid.to_owned()))
            .update_expression("SET #s = :s, #r = :r, #l = :l, #m = :m ADD #v :one")
            .expression_attribute_names("#s", "State")
            .expression_attribute_names("#r", "StateTransitionReason")
            .expression_attribute_names("#l", "LastProcessingResult")
            .expression_attribute_names("#m", "LastModified")
            .expression_attribute_names("#v", "Version")
            .expression_attribute_names("#u", "UUID")
            .expression_attribute_values(":s", AttributeValue::S(status.state.as_str().to_owned()))
            .expression_attribute_values(":r", AttributeValue::S(status.reason.clone()))
            .expression_attribute_values(":l", AttributeValue::S(status.last_processing_result.clone()))
            .expression_attribute_values(":m", AttributeValue::N(now_epoch_seconds().to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        update = match expected_version {
            Some(v) => update
                .condition_expression(version_condition(v))
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            None => update.condition_expression("attribute_exists(#u)"),
        };
        update.send().await.map_err(|e| self.err(uuid, e))?;
        Ok(())
    }

    async fn set_processing_result(&self, uuid: &str, result: &str) -> Result<(), StoreError> {
        match self.update_result(uuid, result).await {
            Err(StoreError::Conflict { .. }) => Ok(()),
            other => other,
        }
    }
}

impl DynamoMappingStore {
    async fn update_result(&self, uuid: &str, result: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("UUID", AttributeValue::S(uuid.to_owned()))
            .update_expression("SET #l = :l")
            .condition_expression("attribute_exists(#u)")
            .expression_attribute_names("#l", "LastProcessingResult")
            .expression_attribute_names("#u", "UUID")
            .expression_attribute_values(":l", AttributeValue::S(result.to_owned()))
            .send()
            .await
            .map_err(|e| self.err(uuid, e))?;
        Ok(())
    }
}

/// The condition of a write that expects the item at `version`. An item written by hand without
/// `Version` counts as version 0 (the documented schema makes it optional), so every command
/// works on it too.
fn version_condition(version: u64) -> &'static str {
    if version == 0 {
        "attribute_exists(#u) AND (attribute_not_exists(#v) OR #v = :v)"
    } else {
        "attribute_exists(#u) AND #v = :v"
    }
}

/// Parses an item through its JSON form, as every store does.
fn parse(item: HashMap<String, AttributeValue>) -> Loaded {
    match serde_dynamo::from_item::<_, serde_json::Value>(item) {
        Ok(json) => Loaded::from_json(json),
        Err(e) => Loaded::Malformed { uuid: None, state: None, version: 0, field: None, reason: e.to_string() },
    }
}

/// Creates the mappings and leases tables if they do not exist (on-demand billing). Safe to run
/// again and again.
///
/// # Errors
/// DynamoDB refused to create or describe a table.
pub async fn ensure_tables(client: &aws_sdk_dynamodb::Client, tables: &Tables) -> Result<Vec<String>, StoreError> {
    let mut created = Vec::new();
    for (table, key) in [(&tables.mappings, "UUID"), (&tables.leases, LEASE_KEY)] {
        let err = |e: String| StoreError::Dynamo { table: table.clone(), message: e };
        match client.describe_table().table_name(table).send().await {
            Ok(_) => continue,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(err(super::error_line(&e))),
        }
        let result = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
            .send()
            .await;
        match result {
            Ok(_) => created.push(table.clone()),
            // Someone else created it between our describe and create.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(err(super::error_line(&e))),
        }
        wait_active(client, table).await.map_err(err)?;
    }
    Ok(created)
}

async fn wait_active(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), String> {
    for _ in 0..120 {
        let out = client.describe_table().table_name(table).send().await.map_err(|e| super::error_line(&e))?;
        if out.table.and_then(|t| t.table_status).is_some_and(|s| s.as_str() == "ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(format!("table {table} did not become ACTIVE within 60 s"))
}
