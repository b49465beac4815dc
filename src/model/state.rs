//! A mapping's lifecycle: the states the Lambda API names and the one transition table that both
//! the API (user actions) and the pollers (settling transitional states) follow.
//!
//! | state | `update` (enabled?) | `delete` | a poller |
//! |---|---|---|---|
//! | `Creating` | `Creating` / `Disabling` | removed at once | consumes, writes `Enabled` |
//! | `Enabling` | `Enabling` / `Disabling` | `Deleting` | consumes, writes `Enabled` |
//! | `Enabled` | `Updating` / `Disabling` | `Deleting` | consumes |
//! | `Updating` | `Updating` / `Disabling` | `Deleting` | consumes, writes `Enabled` |
//! | `Disabling` | `Enabling` (true) / `Disabling` | `Deleting` | stops, writes `Disabled` |
//! | `Disabled` | `Enabling` (true) / `Disabled` | `Deleting` | stops |
//! | `Deleting` | conflict | conflict | stops, removes the item |
//!
//! AWS refuses to update a `Creating` mapping or delete an `Updating` one until its own poller has
//! settled it. kafka-esm accepts both: its pollers may not be running yet (a mapping made by
//! mistake must be fixable or removable before the first poller starts), and every write is
//! conditional on the item's `Version`, so a poller settling the state concurrently loses its
//! write and reads the user's change at its next refresh. A `Creating` mapping is deleted at once
//! (its item removed) rather than marked `Deleting`, since no poller may ever come to finish it.

use serde::{Deserialize, Serialize};

/// Lifecycle states, as the Lambda API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    Creating,
    Enabling,
    Enabled,
    Disabling,
    Disabled,
    Updating,
    Deleting,
}

/// What a poller does with a mapping in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Run its consumer; write `then` as the new state when given.
    Consume { then: Option<State> },
    /// Stop its consumer; write `then` when given.
    Stop { then: Option<State> },
    /// Stop its consumer, hand its partitions over, remove the item and its leases.
    Remove,
}

/// A user action that the state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "The operation cannot be performed at this time. The event source mapping is currently in the {} state.",
    .0.as_str()
)]
pub struct StateConflict(pub State);

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Enabling => "Enabling",
            Self::Enabled => "Enabled",
            Self::Disabling => "Disabling",
            Self::Disabled => "Disabled",
            Self::Updating => "Updating",
            Self::Deleting => "Deleting",
        }
    }

    /// The state after `UpdateEventSourceMapping`; `enabled` is its `Enabled` parameter.
    ///
    /// # Errors
    /// The mapping is being deleted.
    pub const fn after_update(self, enabled: Option<bool>) -> Result<Self, StateConflict> {
        Ok(match (self, enabled) {
            (Self::Deleting, _) => return Err(StateConflict(self)),
            (Self::Disabled, Some(true)) | (Self::Disabling, Some(true)) => Self::Enabling,
            (Self::Disabled, _) => Self::Disabled,
            (_, Some(false)) | (Self::Disabling, _) => Self::Disabling,
            (Self::Enabled | Self::Updating, _) => Self::Updating,
            (Self::Creating, _) => Self::Creating,
            (Self::Enabling, _) => Self::Enabling,
        })
    }

    /// The state after `DeleteEventSourceMapping`.
    ///
    /// # Errors
    /// It is already being deleted.
    pub const fn after_delete(self) -> Result<Self, StateConflict> {
        match self {
            Self::Deleting => Err(StateConflict(self)),
            _ => Ok(Self::Deleting),
        }
    }

    /// What a poller makes of a mapping in this state.
    pub const fn settle(self) -> Settle {
        match self {
            Self::Creating | Self::Enabling | Self::Updating => Settle::Consume { then: Some(Self::Enabled) },
            Self::Enabled => Settle::Consume { then: None },
            Self::Disabling => Settle::Stop { then: Some(Self::Disabled) },
            Self::Disabled => Settle::Stop { then: None },
            Self::Deleting => Settle::Remove,
        }
    }

    /// Whether a poller consumes a mapping in this state.
    pub const fn consumes(self) -> bool {
        matches!(self.settle(), Settle::Consume { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 7] = [
        State::Creating,
        State::Enabling,
        State::Enabled,
        State::Disabling,
        State::Disabled,
        State::Updating,
        State::Deleting,
    ];

    #[test]
    fn the_table_in_the_module_doc() {
        use State::*;
        let update = |s: State, e| s.after_update(e).map_err(|c| c.0);
        assert_eq!(update(Creating, None), Ok(Creating), "a mapping no poller picked up can be changed");
        assert_eq!(update(Creating, Some(false)), Ok(Disabling));
        assert_eq!(update(Enabled, None), Ok(Updating));
        assert_eq!(update(Enabled, Some(true)), Ok(Updating));
        assert_eq!(update(Enabled, Some(false)), Ok(Disabling));
        assert_eq!(update(Updating, None), Ok(Updating));
        assert_eq!(update(Disabled, None), Ok(Disabled));
        assert_eq!(update(Disabled, Some(true)), Ok(Enabling));
        assert_eq!(update(Disabling, Some(true)), Ok(Enabling));
        assert_eq!(update(Disabling, None), Ok(Disabling));
        assert_eq!(update(Enabling, None), Ok(Enabling));
        assert_eq!(update(Enabling, Some(false)), Ok(Disabling));
        assert_eq!(update(Deleting, None), Err(Deleting));
        for s in ALL {
            assert_eq!(s.after_delete().is_ok(), s != Deleting, "{s:?}");
        }
        let conflict = Deleting.after_delete().unwrap_err().to_string();
        assert!(conflict.ends_with("currently in the Deleting state."), "{conflict}");
    }

    #[test]
    fn every_transitional_state_settles_to_an_end_state() {
        for s in ALL {
            match s.settle() {
                Settle::Consume { then } => assert!(then.is_none_or(|t| t == State::Enabled), "{s:?}"),
                Settle::Stop { then } => assert!(then.is_none_or(|t| t == State::Disabled), "{s:?}"),
                Settle::Remove => assert_eq!(s, State::Deleting),
            }
            // Settling never leaves a transitional state in place.
            if let Settle::Consume { then: Some(t) } | Settle::Stop { then: Some(t) } = s.settle() {
                assert_eq!(
                    t.settle(),
                    if t == State::Enabled { Settle::Consume { then: None } } else { Settle::Stop { then: None } }
                );
            }
        }
    }
}
