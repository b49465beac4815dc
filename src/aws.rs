//! The one place that turns the environment into AWS SDK configuration.
//!
//! Endpoints come from the standard variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_KAFKA`, …) that aws-config reads itself, so a
//! laptop against the local stack and a Lambda in a VPC run the same code.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and endpoints from the environment, as every AWS tool does.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}
