//! The mappings table in memory, with DynamoDB's conditional-write rules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::clock::now_epoch_seconds;
use crate::model::mapping::EventSourceMapping;
use crate::model::store::{Loaded, MappingStore, Status, StoreError};

/// The mappings table in memory (missing `Version` counts as 0, as in the DynamoDB store).
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
        Loaded::from_json(value.clone())
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

    async fn set_processing_result(&self, uuid: &str, result: &str) -> Result<(), StoreError> {
        if let Some(obj) = self.lock().get_mut(uuid).and_then(serde_json::Value::as_object_mut) {
            obj.insert("LastProcessingResult".into(), result.into());
        }
        Ok(())
    }
}
