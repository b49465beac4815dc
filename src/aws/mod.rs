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
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
