//! Invoking the target function: the invoker seam and what an answer can be. The Lambda Invoke
//! API is [`crate::aws::lambda::LambdaInvoker`]; what an outcome means for the batch is the
//! partition worker's decision ([`super::policy`] for Invoke API errors).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// The function ran (status 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// It returned normally; `body` is its response (used for partial batch responses).
    Success { body: Bytes },
    /// It failed: `X-Amz-Function-Error` was `Unhandled` or `Handled`; `body` is
    /// `{"errorType","errorMessage",…}`.
    FunctionError { kind: String, body: Bytes },
}

/// The Invoke API refused or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    #[error("function {function} does not exist (ResourceNotFoundException): {message}")]
    FunctionNotFound { function: String, message: String },
    #[error("invoke throttled (TooManyRequestsException): {message}")]
    Throttled { message: String },
    #[error(
        "not allowed to invoke {function} (AccessDeniedException): {message}; grant lambda:InvokeFunction on it to the poller's role"
    )]
    AccessDenied { function: String, message: String },
    #[error("request too large (RequestEntityTooLargeException): {message}")]
    RequestTooLarge { message: String },
    #[error("invalid request ({code}, HTTP {status}): {message}")]
    InvalidRequest { status: u16, code: String, message: String },
    /// 5xx from the service, or an emulator's way of reporting a function error.
    #[error("Lambda service error (HTTP {status}): {message}")]
    Service { status: u16, message: String },
    /// No answer, and the function cannot be running this batch: the request never left
    /// (connection refused, connect timeout), or the answer came after any run had ended.
    #[error("could not reach the Lambda Invoke API: {message}")]
    Transport { message: String },
    /// The request may have reached the function and the connection broke before the answer
    /// (reset, broken pipe): the function may still be running this batch, so it is not sent
    /// again until it cannot be (the function's timeout, at most `ESM_UNANSWERED_INVOKE_WAIT_MS`).
    #[error(
        "no answer from the Lambda Invoke API after the request was sent (the function may still be running): {message}"
    )]
    Unanswered { message: String },
}

/// Sends one payload to one function.
pub trait Invoker: Send + Sync + 'static {
    /// Invokes `function` (name or ARN, possibly qualified) synchronously with `payload`.
    fn invoke(&self, function: &str, payload: Bytes)
    -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send;

    /// The longest `function` runs one invoke (its configured timeout), or `None` when that
    /// cannot be read.
    fn timeout(&self, function: &str) -> impl Future<Output = Option<Duration>> + Send {
        let _ = function;
        std::future::ready(None)
    }
}
