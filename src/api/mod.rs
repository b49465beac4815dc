//! The EventSourceMapping API (`CreateEventSourceMapping`, `List…`, `Get…`, `Update…`,
//! `Delete…`, and the tagging operations) over the mapping store, with AWS's validation, state rules and error codes: one file
//! per operation.
//!
//! The `esm` CLI and the CloudFormation custom resource are thin shells over these functions.

use std::future::Future;

use serde_json::Value;

use crate::model::mapping::EventSourceMapping;
use crate::model::state::StateConflict;
use crate::model::store::{Loaded, MappingStore, StoreError};
use crate::model::validate::InvalidMapping;

mod create;
mod delete;
mod list;
mod tags;
mod update;

pub use create::{CreateRequest, create};
pub use delete::delete;
pub use list::{ListPage, list};
pub use tags::{list_tags, tag_resource, untag_resource};
pub use update::{UpdateRequest, update};

/// An API error with the AWS error code the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { code: "InvalidParameterValueException", message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self { code: "ResourceNotFoundException", message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self { code: "ResourceConflictException", message: message.into() }
    }

    fn service(e: &StoreError) -> Self {
        match e {
            StoreError::Conflict { uuid } => {
                Self::conflict(format!("The event source mapping {uuid} was modified concurrently. Retry the request."))
            }
            other => Self { code: "ServiceException", message: other.to_string() },
        }
    }
}

impl From<InvalidMapping> for ApiError {
    fn from(e: InvalidMapping) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<StateConflict> for ApiError {
    fn from(e: StateConflict) -> Self {
        Self::conflict(e.to_string())
    }
}

/// Turns `--function-name` (name, partial or full ARN, with or without qualifier) into the
/// function's ARN, checking that it exists.
pub trait FunctionResolver: Send + Sync {
    fn resolve(&self, function_name: &str) -> impl Future<Output = Result<String, ApiError>> + Send;
}

/// One item of the mappings table as `get` and `list` show it: a mapping, or an item that is not
/// one, shown with what is wrong so it can be found and deleted.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Mapping(Box<EventSourceMapping>),
    Unreadable {
        uuid: String,
        /// As stored (a poller sets it to `Disabled` once it has seen the item).
        state: Option<String>,
        /// `PROBLEM: <field>: <what is wrong>`.
        problem: String,
    },
}

impl Item {
    fn from_loaded(loaded: Loaded) -> Option<Self> {
        let problem = loaded.problem();
        match loaded {
            Loaded::Valid(m) | Loaded::Invalid { mapping: m, .. } => Some(Self::Mapping(Box::new(m))),
            Loaded::Malformed { uuid: Some(uuid), state, .. } => {
                Some(Self::Unreadable { uuid, state, problem: problem.unwrap_or_default() })
            }
            Loaded::Malformed { uuid: None, .. } => None,
        }
    }

    pub fn uuid(&self) -> &str {
        match self {
            Self::Mapping(m) => &m.uuid,
            Self::Unreadable { uuid, .. } => uuid,
        }
    }

    /// The fields AWS shows for a mapping; for an unreadable item, the ones it still has, with
    /// the problem as `LastProcessingResult` and `ESM_CONFIG_NOT_VALID` as the reason.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Mapping(m) => serde_json::to_value(m).unwrap_or_default(),
            Self::Unreadable { uuid, state, problem } => serde_json::json!({
                "UUID": uuid,
                "LastProcessingResult": problem,
                "State": state.as_deref().unwrap_or("Disabled"),
                "StateTransitionReason": "ESM_CONFIG_NOT_VALID",
            }),
        }
    }
}

fn not_found(uuid: &str) -> ApiError {
    ApiError::not_found(format!(
        "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})"
    ))
}

/// Loads a mapping to change it; an unreadable item can only be deleted.
async fn load<S: MappingStore>(store: &S, uuid: &str) -> Result<EventSourceMapping, ApiError> {
    match store.get(uuid).await.map_err(|e| ApiError::service(&e))? {
        Some(Loaded::Valid(m) | Loaded::Invalid { mapping: m, .. }) => Ok(m),
        Some(malformed @ Loaded::Malformed { .. }) => Err(ApiError::invalid(format!(
            "The stored item for {uuid} is not a valid mapping ({}); delete it, or fix it with the DynamoDB API.",
            malformed.problem().unwrap_or_default()
        ))),
        None => Err(not_found(uuid)),
    }
}

/// `GetEventSourceMapping`.
///
/// # Errors
/// `ResourceNotFoundException`.
pub async fn get<S: MappingStore>(store: &S, uuid: &str) -> Result<Item, ApiError> {
    store.get(uuid).await.map_err(|e| ApiError::service(&e))?.and_then(Item::from_loaded).ok_or_else(|| not_found(uuid))
}
