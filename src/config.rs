//! Every `ESM_*` setting of a poller process, parsed in one place under one policy.
//!
//! [`ENV_VARS`] is the one table of names, defaults and meanings; a test checks the README and
//! both templates against it. A variable that is unset or empty takes its default; one that is set
//! must parse and be in range, or the process refuses to start with an error naming it — a typo
//! never silently becomes a default.
//!
//! Two settings are tied by construction: a poller Lambda stops taking batches
//! `ESM_STOP_MARGIN_MS` before its deadline and then gives an in-flight invoke up to
//! `ESM_DRAIN_TIMEOUT_MS` to finish before it commits and releases. The margin must cover the
//! drain plus [`HANDOVER_SLACK`], or Lambda kills the sandbox mid-drain and the successor invokes
//! the same batch while the first invoke still runs. Give either one and the other is derived;
//! give both and they are checked.

use std::time::Duration;

/// One `ESM_*` variable: its name, its default as the user would write it, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    /// The default, as written in the environment (`"derived"`/`"unset"` where there is none).
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every variable a poller process reads.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar { name: "ESM_MAPPINGS_TABLE", default: "kafka-esm-mappings", meaning: "DynamoDB table of mapping items" },
    EnvVar {
        name: "ESM_LEASES_TABLE",
        default: "kafka-esm-leases",
        meaning: "DynamoDB table of partition leases and poller heartbeats",
    },
    EnvVar {
        name: "ESM_FETCH_WAIT_MS",
        default: "500",
        meaning: "Kafka fetch.wait.max.ms: how long a broker may hold an empty fetch",
    },
    EnvVar {
        name: "ESM_QUEUED_MAX_KBYTES",
        default: "2048",
        meaning: "fetch-ahead buffer per partition (librdkafka queued.max.messages.kbytes)",
    },
    EnvVar {
        name: "ESM_FETCH_BUFFER_KBYTES",
        default: "16384",
        meaning: "fetch-ahead budget of a mapping's Kafka client, shared by the topic's partitions: each buffers at most this / partitions, and at most ESM_QUEUED_MAX_KBYTES",
    },
    EnvVar {
        name: "ESM_FETCH_QUEUE_BACKOFF_MS",
        default: "10",
        meaning: "how soon a partition whose fetch-ahead buffer was full is fetched again",
    },
    EnvVar {
        name: "ESM_KAFKA_REQUEST_TIMEOUT_MS",
        default: "10000",
        meaning: "timeout of Kafka metadata, offset and commit requests",
    },
    EnvVar { name: "ESM_RETRY_BASE_MS", default: "250", meaning: "first delay before a failed batch is retried" },
    EnvVar { name: "ESM_RETRY_CAP_MS", default: "30000", meaning: "longest delay between retries of a failed batch" },
    EnvVar {
        name: "ESM_RECONNECT_BASE_MS",
        default: "1000",
        meaning: "first delay before a mapping that cannot reach its cluster tries again",
    },
    EnvVar {
        name: "ESM_RECONNECT_CAP_MS",
        default: "60000",
        meaning: "longest delay between a mapping's reconnection attempts",
    },
    EnvVar {
        name: "ESM_REFRESH_INTERVAL_MS",
        default: "3000",
        meaning: "how often mapping items are re-read (changes apply within this)",
    },
    EnvVar {
        name: "ESM_DRAIN_TIMEOUT_MS",
        default: "30000",
        meaning: "when a poller stops (SIGTERM, the Lambda deadline), how long an in-flight invoke may finish before it is abandoned (its batch is redelivered); other hand-overs wait for it",
    },
    EnvVar {
        name: "ESM_UNANSWERED_INVOKE_WAIT_MS",
        default: "900000",
        meaning: "the longest an invoke may run when the function's timeout cannot be read (lambda:GetFunction), and a cap on it: after an invoke whose connection broke once the request was sent, the partition sends nothing for the function's timeout plus 15 s; after a hand-over that abandoned an invoke, the next holder waits that long from when it was sent",
    },
    EnvVar {
        name: "ESM_STOP_MARGIN_MS",
        default: "derived",
        meaning: "poller Lambda: stop this long before the deadline; at least drain timeout + 10000 (derived from it when unset)",
    },
    EnvVar {
        name: "ESM_LEASE_DURATION_MS",
        default: "10000",
        meaning: "heartbeat lifetime: how soon a silent poller's partitions move",
    },
    EnvVar {
        name: "ESM_LEASE_RENEW_MS",
        default: "derived",
        meaning: "heartbeat interval (half the lease duration when unset)",
    },
    EnvVar {
        name: "ESM_LEASE_MARGIN_MS",
        default: "2000",
        meaning: "a poller stops acting this long before its heartbeat would expire",
    },
    EnvVar {
        name: "ESM_LEASE_SCAN_MS",
        default: "5000",
        meaning: "how often the leases table is read (250 ms while partitions are about to move)",
    },
    EnvVar {
        name: "ESM_SCALE_WINDOW_MS",
        default: "60000",
        meaning: "lag must grow this long before scale-out; no lag this long before scale-in",
    },
    EnvVar {
        name: "ESM_BATCH_MEMORY_MB",
        default: "40% of the poller Lambda's memory; 1024 elsewhere",
        meaning: "memory all of a poller's batches may hold at once (being gathered or in flight); a batch closes early when it is full",
    },
    EnvVar {
        name: "ESM_MAX_PARTITIONS_PER_POLLER",
        default: "unlimited",
        meaning: "most partitions one poller holds, whatever the fair share (bounds its memory)",
    },
    EnvVar {
        name: "ESM_MAX_POLLERS",
        default: "unlimited",
        meaning: "most pollers across all mappings (the templates set it from their MaximumPollers and reserve MaximumPollers + 2 concurrent executions)",
    },
    EnvVar {
        name: "ESM_POLLER_FUNCTION",
        default: "unset",
        meaning: "the poller Lambda's own function name: enables relay and scale-out",
    },
];

