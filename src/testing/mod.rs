//! In-memory fakes of every seam, held to the real adapters' rules by shared conformance tests
//! (`tests/lease_store.rs`, `tests/checkpoint_conformance.rs`), so tests over them prove
//! something about the product: the stores, a Kafka cluster, a function, a clock, and a way to
//! kill one poller. Compiled for the crate's own tests and with the `test-util` feature.

mod checkpoint;
pub mod emf;
mod invoker;
mod kafka;
mod leases;
mod mappings;
mod mortal;
mod source;

pub use crate::clock::ManualClock;
pub use checkpoint::MemoryCheckpoint;
pub use invoker::{MemoryInvoker, PollerInvoker};
pub use kafka::{MemoryClient, MemoryConnector, MemoryGroup, MemoryKafka, MemoryPartition};
pub use leases::MemoryLeaseStore;
pub use mappings::MemoryMappingStore;
pub use mortal::Mortal;
pub use source::MemorySource;
