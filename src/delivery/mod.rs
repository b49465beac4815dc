//! The data plane: one partition's records become `aws:kafka` events, invokes and commits. It
//! knows neither DynamoDB nor librdkafka: records arrive through the [`record::RecordSource`]
//! seam, progress leaves through [`checkpoint::Checkpoint`], functions are called through
//! [`invoke::Invoker`].
//!
//! | rule | file |
//! |---|---|
//! | `BatchSize`, window, the 6 MB limit, oversized records | [`batch`] |
//! | the poller's memory for batches (`ESM_BATCH_MEMORY_MB`) | [`budget`] |
//! | the event, byte for byte | [`event`] |
//! | `FilterCriteria` (the Lambda event-filter grammar) | [`filter`] |
//! | a worker's spec, progress and errors (shared by the loops below) | [`worker`] |
//! | one batch in flight, commit after success | [`partition`] |
//! | `ParallelizationFactor`: N batches of a partition, keys in order | [`keyed`] |
//! | retries, bisect, partial batch responses, record age, give-up (rules) | [`fate`] |
//! | running a batch through those rules, commit after each resolved part | [`deliver`] |
//! | on-failure destinations (the seam, what they receive) | [`destination`] |
//! | retry or stop on an Invoke API error | [`policy`] |
//! | commit coalescing, never backwards | [`checkpoint`] |
//! | no invoke or commit without the lease | [`guard`] |

pub mod batch;
pub mod budget;
pub mod checkpoint;
pub mod deliver;
pub mod destination;
pub mod event;
pub mod fate;
pub mod filter;
pub mod guard;
pub mod invoke;
pub mod keyed;
pub mod metrics;
pub mod partition;
pub mod policy;
pub mod record;
pub mod worker;