/// Time a hand-over needs after the drain: abandoning an invoke that outlived it (up to 5 s for
/// the consumer to notice), the final commit with its retries, and the lease release.
pub const HANDOVER_SLACK: Duration = Duration::from_secs(10);

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{name}={value}: {problem}")]
    Invalid { name: &'static str, value: String, problem: String },
    #[error("{0}")]
    Inconsistent(String),
}

/// Table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub mappings: String,
    pub leases: String,
}

impl Default for Tables {
    fn default() -> Self {
        Self { mappings: "kafka-esm-mappings".into(), leases: "kafka-esm-leases".into() }
    }
}

/// How the Kafka client fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaTuning {
    /// `fetch.wait.max.ms` (Kafka's default, 500). Tansu holds every fetch this long, so the
    /// local stack sets 10.
    pub fetch_wait_max_ms: u32,
    /// Fetch-ahead buffer per partition.
    pub queued_max_kbytes: u32,
    /// Fetch-ahead budget of one mapping's client, shared by the topic's partitions.
    pub fetch_buffer_kbytes: u32,
    /// librdkafka's `fetch.queue.backoff.ms` defaults to 1000 and idles a partition for a second
    /// each time its buffer is full; 10 keeps it busy.
    pub fetch_queue_backoff_ms: u32,
    pub request_timeout: Duration,
}

