//! The AWS adapters, and the one place that turns the environment into SDK configuration.
//!
//! Endpoints come from the standard variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_KAFKA`, …) that aws-config reads itself, so a
//! laptop against the local stack and a Lambda in a VPC run the same code.

pub mod destinations;
pub mod lambda;
pub mod leases;
pub mod mappings;
pub mod poller;
pub mod secrets;

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_types::timeout::TimeoutConfig;

/// Loads region, credentials and endpoints from the environment, as every AWS tool does.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_with(&SdkOverrides::default()).await
}

/// What a command line may set over the environment: the AWS CLI's `--region`, `--profile` and
/// `--endpoint-url` (which then applies to every client built from the config).
#[derive(Debug, Clone, Default)]
pub struct SdkOverrides {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

/// [`sdk_config`] with `overrides` taking precedence over the environment and profile.
pub async fn sdk_config_with(overrides: &SdkOverrides) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = &overrides.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &overrides.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &overrides.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// A DynamoDB client with bounded calls: a request that hangs must not hold up a poller's stop,
/// its relay or its hand-overs (the SDK alone only bounds connecting).
pub fn dynamodb_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(6))
        .build();
    aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(sdk).timeout_config(timeouts).build())
}

/// Bounded calls to the control planes a consumer needs before it connects (MSK's
/// `GetBootstrapBrokers`/`DescribeClusterV2`, Secrets Manager): a hung call must delay that
/// mapping's connect by seconds, not hold it for the SDK's unbounded default (review #20).
pub fn control_plane_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// A Secrets Manager client with [`control_plane_timeouts`] and the SDK's standard retries
/// (they absorb throttling); endpoint from `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
pub fn secrets_client(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(sdk).timeout_config(control_plane_timeouts()).build(),
    )
}

/// An MSK client with [`control_plane_timeouts`] and no SDK retries: the poller retries a failed
/// resolve with its reconnect backoff, logging each failure. Endpoint from `AWS_ENDPOINT_URL_KAFKA`.
pub fn kafka_client(sdk: &SdkConfig) -> aws_sdk_kafka::Client {
    aws_sdk_kafka::Client::from_conf(
        aws_sdk_kafka::config::Builder::from(sdk)
            .timeout_config(control_plane_timeouts())
            .retry_config(aws_sdk_kafka::config::retry::RetryConfig::disabled())
            .build(),
    )
}

/// One readable line for a failed SDK call: the service's error code and message (or its HTTP
/// status when it sent neither), or the innermost cause when the service could not be reached,
/// never the SDK's debug rendering of the raw response.
pub fn error_line<E>(error: &aws_sdk_lambda::error::SdkError<E, aws_sdk_lambda::config::http::HttpResponse>) -> String
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_lambda::error::ProvideErrorMetadata as _;
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error, status) {
        (aws_sdk_lambda::error::SdkError::ServiceError(_), Some(status)) => match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            (None, Some(message)) => format!("HTTP {status}: {message}"),
            (None, None) => format!("unexpected response (HTTP {status})"),
        },
        (_, Some(status)) => format!("unreadable response (HTTP {status}): {cause}"),
        (_, None) => format!("{error}: {cause}"),
    }
}

/// Bounded calls for on-failure destinations: a destination that hangs is retried, holding only
/// its partition.
fn destination_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// An SQS client (on-failure destinations); endpoint from `AWS_ENDPOINT_URL_SQS`.
pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk).timeout_config(destination_timeouts()).build(),
    )
}

/// An SNS client (on-failure destinations); endpoint from `AWS_ENDPOINT_URL_SNS`.
pub fn sns_client(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(sdk).timeout_config(destination_timeouts()).build(),
    )
}

/// An S3 client (on-failure destinations); endpoint from `AWS_ENDPOINT_URL_S3`. Path-style
/// addressing when an endpoint is set, as local S3s (moto, MinIO) need.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .timeout_config(destination_timeouts())
            .force_path_style(path_style)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding #20: the MSK and Secrets Manager clients had no timeouts at all.
    #[test]
    fn every_client_the_poller_builds_bounds_its_calls() {
        let sdk = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let bounded = |t: Option<&TimeoutConfig>| {
            let t = t.expect("a timeout config");
            t.connect_timeout().is_some() && t.operation_attempt_timeout().is_some() && t.operation_timeout().is_some()
        };
        assert!(bounded(dynamodb_client(&sdk).config().timeout_config()));
        assert!(bounded(secrets_client(&sdk).config().timeout_config()));
        assert!(bounded(kafka_client(&sdk).config().timeout_config()));
        assert!(bounded(sqs_client(&sdk).config().timeout_config()));
        assert!(bounded(sns_client(&sdk).config().timeout_config()));
        assert!(bounded(s3_client(&sdk).config().timeout_config()));
    }
}
