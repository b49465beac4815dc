//! `TagResource`, `UntagResource`, `ListTags` for event source mappings, addressed by their ARN
//! (`arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID`), with the tag rules AWS applies.
//! Tags live on the mapping item (`Tags`); changing them does not touch the mapping's state or
//! `LastModified`, and pollers ignore them.

use std::collections::BTreeMap;

use super::{ApiError, load, not_found};
use crate::model::store::MappingStore;

/// Tags per resource (AWS's tagging limit).
pub const MAX_TAGS: usize = 50;
/// Tag key length in characters.
pub const MAX_KEY_LEN: usize = 128;
/// Tag value length in characters.
pub const MAX_VALUE_LEN: usize = 256;
/// The prefix AWS reserves for its own tags: it cannot be added or removed.
const RESERVED_PREFIX: &str = "aws:";

/// The mapping UUID an ARN names.
///
/// # Errors
/// `InvalidParameterValueException` when the ARN is not an event source mapping's.
pub fn uuid_of_arn(arn: &str) -> Result<&str, ApiError> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, "lambda", region, account, "event-source-mapping", uuid]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && uuid::Uuid::parse_str(uuid).is_ok() =>
        {
            Ok(uuid)
        }
        ["arn", _, "lambda", _, _, "function", ..] => Err(ApiError::invalid(format!(
            "{arn} is a function: kafka-esm tags event source mappings only (tag functions with `aws lambda tag-resource`)."
        ))),
        _ => Err(ApiError::invalid(format!(
            "Resource {arn} is not an event source mapping ARN (arn:aws:lambda:REGION:ACCOUNT:event-source-mapping:UUID)."
        ))),
    }
}

fn is_allowed_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

fn is_reserved(key: &str) -> bool {
    key.get(..RESERVED_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
}

/// Checks tags to add against AWS's rules: 1–128 character keys, values up to 256, letters,
/// digits, spaces and `_ . : / = + - @` only, no `aws:` prefix.
///
/// # Errors
/// `InvalidParameterValueException` naming the tag and the rule.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in tags {
        let key_len = key.chars().count();
        if !(1..=MAX_KEY_LEN).contains(&key_len) {
            return Err(ApiError::invalid(format!(
                "Tag key '{key}' must be 1 to {MAX_KEY_LEN} characters long (it has {key_len})."
            )));
        }
        if value.chars().count() > MAX_VALUE_LEN {
            return Err(ApiError::invalid(format!(
                "The value of tag '{key}' must be at most {MAX_VALUE_LEN} characters long."
            )));
        }
        if is_reserved(key) {
            return Err(ApiError::invalid(format!("Tag key '{key}': the 'aws:' prefix is reserved for AWS use.")));
        }
        if let Some(bad) = key.chars().chain(value.chars()).find(|&c| !is_allowed_char(c)) {
            return Err(ApiError::invalid(format!(
                "Tag '{key}' contains '{bad}': tags may contain letters, digits, spaces and _ . : / = + - @ only."
            )));
        }
    }
    Ok(())
}

fn check_count(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "An event source mapping can have at most {MAX_TAGS} tags; this request would leave {}.",
            tags.len()
        )));
    }
    Ok(())
}

/// Checks the tags a new mapping is created with.
///
/// # Errors
/// As [`validate_tags`], and more than [`MAX_TAGS`].
pub fn validate_new(tags: &BTreeMap<String, String>) -> Result<(), ApiError> {
    validate_tags(tags)?;
    check_count(tags)
}

/// Loads the mapping an ARN names, checking that the ARN is that mapping's (region and account
/// included).
async fn load_by_arn<S: MappingStore>(
    store: &S,
    arn: &str,
) -> Result<crate::model::mapping::EventSourceMapping, ApiError> {
    let uuid = uuid_of_arn(arn)?;
    let mapping = load(store, uuid).await?;
    match &mapping.event_source_mapping_arn {
        Some(stored) if stored != arn => Err(not_found(uuid)),
        _ => Ok(mapping),
    }
}

/// `TagResource`: adds or overwrites tags.
///
/// # Errors
/// `InvalidParameterValueException` (bad ARN or tag), `ResourceNotFoundException`,
/// `ResourceConflictException` when the mapping changed concurrently.
pub async fn tag_resource<S: MappingStore>(
    store: &S,
    arn: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    validate_tags(tags)?;
    let mut mapping = load_by_arn(store, arn).await?;
    let mut all = mapping.tags.take().unwrap_or_default();
    all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    check_count(&all)?;
    mapping.tags = Some(all);
    mapping.version += 1;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))
}

/// `UntagResource`: removes tags; keys that are not there are ignored, as AWS does.
///
/// # Errors
/// `InvalidParameterValueException` (bad ARN, an `aws:` key), `ResourceNotFoundException`,
/// `ResourceConflictException` when the mapping changed concurrently.
pub async fn untag_resource<S: MappingStore>(store: &S, arn: &str, keys: &[String]) -> Result<(), ApiError> {
    if let Some(key) = keys.iter().find(|k| is_reserved(k)) {
        return Err(ApiError::invalid(format!("Tag key '{key}': the 'aws:' prefix is reserved for AWS use.")));
    }
    let mut mapping = load_by_arn(store, arn).await?;
    let mut all = mapping.tags.take().unwrap_or_default();
    for key in keys {
        all.remove(key);
    }
    mapping.tags = (!all.is_empty()).then_some(all);
    mapping.version += 1;
    store.replace(&mapping).await.map_err(|e| ApiError::service(&e))
}

/// `ListTags`.
///
/// # Errors
/// `InvalidParameterValueException` (bad ARN), `ResourceNotFoundException`.
pub async fn list_tags<S: MappingStore>(store: &S, arn: &str) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(load_by_arn(store, arn).await?.tags.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn aws_tag_rules() {
        assert!(validate_new(&tags(&[("team", "payments"), ("cost-center", "a/b:c=d+e@f_g.h")])).is_ok());
        assert!(validate_new(&tags(&[("", "x")])).is_err());
        assert!(validate_new(&tags(&[(&"k".repeat(129), "x")])).is_err());
        assert!(validate_new(&tags(&[(&"k".repeat(128), &"v".repeat(256))])).is_ok());
        assert!(validate_new(&tags(&[("k", &"v".repeat(257))])).is_err());
        assert!(validate_new(&tags(&[("AWS:owner", "x")])).is_err());
        assert!(validate_new(&tags(&[("k", "semi;colon")])).is_err());
        let fifty_one: BTreeMap<String, String> = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_new(&fifty_one).is_err());
    }

    #[test]
    fn only_mapping_arns() {
        let uuid = "6d9bce8e-836b-442c-8070-74e77903c815";
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}");
        assert_eq!(uuid_of_arn(&arn).unwrap(), uuid);
        assert!(uuid_of_arn("arn:aws:lambda:us-east-1:123456789012:function:f").is_err());
        assert!(uuid_of_arn("arn:aws:lambda:us-east-1:123456789012:event-source-mapping:nope").is_err());
        assert!(uuid_of_arn(uuid).is_err());
    }
}
