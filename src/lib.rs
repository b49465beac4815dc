//! kafka-esm: a self-hosted Kafka event source mapping for AWS Lambda.
//!
//! The library holds everything the deployables share: the mapping model ([`mapping`]) and its
//! DynamoDB store ([`store`]), the `aws:kafka` event encoding ([`event`]), batching ([`batch`]),
//! function invocation ([`invoke`]), offset checkpoints ([`checkpoint`]), the Kafka client
//! ([`kafka`]) behind the record-source seam ([`source`]), retry timing ([`backoff`]) and the poll
//! loop itself ([`poller`]). The `poller` Lambda and the `esm` CLI are thin shells around it.

pub mod api;
pub mod aws;
pub mod backoff;
pub mod batch;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
pub mod error;
pub mod event;
pub mod invoke;
pub mod kafka;
pub mod lease;
pub mod mapping;
pub mod msk_iam;
pub mod poller;
pub mod secrets;
pub mod source;
pub mod store;
pub mod supervisor;

pub use error::{Error, Result};
