//! What errors mean for a mapping: the one place that decides whether to retry or to stop the
//! mapping's consumer, and with which `StateTransitionReason`.

use crate::invoke::InvokeError;
use crate::kafka::KafkaClientError;

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
/// always retried (AWS's default: retry the batch until it succeeds).
pub const fn invoke_disposition(error: &InvokeError) -> Disposition {
    match error {
        // The function is gone or the poller may not call it: retrying cannot help.
        InvokeError::FunctionNotFound { .. } | InvokeError::AccessDenied { .. } => {
            Disposition::Stop(StopReason::FunctionConfigNotValid)
        }
        InvokeError::Throttled { .. }
        | InvokeError::Service { .. }
        | InvokeError::Transport { .. }
        // Our size accounting keeps requests under the limit; if a proxy has a lower one, the
        // batch is retried (never dropped) and the error says why.
        | InvokeError::RequestTooLarge { .. }
        | InvokeError::InvalidRequest { .. } => Disposition::Retry,
    }
}

/// The decision for a Kafka client failure.
pub const fn kafka_disposition(error: &KafkaClientError) -> Disposition {
    match error {
        KafkaClientError::Authorization { .. } => Disposition::Stop(StopReason::EventSourceAuthzError),
        KafkaClientError::Authentication { .. } | KafkaClientError::TlsVerification { .. } => {
            Disposition::Stop(StopReason::EventSourceAuthnError)
        }
        KafkaClientError::Config { .. } => Disposition::Stop(StopReason::EsmConfigNotValid),
        // Brokers come back, topics get created: wait it out with backoff.
        KafkaClientError::Unreachable { .. }
        | KafkaClientError::TopicNotFound { .. }
        | KafkaClientError::Other { .. } => Disposition::Retry,
    }
}

/// Library-level error for the binaries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaClientError),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error(transparent)]
    Mapping(#[from] crate::mapping::InvalidMapping),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