impl Default for KafkaTuning {
    fn default() -> Self {
        Self {
            fetch_wait_max_ms: 500,
            queued_max_kbytes: 2048,
            fetch_buffer_kbytes: 16384,
            fetch_queue_backoff_ms: 10,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Capped exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoffs {
    pub base: Duration,
    pub cap: Duration,
}

/// Lease timing for a poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a heartbeat (and so every lease of its poller) lasts: KCL's `failoverTimeMillis`,
    /// the time after which a silent holder is considered gone and its partitions move.
    pub duration: Duration,
    /// How often a poller writes its heartbeat.
    pub renew_every: Duration,
    /// A holder treats its leases as lost this long before its heartbeat expires, covering the
    /// time an invoke or commit takes to start after its check.
    pub safety_margin: Duration,
}

impl LeaseSettings {
    /// KCL's `failoverTimeMillis` default: a killed poller's partitions move 6–10 s after the
    /// kill (measured; README "Crash takeover"), at 12 heartbeat writes per poller-minute.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
    /// Ours: covers a poller stalled between its guard check and the invoke or commit it checked
    /// for (the observer's rule already keeps clocks out of it).
    pub const DEFAULT_SAFETY_MARGIN: Duration = Duration::from_secs(2);

    /// The default interval for a duration: half of it, which leaves `duration / 2 − margin` to
    /// retry a failed write before the guard lapses.
    pub fn default_renew_every(duration: Duration) -> Duration {
        duration / 2
    }

    /// Checks that a lease renewed on time is still valid (by the margin) when renewed again.
    ///
    /// # Errors
    /// A zero duration or interval, or `renew_every + safety_margin >= duration`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.duration.is_zero() || self.renew_every.is_zero() {
            return Err(ConfigError::Inconsistent(
                "the lease duration and the renewal interval must be greater than zero".into(),
            ));
        }
        if self.renew_every.saturating_add(self.safety_margin) >= self.duration {
            return Err(ConfigError::Inconsistent(format!(
                "leases renewed every {:?} with a {:?} safety margin are no longer valid when renewed; make \
                 ESM_LEASE_DURATION_MS ({:?}) longer than ESM_LEASE_RENEW_MS plus ESM_LEASE_MARGIN_MS",
                self.renew_every, self.safety_margin, self.duration
            )));
        }
        Ok(())
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            duration: Self::DEFAULT_DURATION,
            renew_every: Self::default_renew_every(Self::DEFAULT_DURATION),
            safety_margin: Self::DEFAULT_SAFETY_MARGIN,
        }
    }
}

/// `ESM_BATCH_MEMORY_MB` outside Lambda.
const DEFAULT_BATCH_MEMORY_MB: usize = 1024;

/// Everything a poller process is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub tables: Tables,
    pub kafka: KafkaTuning,
    /// Failed-batch retries.
    pub retry: Backoffs,
    /// A mapping that cannot reach its cluster, and a mappings table that cannot be read.
    pub reconnect: Backoffs,
    pub refresh_interval: Duration,
    pub drain_timeout: Duration,
    /// After an unanswered invoke that may still be running, how long its partition sends
    /// nothing: Lambda's longest function timeout (15 minutes) unless told the function's own.
    pub unanswered_invoke_wait: Duration,
    /// Poller Lambda only: stop this long before the deadline (≥ drain timeout + slack).
    pub stop_margin: Duration,
    pub lease: LeaseSettings,
    pub scan_every: Duration,
    pub scale_window: Duration,
    pub max_pollers: usize,
    pub max_partitions: usize,
    /// `ESM_BATCH_MEMORY_MB`, in bytes ([`crate::delivery::budget`]).
    pub batch_memory_bytes: usize,
    /// The poller Lambda's own function (relay, scale-out); `None` for `esm poll`.
    pub poller_function: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let drain_timeout = Duration::from_secs(30);
        Self {
            tables: Tables::default(),
            kafka: KafkaTuning::default(),
            retry: Backoffs { base: Duration::from_millis(250), cap: Duration::from_secs(30) },
            reconnect: Backoffs { base: Duration::from_secs(1), cap: Duration::from_secs(60) },
            refresh_interval: Duration::from_secs(3),
            drain_timeout,
            unanswered_invoke_wait: Duration::from_secs(15 * 60),
            stop_margin: drain_timeout + HANDOVER_SLACK,
            lease: LeaseSettings::default(),
            scan_every: Duration::from_secs(5),
            scale_window: Duration::from_secs(60),
            max_pollers: usize::MAX,
            max_partitions: usize::MAX,
            batch_memory_bytes: DEFAULT_BATCH_MEMORY_MB << 20,
            poller_function: None,
        }
    }
}

