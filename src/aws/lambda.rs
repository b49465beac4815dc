//! Lambda: the Invoke API for target functions ([`LambdaInvoker`]), `GetFunction` for the API's
//! function names ([`LambdaFunctionResolver`]), and asynchronous self-invokes that start more
//! pollers ([`SelfInvoke`]).
//!
//! The invoker has the SDK's own retries switched off, so a batch is only ever re-sent by the
//! partition worker's explicit retry; what each answer means (success, function error,
//! throttling, missing function) is decided here.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_http_client::pool::{Client as PooledClient, ConnectionPool};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;
use tracing::warn;

use crate::api::{ApiError, FunctionResolver};
use crate::delivery::invoke::{InvokeError, InvokeOutcome, Invoker};

/// Lambda's maximum function timeout (15 min) plus slack: a synchronous invoke may legitimately
/// take that long, and the mapping's function timeout must be at most 14 minutes anyway.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(15 * 60 + 30);

/// Idle time after which an Invoke connection sends TCP keep-alive probes (and between them).
/// A synchronous invoke sends nothing while the function runs, up to 15 minutes; a NAT gateway
/// drops a flow idle for 350 s, and the answer would then never arrive (review #19). Lambda's
/// Invoke documentation asks callers of long functions for keep-alive.
pub const INVOKE_KEEPALIVE: Duration = Duration::from_secs(60);

/// How long reading a function's timeout may take before the poller assumes the longest.
const TIMEOUT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The Invoke client's connections could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the Lambda Invoke client's connection pool: {0}")]
pub struct InvokeClientError(String);

/// The real Invoke API.
#[derive(Debug, Clone)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    /// A client with SDK-level retries off, a timeout long enough for any function, and TCP
    /// keep-alive ([`INVOKE_KEEPALIVE`]) on its connections. Like the SDK's default client it
    /// speaks TLS with rustls (aws-lc), verifies the endpoint against the system's roots (and
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR`), honours `HTTPS_PROXY`/`NO_PROXY`, and takes plain
    /// `http://` endpoints as given.
    ///
    /// # Errors
    /// The connection pool could not be built (it cannot with these settings).
    pub fn new(sdk: &SdkConfig) -> Result<Self, InvokeClientError> {
        let pool = ConnectionPool::builder()
            .tcp_keepalive(INVOKE_KEEPALIVE)
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https()
            .map_err(|e| InvokeClientError(e.to_string()))?;
        let http = PooledClient::new(&pool).map_err(|e| InvokeClientError(e.to_string()))?;
        let config = aws_sdk_lambda::config::Builder::from(sdk)
            .http_client(http)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(INVOKE_TIMEOUT)
                    .build(),
            )
            .build();
        Ok(Self { client: aws_sdk_lambda::Client::from_conf(config) })
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
            Err(other) => Err(unanswered(&other)),
        }
    }

    /// `GetFunction`'s `Configuration.Timeout` (GetFunction has its own request quota, unlike
    /// GetFunctionConfiguration, which shares the control plane's 15 per second).
    async fn timeout(&self, function: &str) -> Option<Duration> {
        let read = self.client.get_function().function_name(function).send();
        match tokio::time::timeout(TIMEOUT_LOOKUP_TIMEOUT, read).await {
            Ok(Ok(out)) => {
                let seconds = out.configuration.and_then(|c| c.timeout).and_then(|t| u64::try_from(t).ok());
                if seconds.is_none() {
                    warn!(function, "GetFunction returned no timeout; assuming ESM_UNANSWERED_INVOKE_WAIT_MS.");
                }
                seconds.map(Duration::from_secs)
            }
            Ok(Err(e)) => {
                warn!(function, error = %DisplayErrorContext(&e), "Cannot read the function's timeout (grant lambda:GetFunction on it to the poller's role); assuming ESM_UNANSWERED_INVOKE_WAIT_MS.");
                None
            }
            Err(_) => {
                warn!(function, "Reading the function's timeout timed out; assuming ESM_UNANSWERED_INVOKE_WAIT_MS.");
                None
            }
        }
    }
}

