//! What a partition worker is given and reports: its spec (where records go, under which
//! limits, lease and fate settings), its progress (read by the control plane) and why it stopped.
//! The worker loops ([`super::partition`], [`super::keyed`]) and the batch runner
//! ([`super::deliver`]) share these; this module depends on none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use tracing::{info, warn};

use super::batch::BatchLimits;
use super::destination::Destination;
use super::event::Envelope;
use super::fate::FatePolicy;
use super::filter::Filters;
use super::guard::LeaseGuard;
use super::invoke::InvokeError;
use super::metrics::MappingMetrics;
use super::policy::StopReason;
use super::record::SourceError;

/// A mapping's fate settings, filters and destination, shared by its partitions.
#[derive(Debug, Default)]
pub struct Fate {
    pub policy: FatePolicy,
    pub filters: Arc<Filters>,
    pub on_failure: Option<Arc<dyn Destination>>,
    /// For the failure record's `KafkaBatchInfo`.
    pub event_source_arn: Option<String>,
    pub bootstrap_servers: String,
    /// The longest one invoke of the function may run: its timeout as Lambda reported it when
    /// the mapping connected, plus slack, at most `ESM_UNANSWERED_INVOKE_WAIT_MS` (that when the
    /// timeout could not be read). After an invoke that may still be running
    /// ([`InvokeError::Unanswered`]) nothing of the partition is invoked for this long, and an
    /// abandoned invoke fences its partition until this long after it was sent.
    pub unanswered_wait: std::time::Duration,
}

/// Slack on a function's timeout: the Init phase of a new execution environment (up to 10 s,
/// outside the timeout) and the network.
pub const TIMEOUT_SLACK: std::time::Duration = std::time::Duration::from_secs(15);

/// [`Fate::unanswered_wait`] for a function whose timeout is `timeout` (`None`: unknown), with
/// `ceiling` from `ESM_UNANSWERED_INVOKE_WAIT_MS`.
pub fn longest_run(timeout: Option<std::time::Duration>, ceiling: std::time::Duration) -> std::time::Duration {
    timeout.map_or(ceiling, |t| (t + TIMEOUT_SLACK).min(ceiling))
}

/// Progress of a partition, written by its worker, read by the control plane (lag, status).
#[derive(Debug)]
pub struct Progress {
    /// Next offset to deliver; -1 until known.
    pub position: AtomicI64,
    /// Records waiting after `position`, as last measured.
    pub lag: AtomicU64,
    /// Batches delivered successfully.
    pub batches: AtomicU64,
    /// The error of the last failed attempt, until its batch is delivered (for `esm status`).
    pub last_error: std::sync::Mutex<Option<String>>,
    /// Invokes sent, and those whose answer came (a dropped or unanswered invoke never counts as
    /// answered: the function may still be running it).
    invokes_sent: AtomicU64,
    invokes_answered: AtomicU64,
    /// Until when the invokes sent may run (each one's send time plus the longest run then).
    running_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            position: AtomicI64::new(-1),
            lag: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            invokes_sent: AtomicU64::new(0),
            invokes_answered: AtomicU64::new(0),
            running_until: std::sync::Mutex::new(None),
        }
    }
}

impl Progress {
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Relaxed)
    }

    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Hook for `esm status`: the batch in flight failed with `error` (`None`: it was delivered).
    pub fn note_attempt(&self, error: Option<&str>) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = error.map(str::to_owned);
    }

    /// An invoke is being sent to a function that runs it at most `longest`.
    pub fn invoke_sent(&self, longest: std::time::Duration) {
        let until = tokio::time::Instant::now() + longest;
        let mut running_until = self.running_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *running_until = Some(running_until.map_or(until, |t| t.max(until)));
        self.invokes_sent.fetch_add(1, Ordering::SeqCst);
    }

    /// An invoke's answer came: the function is no longer running it.
    pub fn invoke_answered(&self) {
        self.invokes_answered.fetch_add(1, Ordering::SeqCst);
    }

    /// With an invoke sent and not answered (abandoned, or unanswered): how much longer it may
    /// run.
    pub fn unanswered_for(&self) -> Option<std::time::Duration> {
        let open = self.invokes_sent.load(Ordering::SeqCst) > self.invokes_answered.load(Ordering::SeqCst);
        let until = (*self.running_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner))?;
        open.then(|| until.saturating_duration_since(tokio::time::Instant::now())).filter(|d| !d.is_zero())
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// What one partition worker delivers where.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub mapping: Arc<str>,
    pub function: Arc<str>,
    pub topic: Arc<str>,
    pub envelope: Arc<Envelope>,
    pub limits: BatchLimits,
    /// Checked before every invoke and every commit.
    pub guard: Arc<LeaseGuard>,
    /// Updated after every delivered batch.
    pub progress: Arc<Progress>,
    /// The mapping's counters in this poller.
    pub metrics: Arc<MappingMetrics>,
    /// Filters, retry limits, bisect, partial responses and the on-failure destination.
    pub fate: Arc<Fate>,
    /// `ParallelizationFactor`: batches of the partition in flight at once, each with keys no
    /// other holds ([`super::keyed`]); 1 is one batch at a time.
    pub parallelization: usize,
    /// `ScalingConfig.MaximumConcurrency`: this poller's share of the mapping's invoke slots
    /// ([`crate::coordination::concurrency`]); every invoke holds one. `None`: no cap.
    pub gate: Option<Arc<crate::coordination::concurrency::Gate>>,
    /// The poller's memory for batches ([`super::budget`]); `None`: unbounded (tests).
    pub budget: Option<Arc<super::budget::Budget>>,
}

/// Why a partition worker gave up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{error}")]
    Invoke { reason: StopReason, error: InvokeError },
}

/// Offset commits fail: no new batch until one succeeds, and the mapping says why.
pub fn show_commit_failure(spec: &WorkerSpec, error: &str) {
    warn!(mapping = %spec.mapping, error = %error, "Offset commits are failing; no new batch until one succeeds.");
    let problem = format!("offset commit failing: {error}");
    spec.progress.note_attempt(Some(&problem));
    spec.metrics.set_result(&format!("PROBLEM: {problem}"));
}

pub fn show_commit_recovery(spec: &WorkerSpec) {
    info!(mapping = %spec.mapping, "Offset commits succeed again; taking new batches.");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::longest_run;

    #[test]
    fn the_longest_run_is_the_functions_timeout_with_slack_at_most_the_ceiling() {
        let ceiling = Duration::from_secs(900);
        assert_eq!(longest_run(Some(Duration::from_secs(30)), ceiling), Duration::from_secs(45));
        assert_eq!(longest_run(Some(Duration::from_secs(900)), ceiling), ceiling);
        assert_eq!(longest_run(None, ceiling), ceiling, "unknown: the ceiling");
        assert_eq!(longest_run(Some(Duration::from_secs(30)), Duration::from_secs(20)), Duration::from_secs(20));
    }
}