impl Settings {
    /// The defaults overridden by the process environment.
    ///
    /// # Errors
    /// A variable is set but invalid, or two settings contradict each other.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The defaults overridden by `lookup(name)` (for tests).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup: &lookup };
        let d = Self::default();
        let duration = env.millis("ESM_LEASE_DURATION_MS", 1)?.unwrap_or(d.lease.duration);
        let lease = LeaseSettings {
            duration,
            renew_every: env
                .millis("ESM_LEASE_RENEW_MS", 1)?
                .unwrap_or_else(|| LeaseSettings::default_renew_every(duration)),
            safety_margin: env.millis("ESM_LEASE_MARGIN_MS", 0)?.unwrap_or(d.lease.safety_margin),
        };
        lease.validate()?;
        let (drain_timeout, stop_margin) =
            drain_and_margin(env.millis("ESM_DRAIN_TIMEOUT_MS", 1)?, env.millis("ESM_STOP_MARGIN_MS", 1)?)?;
        let retry = Backoffs {
            base: env.millis("ESM_RETRY_BASE_MS", 1)?.unwrap_or(d.retry.base),
            cap: env.millis("ESM_RETRY_CAP_MS", 1)?.unwrap_or(d.retry.cap),
        };
        let reconnect = Backoffs {
            base: env.millis("ESM_RECONNECT_BASE_MS", 1)?.unwrap_or(d.reconnect.base),
            cap: env.millis("ESM_RECONNECT_CAP_MS", 1)?.unwrap_or(d.reconnect.cap),
        };
        for (name, b) in [("ESM_RETRY", retry), ("ESM_RECONNECT", reconnect)] {
            if b.base > b.cap {
                return Err(ConfigError::Inconsistent(format!(
                    "{name}_BASE_MS ({} ms) must not exceed {name}_CAP_MS ({} ms)",
                    b.base.as_millis(),
                    b.cap.as_millis()
                )));
            }
        }
        Ok(Self {
            tables: Tables {
                mappings: env.text("ESM_MAPPINGS_TABLE").unwrap_or(d.tables.mappings),
                leases: env.text("ESM_LEASES_TABLE").unwrap_or(d.tables.leases),
            },
            kafka: KafkaTuning {
                fetch_wait_max_ms: env.number("ESM_FETCH_WAIT_MS", 0)?.unwrap_or(d.kafka.fetch_wait_max_ms),
                queued_max_kbytes: env.number("ESM_QUEUED_MAX_KBYTES", 1)?.unwrap_or(d.kafka.queued_max_kbytes),
                fetch_buffer_kbytes: env.number("ESM_FETCH_BUFFER_KBYTES", 1)?.unwrap_or(d.kafka.fetch_buffer_kbytes),
                fetch_queue_backoff_ms: env
                    .number("ESM_FETCH_QUEUE_BACKOFF_MS", 0)?
                    .unwrap_or(d.kafka.fetch_queue_backoff_ms),
                request_timeout: env.millis("ESM_KAFKA_REQUEST_TIMEOUT_MS", 1)?.unwrap_or(d.kafka.request_timeout),
            },
            retry,
            reconnect,
            refresh_interval: env.millis("ESM_REFRESH_INTERVAL_MS", 1)?.unwrap_or(d.refresh_interval),
            drain_timeout,
            unanswered_invoke_wait: env.millis("ESM_UNANSWERED_INVOKE_WAIT_MS", 0)?.unwrap_or(d.unanswered_invoke_wait),
            stop_margin,
            lease,
            scan_every: env.millis("ESM_LEASE_SCAN_MS", 1)?.unwrap_or(d.scan_every),
            scale_window: env.millis("ESM_SCALE_WINDOW_MS", 1)?.unwrap_or(d.scale_window),
            max_pollers: env.number::<usize>("ESM_MAX_POLLERS", 1)?.unwrap_or(d.max_pollers),
            max_partitions: env.number::<usize>("ESM_MAX_PARTITIONS_PER_POLLER", 1)?.unwrap_or(d.max_partitions),
            batch_memory_bytes: env
                .number::<usize>("ESM_BATCH_MEMORY_MB", 6)?
                .or_else(|| {
                    // A Lambda: a share of its memory, leaving the rest to librdkafka's buffers,
                    // the runtime and the payloads' copies.
                    let lambda_mb: usize = (env.lookup)("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")?.trim().parse().ok()?;
                    Some((lambda_mb * 2 / 5).max(6))
                })
                .unwrap_or(DEFAULT_BATCH_MEMORY_MB)
                .saturating_mul(1 << 20),
            poller_function: env.text("ESM_POLLER_FUNCTION"),
        })
    }
}

