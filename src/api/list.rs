//! `ListEventSourceMappings`.

use super::{ApiError, Item};
use crate::model::store::MappingStore;

/// A page of `ListEventSourceMappings`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub mappings: Vec<Item>,
    /// Pass back as `--starting-token` for the next page.
    pub next_marker: Option<String>,
}

/// `ListEventSourceMappings`, filtered by function and/or event source, paged by UUID.
///
/// # Errors
/// The store could not be read.
pub async fn list<S: MappingStore>(
    store: &S,
    function_name: Option<&str>,
    event_source_arn: Option<&str>,
    marker: Option<&str>,
    max_items: Option<usize>,
) -> Result<ListPage, ApiError> {
    let filtering = function_name.is_some() || event_source_arn.is_some();
    let mut mappings: Vec<Item> = store
        .list()
        .await
        .map_err(|e| ApiError::service(&e))?
        .into_iter()
        .filter_map(Item::from_loaded)
        .filter(|item| match item {
            Item::Mapping(m) => {
                function_name.is_none_or(|f| function_matches(&m.function_arn, f))
                    && event_source_arn.is_none_or(|a| m.event_source_arn.as_deref() == Some(a))
            }
            // Unreadable items have no function or source to match: shown only unfiltered.
            Item::Unreadable { .. } => !filtering,
        })
        .filter(|item| marker.is_none_or(|after| item.uuid() > after))
        .collect();
    mappings.sort_by(|a, b| a.uuid().cmp(b.uuid()));
    let next_marker = match max_items {
        Some(max) if mappings.len() > max => {
            mappings.truncate(max);
            mappings.last().map(|m| m.uuid().to_owned())
        }
        _ => None,
    };
    Ok(ListPage { mappings, next_marker })
}

/// A function filter matches by full ARN, unqualified ARN, or name.
fn function_matches(function_arn: &str, filter: &str) -> bool {
    if function_arn == filter {
        return true;
    }
    let name = function_arn.split(':').nth(6).unwrap_or(function_arn);
    let filter_name = if filter.starts_with("arn:") {
        filter.split(':').nth(6).unwrap_or(filter)
    } else {
        filter.split(':').next().unwrap_or(filter)
    };
    name == filter_name
        && (filter.split(':').count() <= 2 || !filter.starts_with("arn:") || filter.split(':').count() == 7)
}
