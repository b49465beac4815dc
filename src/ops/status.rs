//! `esm status`: per mapping and partition, who runs it, the group's committed offset, the log's
//! end, lag, rate, the last successful invoke, the last error, and whether it is stuck.
//!
//! Readable from any machine with DynamoDB and Kafka access: owners and leases come from the
//! leases table, rate, last invoke and last error from the progress each poller writes with its
//! heartbeat ([`super::progress`]), offsets from Kafka (the mapping's consumer group).
//!
//! A partition is **stuck** when records wait (lag > 0) and its owner's position has not moved
//! for longer than the threshold: by default the larger of 5 minutes and 3 batching windows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::aws::leases::PollerProgress;
use crate::coordination::connector::{Connector, MappingClient, StartAt};
use crate::coordination::leases::Snapshot;
use crate::delivery::checkpoint::Checkpoint;
use crate::delivery::metrics::PartitionReport;
use crate::model::mapping::{EventSourceMapping, StartingPosition};

/// The least time without progress that makes a lagging partition stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// The default stuck threshold of `mapping`: [`STUCK_AFTER`], and at least 3 batching windows.
pub fn stuck_after(mapping: &EventSourceMapping) -> Duration {
    let window = Duration::from_secs(u64::from(mapping.maximum_batching_window_in_seconds.unwrap_or(0)));
    STUCK_AFTER.max(window * 3)
}

/// One mapping's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MappingStatus {
    #[serde(rename = "UUID")]
    pub uuid: String,
    pub function_arn: String,
    pub topic: String,
    pub state: String,
    /// Kafka could not be asked (offsets unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub partitions: Vec<PartitionStatus>,
}

/// One partition's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartitionStatus {
    pub partition: i32,
    /// The poller holding the lease; `None` when nobody does.
    pub owner: Option<String>,
    /// The owner's heartbeat is past its expiry (it may be dead).
    pub owner_expired: bool,
    pub committed_offset: Option<i64>,
    pub end_offset: Option<i64>,
    /// End minus committed (end minus earliest without a commit).
    pub lag: Option<u64>,
    pub records_per_second: Option<f64>,
    /// Epoch milliseconds.
    pub last_invoke_ms: Option<i64>,
    pub last_error: Option<String>,
    pub stuck: bool,
    /// Seconds since the owner's position last moved.
    pub idle_s: Option<u64>,
}

/// What Kafka says about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    pub earliest: i64,
    pub end: i64,
    pub committed: Option<i64>,
}

/// Asks Kafka for every partition's earliest, end and committed offset.
///
/// # Errors
/// The cluster could not be reached or refused.
pub async fn offsets<C: Connector>(
    connector: &C,
    mapping: &EventSourceMapping,
) -> Result<BTreeMap<i32, Offsets>, String> {
    let client = connector.connect(mapping).await.map_err(|e| e.to_string())?;
    let partitions = client.partitions().await.map_err(|e| e.to_string())?;
    let committed = client.checkpoint().committed(&partitions).await.map_err(|e| e.to_string())?;
    let at = |position| StartAt { position, timestamp_ms: None };
    let mut out = BTreeMap::new();
    for p in partitions {
        let (earliest, _) =
            client.start_offset(p, None, at(StartingPosition::TrimHorizon)).await.map_err(|e| e.to_string())?;
        let (end, _) = client.start_offset(p, None, at(StartingPosition::Latest)).await.map_err(|e| e.to_string())?;
        out.insert(p, Offsets { earliest, end, committed: committed.get(&p).copied().flatten() });
    }
    // Closing a client may wait on the network.
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
    Ok(out)
}

