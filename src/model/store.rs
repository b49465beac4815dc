//! The mapping-store seam: every item of the mappings table, each parsed on its own, and the
//! conditional writes the API and the pollers make. DynamoDB in [`crate::aws::mappings`], a map
//! in the test kit.

use std::future::Future;

use super::mapping::{EventSourceMapping, State};
use super::validate::InvalidMapping;

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
    /// Not a mapping at all (wrong types, unknown or missing fields). `field` names the
    /// attribute at fault when it is known.
    Malformed {
        uuid: Option<String>,
        state: Option<String>,
        /// The stored `Version` (0 when missing or not a number).
        version: u64,
        field: Option<String>,
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

    /// Parses one item, given as JSON (every store converts its items to JSON first, so every
    /// store parses and reports problems the same way).
    pub fn from_json(item: serde_json::Value) -> Self {
        let text = |key: &str| item.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
        let (uuid, state) = (text("UUID"), text("State"));
        let version = item.get("Version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        match serde_path_to_error::deserialize::<_, EventSourceMapping>(&item) {
            Ok(mapping) => match mapping.validate() {
                Ok(()) => Self::Valid(mapping),
                Err(error) => Self::Invalid { mapping, error },
            },
            Err(e) => {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                Self::Malformed { uuid, state, version, field, reason: e.into_inner().to_string() }
            }
        }
    }

    /// What `LastProcessingResult` says about an item that is not a valid mapping:
    /// `PROBLEM: <field>: <what is wrong>`.
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::Malformed { field: Some(field), reason, .. } => Some(format!("PROBLEM: {field}: {reason}")),
            Self::Malformed { field: None, reason, .. } => Some(format!("PROBLEM: malformed mapping item: {reason}")),
            Self::Invalid { error, .. } => Some(format!("PROBLEM: {error}")),
            Self::Valid(_) => None,
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
    /// Sets `LastProcessingResult` alone, whatever the version and without bumping it (it is
    /// a report, not configuration: a user's concurrent change must not fail because of it).
    /// No error if the item is gone.
    fn set_processing_result(&self, uuid: &str, result: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
