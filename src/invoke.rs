//! Invoking the target function: synchronously (`RequestResponse`), once per attempt.
//!
//! [`LambdaInvoker`] talks to the Lambda Invoke API through aws-sdk-lambda with the SDK's own
//! retries switched off, so a batch is only ever re-sent by the poll loop's explicit retry. What
//! the answer means (success, function error, throttling, missing function) is decided here;
//! what to do about it is [`crate::error::retry_decision`]'s job.

use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;

/// Lambda's maximum function timeout (15 min) plus slack: a synchronous invoke may legitimately
/// take that long, and the mapping's function timeout must be at most 14 minutes anyway.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60 + 30);

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
    /// No answer: connection refused, timeout, broken response.
    #[error("could not reach the Lambda Invoke API: {message}")]
    Transport { message: String },
}

/// Sends one payload to one function.
pub trait Invoker: Send + Sync + 'static {
    /// Invokes `function` (name or ARN, possibly qualified) synchronously with `payload`.
    fn invoke(&self, function: &str, payload: Bytes)
    -> impl Future<Output = Result<InvokeOutcome, InvokeError>> + Send;
}

/// The real Invoke API.
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    /// A client with SDK-level retries off and a timeout long enough for any function.
    pub fn new(sdk: &SdkConfig) -> Self {
        let config = aws_sdk_lambda::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(INVOKE_TIMEOUT)
                    .build(),
            )
            .build();
        Self { client: aws_sdk_lambda::Client::from_conf(config) }
    }

    pub const fn client(&self) -> &aws_sdk_lambda::Client {
        &self.client
    }
}

impl Invoker for LambdaInvoker {
    async fn invoke(&self, function: &str, payload: Bytes) -> Result<InvokeOutcome, InvokeError> {
        let result = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::from_maybe_shared(payload))
            .send()
            .await;
        match result {
            Ok(out) => {
                let body = out.payload.map(|b| Bytes::from(b.into_inner())).unwrap_or_default();
                Ok(match out.function_error {
                    Some(kind) => InvokeOutcome::FunctionError { kind, body },
                    None => InvokeOutcome::Success { body },
                })
            }
            Err(SdkError::ServiceError(ctx)) => {
                let status = ctx.raw().status().as_u16();
                let err = ctx.into_err();
                Err(classify(function, status, &err))
            }
            Err(other) => Err(InvokeError::Transport { message: DisplayErrorContext(&other).to_string() }),
        }
    }
}

fn classify(function: &str, status: u16, err: &SdkInvokeError) -> InvokeError {
    let message = err.message().unwrap_or("no message").to_owned();
    let code = err.code().unwrap_or("Unknown").to_owned();
    match err {
        SdkInvokeError::ResourceNotFoundException(_) => {
            InvokeError::FunctionNotFound { function: function.to_owned(), message }
        }
        SdkInvokeError::TooManyRequestsException(_) => InvokeError::Throttled { message },
        SdkInvokeError::RequestTooLargeException(_) => InvokeError::RequestTooLarge { message },
        _ => match status {
            404 => InvokeError::FunctionNotFound { function: function.to_owned(), message },
            429 => InvokeError::Throttled { message },
            413 => InvokeError::RequestTooLarge { message },
            403 => InvokeError::AccessDenied { function: function.to_owned(), message },
            400..=499 => InvokeError::InvalidRequest { status, code, message },
            _ => InvokeError::Service { status, message: format!("{code}: {message}") },
        },
    }
}
