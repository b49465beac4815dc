//! kafka-esm: a self-hosted Kafka event source mapping for AWS Lambda.
//!
//! The library holds everything the deployables share; the poller Lambda, the `esm` CLI and the
//! CloudFormation custom resource are thin shells around it.
//!
//! | layer | modules |
//! |---|---|
//! | the mapping (AWS shape, states, rules, store seam) | [`model`] |
//! | the EventSourceMapping API | [`api`] |
//! | the CloudFormation custom resource over the API | [`deploy`] |
//! | the data plane: records → batches → invokes → commits | [`delivery`] |
//! | the control plane: leases, fair share, scaling, consumers | [`coordination`] |
//! | adapters: DynamoDB, Lambda, Secrets Manager ([`aws`]); librdkafka, MSK, SASL ([`kafka`]) | |
//! | operating it: progress, metrics, status, offset reset | [`ops`] |
//! | configuration and time | [`config`], [`clock`] |

pub mod api;
pub mod aws;
pub mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod config;
pub mod coordination;
pub mod delivery;
pub mod deploy;
pub mod kafka;
pub mod model;
pub mod ops;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