/// One mapping's status from what was read.
pub fn build(
    mapping: &EventSourceMapping,
    offsets: Result<&BTreeMap<i32, Offsets>, &str>,
    leases: &Snapshot,
    progress: &[PollerProgress],
    now_ms: i64,
    stuck_after: Duration,
) -> MappingStatus {
    let expiry: BTreeMap<&str, i64> = progress.iter().map(|p| (p.poller.as_str(), p.expires_at_ms)).collect();
    let reports: BTreeMap<(String, i32), (String, PartitionReport)> = progress
        .iter()
        .flat_map(|p| super::progress::decode(&p.progress).into_iter().map(move |r| (p.poller.clone(), r)))
        .filter(|(_, r)| r.mapping == mapping.uuid && r.topic == mapping.topic())
        .map(|(poller, r)| ((poller.clone(), r.partition), (poller, r)))
        .collect();
    let owners: BTreeMap<i32, String> = leases
        .of(&mapping.uuid)
        .leases
        .into_iter()
        .filter(|l| *l.id.topic == *mapping.topic())
        .filter_map(|l| Some((l.id.partition, l.owner?)))
        .collect();
    let mut partitions: Vec<i32> = owners.keys().copied().collect();
    if let Ok(offsets) = offsets {
        partitions.extend(offsets.keys());
    }
    partitions.sort_unstable();
    partitions.dedup();
    let rows = partitions
        .into_iter()
        .map(|partition| {
            let owner = owners.get(&partition).cloned();
            let report = owner.as_ref().and_then(|o| reports.get(&(o.clone(), partition))).map(|(_, r)| r);
            let kafka = offsets.ok().and_then(|o| o.get(&partition)).copied();
            let lag = kafka.map(|k| u64::try_from(k.end - k.committed.unwrap_or(k.earliest)).unwrap_or(0));
            let idle_ms = report.map(|r| now_ms.saturating_sub(r.advanced_at_ms).max(0));
            let threshold_ms = i64::try_from(stuck_after.as_millis()).unwrap_or(i64::MAX);
            PartitionStatus {
                partition,
                owner_expired: owner.as_deref().is_some_and(|o| expiry.get(o).is_none_or(|e| *e < now_ms)),
                owner,
                committed_offset: kafka.and_then(|k| k.committed),
                end_offset: kafka.map(|k| k.end),
                lag,
                records_per_second: report.map(|r| r.records_per_second),
                last_invoke_ms: report.and_then(|r| r.last_invoke_ms),
                last_error: report.and_then(|r| r.last_error.clone()),
                stuck: lag.is_some_and(|l| l > 0) && idle_ms.is_some_and(|i| i > threshold_ms),
                idle_s: idle_ms.map(|i| u64::try_from(i / 1000).unwrap_or(0)),
            }
        })
        .collect();
    MappingStatus {
        uuid: mapping.uuid.clone(),
        function_arn: mapping.function_arn.clone(),
        topic: mapping.topic().to_owned(),
        state: mapping.state.as_str().to_owned(),
        error: offsets.err().map(str::to_owned),
        partitions: rows,
    }
}

