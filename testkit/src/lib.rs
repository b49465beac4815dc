//! kafka-esm's test kit: real local services started on free ports (tansu, dynalite, stunnel),
//! in-repo Lambda Invoke and MSK control-plane endpoints that follow the real APIs' documented
//! shapes and error behaviour, and helpers to produce and inspect Kafka data with an independent
//! librdkafka client.
//!
//! Services are started through a watchdog shell that ends them when the test process exits, so
//! a failed or killed test run leaves nothing behind. Every wait has a timeout.
//!
//! The scripts use the same code through one binary, `kafka-esm-testkit` (`src/bin/`): producers,
//! the offsets reader, the counting Invoke stub, the DynamoDB counting proxy, the Lambda front
//! for `cargo lambda watch`, and the benchmarks.

#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod invoke_stub;
pub mod kafka;
pub mod moto;
pub mod msk_stub;
pub mod sasl;
pub mod services;
pub mod tls;

pub use invoke_stub::{InvokeStub, Outcome, Reply, Rule, StubBehaviour};
pub use moto::Moto;
pub use msk_stub::{MskCluster, MskFailure, MskRoute, MskStub};
pub use services::{Dynalite, Tansu, TansuStorage, free_port};

/// SDK configuration pointing every client at `endpoint`, with fixed local credentials and
/// region (the tests run several endpoints in one process, so they cannot use the
/// process-wide `AWS_ENDPOINT_URL_*` variables the product reads).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "kafka-esm-testkit",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}