/// The drain timeout and the stop margin, one derived from the other when only one is given.
fn drain_and_margin(drain: Option<Duration>, margin: Option<Duration>) -> Result<(Duration, Duration), ConfigError> {
    let default_drain = Settings::default().drain_timeout;
    match (drain, margin) {
        (None, None) => Ok((default_drain, default_drain + HANDOVER_SLACK)),
        (Some(drain), None) => Ok((drain, drain + HANDOVER_SLACK)),
        (None, Some(margin)) => match margin.checked_sub(HANDOVER_SLACK) {
            Some(drain) if !drain.is_zero() => Ok((drain.min(default_drain), margin)),
            _ => Err(ConfigError::Inconsistent(format!(
                "ESM_STOP_MARGIN_MS ({} ms) leaves no time to drain in-flight invokes: give at least {} ms",
                margin.as_millis(),
                HANDOVER_SLACK.as_millis() + 1
            ))),
        },
        (Some(drain), Some(margin)) if margin >= drain + HANDOVER_SLACK => Ok((drain, margin)),
        (Some(drain), Some(margin)) => Err(ConfigError::Inconsistent(format!(
            "ESM_STOP_MARGIN_MS ({} ms) must be at least ESM_DRAIN_TIMEOUT_MS ({} ms) + {} ms to commit and release, \
             or the poller Lambda is killed while an invoke is still running and its successor invokes the same batch",
            margin.as_millis(),
            drain.as_millis(),
            HANDOVER_SLACK.as_millis()
        ))),
    }
}