/// The statuses as a table, one block per mapping.
pub fn table(statuses: &[MappingStatus], format_time: impl Fn(i64) -> String) -> String {
    let mut out = String::new();
    let dash = || "-".to_owned();
    for s in statuses {
        out.push_str(&format!("{}  {}  topic {}  {}\n", s.uuid, s.state, s.topic, s.function_arn));
        if let Some(e) = &s.error {
            out.push_str(&format!("  Kafka: {e}\n"));
        }
        let mut rows = vec![
            ["PARTITION", "OWNER", "COMMITTED", "END", "LAG", "REC/S", "LAST INVOKE", "STUCK", "LAST ERROR"]
                .map(str::to_owned),
        ];
        for p in &s.partitions {
            rows.push([
                p.partition.to_string(),
                p.owner
                    .as_ref()
                    .map_or_else(dash, |o| if p.owner_expired { format!("{o} (expired)") } else { o.clone() }),
                p.committed_offset.map_or_else(dash, |o| o.to_string()),
                p.end_offset.map_or_else(dash, |o| o.to_string()),
                p.lag.map_or_else(dash, |o| o.to_string()),
                p.records_per_second.map_or_else(dash, |r| format!("{r:.1}")),
                p.last_invoke_ms.map_or_else(dash, &format_time),
                if p.stuck { format!("YES ({}s)", p.idle_s.unwrap_or(0)) } else { "no".to_owned() },
                p.last_error.clone().unwrap_or_else(dash),
            ]);
        }
        let widths: Vec<usize> = (0..9).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in rows {
            let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            out.push_str(&format!("  {}\n", line.join("  ").trim_end()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordination::leases::{Lease, LeaseId, MappingLeases};
    use crate::model::store::Loaded;
    use serde_json::json;

    const A: &str = "6d9bce8e-836b-442c-8070-74e77903c815";
    const NOW: i64 = 1_800_000_000_000;

    fn mapping(window_s: u32) -> EventSourceMapping {
        let Loaded::Valid(m) = Loaded::from_json(json!({
            "UUID": A, "StartingPosition": "LATEST", "MaximumBatchingWindowInSeconds": window_s,
            "FunctionArn": "f", "LastModified": 1.0, "State": "Enabled", "Topics": ["t"],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b:9092"]}},
            "Version": 1
        })) else {
            panic!("valid mapping")
        };
        m
    }

    fn report(partition: i32, idle_ms: i64, error: Option<&str>) -> PartitionReport {
        PartitionReport {
            mapping: A.into(),
            topic: "t".into(),
            partition,
            position: 0,
            lag: 0,
            records_per_second: 0.0,
            advanced_at_ms: NOW - idle_ms,
            last_invoke_ms: None,
            last_error: error.map(str::to_owned),
        }
    }

    #[test]
    fn stuck_needs_lag_and_no_progress_past_the_threshold_and_owners_come_from_the_leases() {
        let leases = Snapshot {
            pollers: vec![],
            mappings: [(
                A.to_owned(),
                MappingLeases {
                    leases: (0..4)
                        .map(|p| Lease {
                            id: LeaseId::new(A, "t", p),
                            owner: (p != 3).then(|| if p == 2 { "gone".to_owned() } else { "p1".to_owned() }),
                            counter: 1,
                            from_earliest: false,
                            fence_ms: None,
                        })
                        .collect(),
                    ..MappingLeases::default()
                },
            )]
            .into(),
        };
        let reports = vec![report(0, 400_000, Some("boom")), report(1, 400_000, None), report(2, 10, None)];
        let progress = vec![
            PollerProgress {
                poller: "p1".into(),
                expires_at_ms: NOW + 5_000,
                progress: super::super::progress::encode(&reports),
            },
            PollerProgress { poller: "gone".into(), expires_at_ms: NOW - 1, progress: String::new() },
        ];
        let offsets: BTreeMap<i32, Offsets> = [
            (0, Offsets { earliest: 0, end: 50, committed: Some(20) }),
            (1, Offsets { earliest: 0, end: 50, committed: Some(50) }),
            (2, Offsets { earliest: 5, end: 9, committed: None }),
            (3, Offsets { earliest: 0, end: 0, committed: None }),
        ]
        .into();
        let m = mapping(0);
        let s = build(&m, Ok(&offsets), &leases, &progress, NOW, stuck_after(&m));
        let row = |p: usize| &s.partitions[p];
        assert_eq!((row(0).lag, row(0).stuck, row(0).last_error.as_deref()), (Some(30), true, Some("boom")));
        assert_eq!((row(1).lag, row(1).stuck), (Some(0), false), "no lag, not stuck however idle");
        assert_eq!(
            (row(2).lag, row(2).owner_expired, row(2).stuck),
            (Some(4), true, false),
            "from the earliest without a commit"
        );
        assert_eq!((row(3).owner.as_deref(), row(3).stuck), (None, false));
        // A long batching window raises the threshold: 3 windows of 300 s.
        let slow = mapping(300);
        assert_eq!(stuck_after(&slow), Duration::from_secs(900));
        assert!(!build(&slow, Ok(&offsets), &leases, &progress, NOW, stuck_after(&slow)).partitions[0].stuck);
        // Kafka unreachable: owners still shown, offsets unknown, nothing claimed stuck.
        let s = build(&m, Err("brokers unreachable"), &leases, &progress, NOW, stuck_after(&m));
        assert_eq!(
            (s.error.as_deref(), s.partitions.len(), s.partitions[0].lag, s.partitions[0].stuck),
            (Some("brokers unreachable"), 3, None, false)
        );
    }
}
