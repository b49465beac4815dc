//! `DeleteEventSourceMapping`.

use super::{ApiError, Item, load, not_found};
use crate::clock::now_epoch_seconds;
use crate::model::state::State;
use crate::model::store::{Loaded, MappingStore};

/// `DeleteEventSourceMapping`: marks the mapping `Deleting`; a poller stops its consumer,
/// releases its partitions and removes the item. A mapping still `Creating` (no poller has
/// settled it; one may never run) and an item that is not a valid mapping (nothing consumes it)
/// are removed at once: a poller that had started on one stops when its item is gone, and the
/// leases it left are cleaned up.
///
/// # Errors
/// `ResourceNotFoundException`, `ResourceConflictException` while it is already being deleted.
pub async fn delete<S: MappingStore>(store: &S, uuid: &str) -> Result<Item, ApiError> {
    if let Some(malformed @ Loaded::Malformed { version, .. }) =
        store.get(uuid).await.map_err(|e| ApiError::service(&e))?
    {
        store.delete(uuid, version).await.map_err(|e| ApiError::service(&e))?;
        return Item::from_loaded(malformed).ok_or_else(|| not_found(uuid));
    }
    let mut mapping = load(store, uuid).await?;
    if mapping.state == State::Creating {
        store.delete(uuid, mapping.version).await.map_err(|e| ApiError::service(&e))?;
        mapping.state = State::Deleting;
        mapping.state_transition_reason = Some("USER_INITIATED".to_owned());
        return Ok(Item::Mapping(Box::new(mapping)));
    }
    mapping.state = mapping.state.after_delete()?;
    debug_assert_eq!(mapping.state, State::Deleting);
    mapping.state_transition_reason = Some("USER_INITIATED".to_owned());
    mapping.last_modified = now_epoch_seconds();
    mapping.version += 1;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))?;
    Ok(Item::Mapping(Box::new(mapping)))
}