/// An invoke that got no answer, by whether the function may still be running it (review #19).
///
/// The connection pool attaches the connection's metadata to a failure on an established
/// connection, to which the request may have been written: the function may be running it, and
/// it must not be sent again at once. A failure without it happened while connecting (DNS, a
/// refused or timed-out connect, a TLS handshake the endpoint's certificate failed), so nothing
/// was sent. A request that could not be built (`ConstructionFailure`) was not sent either; one
/// that ran into the operation timeout (longer than any function may run) or was answered
/// (`ResponseError`) cannot still be running.
fn unanswered<R>(error: &SdkError<SdkInvokeError, R>) -> InvokeError
where
    R: std::fmt::Debug,
{
    let message = DisplayErrorContext(error).to_string();
    let may_still_run = match error {
        SdkError::DispatchFailure(failure) => {
            failure.as_connector_error().is_some_and(|e| e.connection_metadata().is_some())
        }
        _ => false,
    };
    if may_still_run { InvokeError::Unanswered { message } } else { InvokeError::Transport { message } }
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

/// Resolves through `lambda:GetFunction`.
#[derive(Debug, Clone)]
pub struct LambdaFunctionResolver {
    client: aws_sdk_lambda::Client,
}

impl LambdaFunctionResolver {
    pub const fn new(client: aws_sdk_lambda::Client) -> Self {
        Self { client }
    }
}

impl FunctionResolver for LambdaFunctionResolver {
    async fn resolve(&self, function_name: &str) -> Result<String, ApiError> {
        match self.client.get_function().function_name(function_name).send().await {
            Ok(out) => {
                let arn = out
                    .configuration()
                    .and_then(|c| c.function_arn())
                    .ok_or_else(|| ApiError::invalid(format!("GetFunction returned no ARN for {function_name}")))?;
                // Keep a version or alias the user asked for.
                Ok(match qualifier(function_name) {
                    Some(q) if !arn.ends_with(&format!(":{q}")) => format!("{arn}:{q}"),
                    _ => arn.to_owned(),
                })
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                Err(ApiError::not_found(format!("Function not found: {function_name}")))
            }
            // The Lambda API could not answer (an emulator without GetFunction, no permission,
            // unreachable): keep the name as given; the poller reports a missing function when
            // it first invokes it (FUNCTION_CONFIG_NOT_VALID).
            Err(e) => {
                let why = super::error_line(&e);
                tracing::warn!(
                    function = function_name,
                    "lambda:GetFunction is not available ({why}); storing the function name as given."
                );
                Ok(function_name.to_owned())
            }
        }
    }
}

fn qualifier(function_name: &str) -> Option<&str> {
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME:QUALIFIER, or NAME:QUALIFIER
    let parts: Vec<&str> = function_name.split(':').collect();
    match parts.as_slice() {
        [_, q] => Some(q),
        ["arn", _, "lambda", _, _, "function", _, q] => Some(q),
        _ => None,
    }
}

/// Starts another poller by invoking the poller's own function asynchronously
/// (`InvocationType=Event`), with the reason in the event.
#[derive(Debug, Clone)]
pub struct SelfInvoke {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl SelfInvoke {
    pub fn new(sdk: &SdkConfig, function: impl Into<String>) -> Self {
        // A hanging self-invoke must not hold up a stopping poller's relay.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(10))
            .build();
        let config = aws_sdk_lambda::config::Builder::from(sdk).timeout_config(timeouts).build();
        Self { client: aws_sdk_lambda::Client::from_conf(config), function: function.into() }
    }
}

impl crate::coordination::supervisor::Spawner for SelfInvoke {
    async fn spawn(&self, reason: &'static str, from: &str) -> Result<(), String> {
        let event = serde_json::json!({ "kafkaEsm": { "reason": reason, "from": from } });
        self.client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(event.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("invoke {} asynchronously: {}", self.function, DisplayErrorContext(&e)))
    }
}

#[cfg(test)]
mod unanswered_tests {
    use super::*;
    use aws_sdk_lambda::error::ConnectorError;
    use aws_smithy_runtime_api::client::connection::ConnectionMetadata;

    fn dispatch(error: ConnectorError) -> SdkError<SdkInvokeError, ()> {
        SdkError::dispatch_failure(error)
    }

    #[test]
    fn only_a_failure_on_an_established_connection_may_leave_the_function_running() {
        let connected = || ConnectionMetadata::builder().proxied(false).poison_fn(|| {}).build();
        let reset = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases: [(SdkError<SdkInvokeError, ()>, bool); 5] = [
            (dispatch(ConnectorError::io(refused.into())), false),
            (dispatch(ConnectorError::timeout("connect timeout".into())), false),
            (dispatch(ConnectorError::io(reset().into())), false),
            (dispatch(ConnectorError::io(reset().into()).with_connection(connected())), true),
            (SdkError::timeout_error("operation timeout"), false),
        ];
        for (error, may_still_run) in cases {
            let got = unanswered(&error);
            assert_eq!(matches!(got, InvokeError::Unanswered { .. }), may_still_run, "{error:?} -> {got:?}");
        }
    }
}
