//! The mapping store: mappings as DynamoDB items (table `ESM_MAPPINGS_TABLE`, key `UUID`).
//!
//! Every write is conditional on the item's `Version`, so two writers (two `esm` commands, or a
//! command and a poller recording an error) can never silently overwrite each other. Items are
//! parsed one by one: a malformed item someone wrote by hand is reported as such and never stops
//! the others from being read.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::mapping::{EventSourceMapping, InvalidMapping, State, now_epoch_seconds};

/// Default table names, overridden by `ESM_MAPPINGS_TABLE` / `ESM_LEASES_TABLE`.
pub const DEFAULT_MAPPINGS_TABLE: &str = "kafka-esm-mappings";
pub const DEFAULT_LEASES_TABLE: &str = "kafka-esm-leases";
/// The leases table's partition key.
pub const LEASE_KEY: &str = "LeaseKey";

/// Table names from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub mappings: String,
    pub leases: String,
}

impl Tables {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        Self {
            mappings: var("ESM_MAPPINGS_TABLE", DEFAULT_MAPPINGS_TABLE),
            leases: var("ESM_LEASES_TABLE", DEFAULT_LEASES_TABLE),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write lost: the item changed (or appeared, or vanished) since it was read.
    #[error("the mapping {uuid} was changed by someone else; read it again and retry")]
    Conflict { uuid: String },
    #[error("DynamoDB error on table {table}: {message}")]
    Dynamo { table: String, message: String },
    #[error("mapping {uuid} cannot be stored: {message}")]
    Encode { uuid: String, message: String },
}

/// A stored item, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Valid(EventSourceMapping),
    /// Parsed, but breaks a rule: the poller disables it with `ESM_CONFIG_NOT_VALID`.
    Invalid {
        mapping: EventSourceMapping,
        error: InvalidMapping,
    },
    /// Not a mapping at all (wrong types, unknown or missing fields).
    Malformed {
        uuid: Option<String>,
        state: Option<String>,
        reason: String,
    },
}

impl Loaded {
    pub fn uuid(&self) -> Option<&str> {
        match self {
            Self::Valid(m) | Self::Invalid { mapping: m, .. } => Some(&m.uuid),
            Self::Malformed { uuid, .. } => uuid.as_deref(),
        }
    }

    fn parse(item: HashMap<String, AttributeValue>) -> Self {
        let uuid = item.get("UUID").and_then(|v| v.as_s().ok()).cloned();
        let state = item.get("State").and_then(|v| v.as_s().ok()).cloned();
        match serde_dynamo::from_item::<_, EventSourceMapping>(item) {
            Ok(mapping) => match mapping.validate() {
                Ok(()) => Self::Valid(mapping),
                Err(error) => Self::Invalid { mapping, error },
            },
            Err(e) => Self::Malformed { uuid, state, reason: e.to_string() },
        }
    }
}

/// The status fields a poller writes: `State`, `StateTransitionReason`, `LastProcessingResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub reason: String,
    pub last_processing_result: String,
}

/// Where mappings live.
pub trait MappingStore: Send + Sync + 'static {
    /// Every item, each parsed on its own.
    fn list(&self) -> impl Future<Output = Result<Vec<Loaded>, StoreError>> + Send;
    fn get(&self, uuid: &str) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;
    /// Stores a new mapping; `Conflict` if the UUID exists.
    fn create(&self, mapping: &EventSourceMapping) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the item if its stored `Version` is `mapping.version - 1`.
    fn replace(&self, mapping: &EventSourceMapping) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes the item if its stored `Version` is `version`.
    fn delete(&self, uuid: &str, version: u64) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Sets the status fields (and bumps `Version`) of an item whatever its other contents —
    /// the only write possible on a malformed item. `expected_version` guards it when known.
    fn set_status(
        &self,
        uuid: &str,
        expected_version: Option<u64>,
        status: &Status,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

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
        Self::new(aws_sdk_dynamodb::Client::new(sdk), table)
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        uuid: &str,
        e: SdkError<E, R>,
    ) -> StoreError {
        if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") {
            StoreError::Conflict { uuid: uuid.to_owned() }
        } else {
            StoreError::Dynamo { table: self.table.clone(), message: DisplayErrorContext(&e).to_string() }
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
        let mut loaded: Vec<Loaded> = items.into_iter().map(Loaded::parse).collect();
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
        Ok(out.item.map(Loaded::parse))
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
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "Version")
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
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "Version")
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
                .condition_expression("attribute_exists(#u) AND #v = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            None => update.condition_expression("attribute_exists(#u)"),
        };
        update.send().await.map_err(|e| self.err(uuid, e))?;
        Ok(())
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
            Err(e) => return Err(err(DisplayErrorContext(&e).to_string())),
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
            Err(e) => return Err(err(DisplayErrorContext(&e).to_string())),
        }
        wait_active(client, table).await.map_err(err)?;
    }
    Ok(created)
}

