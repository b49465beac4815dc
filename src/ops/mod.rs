//! Operating a mapping without reading logs: what pollers publish about their partitions, the
//! CloudWatch metrics they print, `esm status` and `esm reset-offsets`.
//!
//! | what | file |
//! |---|---|
//! | per-partition progress a poller publishes with its heartbeat | [`progress`] |
//! | CloudWatch Embedded Metric Format lines, namespace and dimensions | [`emf`] |
//! | `esm status`: owner, committed/end offsets, lag, rate, stuck | [`status`] |
//! | `esm reset-offsets`: the request, how pollers apply it, the direct path | [`reset`] |
//! | the two commands' flags and output | `command` (with the `cli` feature) |

#[cfg(feature = "cli")]
pub mod command;
pub mod emf;
pub mod progress;
pub mod reset;
pub mod status;