/// Reads variables under the one policy: unset or blank → `None`; set → parsed or an error.
struct Env<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn text(&self, name: &'static str) -> Option<String> {
        debug_assert!(ENV_VARS.iter().any(|v| v.name == name), "{name} missing from ENV_VARS");
        (self.lookup)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn number<N: std::str::FromStr + TryFrom<u64>>(
        &self,
        name: &'static str,
        min: u64,
    ) -> Result<Option<N>, ConfigError> {
        let Some(value) = self.text(name) else { return Ok(None) };
        let invalid = |problem: String| ConfigError::Invalid { name, value: value.clone(), problem };
        let n: u64 = value.parse().map_err(|_| invalid("not a whole number".into()))?;
        if n < min {
            return Err(invalid(format!("must be at least {min}")));
        }
        N::try_from(n).map(Some).map_err(|_| invalid("too large".into()))
    }

    fn millis(&self, name: &'static str, min: u64) -> Result<Option<Duration>, ConfigError> {
        // A week is more than any setting here can mean; larger values are typos (and would
        // overflow the arithmetic built on them).
        const MAX_MS: u64 = 7 * 24 * 3600 * 1000;
        let ms: Option<u64> = self.number(name, min)?;
        match ms {
            Some(ms) if ms > MAX_MS => Err(ConfigError::Invalid {
                name,
                value: ms.to_string(),
                problem: format!("must be at most {MAX_MS} (a week)"),
            }),
            other => Ok(other.map(Duration::from_millis)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_consistent_and_blank_means_default() {
        let s = parse(&[("ESM_FETCH_WAIT_MS", " "), ("ESM_MAPPINGS_TABLE", "")]).unwrap();
        assert_eq!(s, Settings::default());
        assert!(s.stop_margin >= s.drain_timeout + HANDOVER_SLACK);
        s.lease.validate().unwrap();
    }

    #[test]
    fn a_set_variable_must_parse_and_be_in_range_and_the_error_names_it() {
        for (name, value, problem) in [
            ("ESM_FETCH_WAIT_MS", "ten", "not a whole number"),
            ("ESM_MAX_POLLERS", "0", "at least 1"),
            ("ESM_LEASE_SCAN_MS", "-5", "not a whole number"),
            ("ESM_QUEUED_MAX_KBYTES", "99999999999", "too large"),
            ("ESM_LEASE_DURATION_MS", "18446744073709551615", "at most"),
        ] {
            let err = parse(&[(name, value)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}={value}")) && err.contains(problem), "{name}: {err}");
        }
    }

    #[test]
    fn batch_memory_is_a_share_of_the_lambdas_memory_unless_set() {
        let with = |vars: &'static [(&'static str, &'static str)]| {
            Settings::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
                .unwrap()
                .batch_memory_bytes
        };
        assert_eq!(with(&[]), 1024 << 20);
        assert_eq!(with(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")]), 204 << 20);
        assert_eq!(with(&[("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"), ("ESM_BATCH_MEMORY_MB", "64")]), 64 << 20);
        assert!(Settings::from_lookup(|n| (n == "ESM_BATCH_MEMORY_MB").then(|| "5".to_owned())).is_err());
    }

    #[test]
    fn the_stop_margin_covers_the_drain_by_construction() {
        // One given: the other follows.
        let s = parse(&[("ESM_DRAIN_TIMEOUT_MS", "60000")]).unwrap();
        assert_eq!(s.stop_margin, Duration::from_secs(70));
        let s = parse(&[("ESM_STOP_MARGIN_MS", "20000")]).unwrap();
        assert_eq!((s.drain_timeout, s.stop_margin), (Duration::from_secs(10), Duration::from_secs(20)));
        // Both given and contradictory: refused, naming both.
        let err = parse(&[("ESM_DRAIN_TIMEOUT_MS", "30000"), ("ESM_STOP_MARGIN_MS", "10000")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ESM_STOP_MARGIN_MS") && text.contains("ESM_DRAIN_TIMEOUT_MS"), "{text}");
        // A margin too small to drain at all.
        assert!(parse(&[("ESM_STOP_MARGIN_MS", "10000")]).is_err());
    }

    #[test]
    fn lease_settings_that_lapse_between_renewals_are_refused() {
        assert!(parse(&[("ESM_LEASE_DURATION_MS", "10000"), ("ESM_LEASE_RENEW_MS", "8000")]).is_err());
        let s = parse(&[("ESM_LEASE_DURATION_MS", "20000")]).unwrap();
        assert_eq!(s.lease.renew_every, Duration::from_secs(10));
    }

    #[test]
    fn every_variable_read_is_in_the_table() {
        // from_lookup asserts (debug) that each name it reads is listed; reading all of them once
        // with values set proves the table is complete for what is parsed.
        let all: Vec<(&str, &str)> = ENV_VARS.iter().map(|v| (v.name, "")).collect();
        parse(&all).unwrap();
        let mut names: Vec<&str> = ENV_VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ENV_VARS.len(), "a variable is listed twice");
    }
}
