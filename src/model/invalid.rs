//! A mapping setting that breaks a rule: the error every validation in [`super`] returns.

/// A configuration problem, naming the field and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidMapping {
    pub field: &'static str,
    pub message: String,
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> InvalidMapping {
    InvalidMapping { field, message: message.into() }
}