async fn wait_active(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), String> {
    for _ in 0..120 {
        let out =
            client.describe_table().table_name(table).send().await.map_err(|e| DisplayErrorContext(&e).to_string())?;
        if out.table.and_then(|t| t.table_status).is_some_and(|s| s.as_str() == "ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(format!("table {table} did not become ACTIVE within 60 s"))
}

/// An in-memory store for tests, with the same conditional-write rules.
#[derive(Debug, Clone, Default)]
pub struct MemoryMappingStore {
    items: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
}

impl MemoryMappingStore {
    /// Inserts a raw item as someone writing by hand would.
    pub fn put_raw(&self, uuid: &str, item: serde_json::Value) {
        self.lock().insert(uuid.to_owned(), item);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, serde_json::Value>> {
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn parse(value: &serde_json::Value) -> Loaded {
        match serde_json::from_value::<EventSourceMapping>(value.clone()) {
            Ok(mapping) => match mapping.validate() {
                Ok(()) => Loaded::Valid(mapping),
                Err(error) => Loaded::Invalid { mapping, error },
            },
            Err(e) => Loaded::Malformed {
                uuid: value.get("UUID").and_then(|v| v.as_str()).map(str::to_owned),
                state: value.get("State").and_then(|v| v.as_str()).map(str::to_owned),
                reason: e.to_string(),
            },
        }
    }

    fn stored_version(value: &serde_json::Value) -> u64 {
        value.get("Version").and_then(serde_json::Value::as_u64).unwrap_or(0)
    }
}

impl MappingStore for MemoryMappingStore {
    async fn list(&self) -> Result<Vec<Loaded>, StoreError> {
        Ok(self.lock().values().map(Self::parse).collect())
    }

    async fn get(&self, uuid: &str) -> Result<Option<Loaded>, StoreError> {
        Ok(self.lock().get(uuid).map(Self::parse))
    }

    async fn create(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        let mut items = self.lock();
        if items.contains_key(&mapping.uuid) {
            return Err(StoreError::Conflict { uuid: mapping.uuid.clone() });
        }
        let value = serde_json::to_value(mapping)
            .map_err(|e| StoreError::Encode { uuid: mapping.uuid.clone(), message: e.to_string() })?;
        items.insert(mapping.uuid.clone(), value);
        Ok(())
    }

    async fn replace(&self, mapping: &EventSourceMapping) -> Result<(), StoreError> {
        let mut items = self.lock();
        match items.get(&mapping.uuid) {
            Some(v) if Self::stored_version(v) == mapping.version.saturating_sub(1) => {}
            _ => {
                return Err(StoreError::Conflict { uuid: mapping.uuid.clone() });
            }
        }
        let value = serde_json::to_value(mapping)
            .map_err(|e| StoreError::Encode { uuid: mapping.uuid.clone(), message: e.to_string() })?;
        items.insert(mapping.uuid.clone(), value);
        Ok(())
    }

    async fn delete(&self, uuid: &str, version: u64) -> Result<(), StoreError> {
        let mut items = self.lock();
        match items.get(uuid) {
            Some(v) if Self::stored_version(v) == version => {
                items.remove(uuid);
                Ok(())
            }
            _ => Err(StoreError::Conflict { uuid: uuid.to_owned() }),
        }
    }

    async fn set_status(&self, uuid: &str, expected_version: Option<u64>, status: &Status) -> Result<(), StoreError> {
        let mut items = self.lock();
        let Some(item) = items.get_mut(uuid) else {
            return Err(StoreError::Conflict { uuid: uuid.to_owned() });
        };
        let version = Self::stored_version(item);
        if expected_version.is_some_and(|v| v != version) {
            return Err(StoreError::Conflict { uuid: uuid.to_owned() });
        }
        if let Some(obj) = item.as_object_mut() {
            obj.insert("State".into(), status.state.as_str().into());
            obj.insert("StateTransitionReason".into(), status.reason.clone().into());
            obj.insert("LastProcessingResult".into(), status.last_processing_result.clone().into());
            obj.insert("LastModified".into(), now_epoch_seconds().into());
            obj.insert("Version".into(), (version + 1).into());
        }
        Ok(())
    }
}
