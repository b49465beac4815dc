//! The control plane: which poller consumes which partition, and when pollers start and stop.
//! The rules are pure functions, table-tested; [`supervisor`] carries them out.
//!
//! | rule | file |
//! |---|---|
//! | the lease protocol (types, store seam) | [`leases`] |
//! | who is alive (heartbeats watched on the observer's clock) | [`liveness`] |
//! | fair share, `MaximumPollers`, lost and orphaned leases | [`balance`] |
//! | scale out and in | [`scaling`] |
//! | `ScalingConfig.MaximumConcurrency`: a mapping's invoke slots shared by its pollers | [`concurrency`] |
//! | mapping items → consumers to run, states to write | [`reconcile`] |
//! | a partition's tenure and its hand-over | [`tenure`] |
//! | one mapping's consumer over the Kafka seam | [`consumer`], [`connector`] |
//! | the loop that does the I/O | [`supervisor`] |

pub mod balance;
pub mod concurrency;
pub mod connector;
pub mod consumer;
pub mod leases;
pub mod liveness;
pub mod reconcile;
pub mod scaling;
pub mod supervisor;
pub mod tenure;
