//! What errors mean for a mapping: retry (after a backoff) or stop the mapping's consumer with
//! an AWS `StateTransitionReason`. Each adapter classifies its own errors into a [`Disposition`]
//! (the Kafka client, the cluster resolver, the invoker); this module holds the vocabulary and the
//! invoke decisions.

use super::invoke::InvokeError;

/// Why the poller stopped a mapping's consumer: the codes AWS puts in `StateTransitionReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EsmConfigNotValid,
    EventSourceAuthnError,
    EventSourceAuthzError,
    FunctionConfigNotValid,
}

impl StopReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EsmConfigNotValid => "ESM_CONFIG_NOT_VALID",
            Self::EventSourceAuthnError => "EVENT_SOURCE_AUTHN_ERROR",
            Self::EventSourceAuthzError => "EVENT_SOURCE_AUTHZ_ERROR",
            Self::FunctionConfigNotValid => "FUNCTION_CONFIG_NOT_VALID",
        }
    }
}

/// Retry (after a backoff), or stop the mapping's consumer until someone fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Retry,
    Stop(StopReason),
}

/// The decision for a failed invoke. Function errors are not errors of the Invoke API and are
/// handled by the batch's retry policy, never here.
pub const fn invoke_disposition(error: &InvokeError) -> Disposition {
    match error {
        // The function is gone or the poller may not call it: retrying cannot help.
        InvokeError::FunctionNotFound { .. } | InvokeError::AccessDenied { .. } => {
            Disposition::Stop(StopReason::FunctionConfigNotValid)
        }
        InvokeError::Throttled { .. }
        | InvokeError::Service { .. }
        | InvokeError::Transport { .. }
        | InvokeError::Unanswered { .. }
        // Our size accounting keeps requests under the limit; if a proxy has a lower one, the
        // batch is retried (never dropped) and the error says why.
        | InvokeError::RequestTooLarge { .. }
        | InvokeError::InvalidRequest { .. } => Disposition::Retry,
    }
}
