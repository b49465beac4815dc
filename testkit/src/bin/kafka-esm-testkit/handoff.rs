//! `sample-offsets` and `handoff-report`, for `scripts/handoff-gap.sh`.
//!
//! `sample-offsets` writes a consumer group's committed offsets and the high watermarks every
//! `--interval-ms`, read by the test kit's own librdkafka client, as JSON lines
//! `{"t": epoch_s, "c": [committed|null…], "h": [high…]}` until SIGTERM.
//!
//! `handoff-report` prints, per handoff, the longest time each partition's committed offset did
//! not advance while records were waiting; the poller invocations (from `lambda-front`'s log),
//! their deadlines and the final lag; and exits non-zero when a check fails (an invocation
//! overran its deadline, too few successors or handoffs, records not all committed, lag not 0)
//! -- never on the gap figure.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use kafka_esm_testkit::kafka::{OffsetReader, epoch_s};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    #[arg(long)]
    out: PathBuf,
}

pub async fn sample(args: SampleArgs) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        crate::terminated().await;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // librdkafka's calls block: the sampling loop runs on a thread of its own.
    tokio::task::spawn_blocking(move || sample_loop(&args, &stop)).await?
}

fn sample_loop(args: &SampleArgs, stop: &std::sync::atomic::AtomicBool) -> Result<()> {
    let reader = OffsetReader::new(&args.bootstrap, &args.group, &args.topic, &[])?;
    let mut out = std::fs::File::create(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let period = Duration::from_millis(args.interval_ms);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let began = std::time::Instant::now();
        let began_s = epoch_s();
        // Keep sampling through a broker hiccup.
        let line = match reader.committed().and_then(|c| Ok((c, reader.watermarks()?))) {
            Ok((committed, watermarks)) => {
                let highs: Vec<i64> = watermarks.iter().map(|(_, h)| *h).collect();
                json!({"t": (began_s + epoch_s()) / 2.0, "c": committed, "h": highs})
            }
            Err(e) => json!({"t": began_s, "error": format!("{e:#}")}),
        };
        writeln!(out, "{line}")?;
        if let Some(rest) = period.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    samples: PathBuf,
    #[arg(long)]
    front_log: PathBuf,
    /// `produce --out` of the producer.
    #[arg(long)]
    produced: PathBuf,
    /// `offsets --format json` after lag reached 0.
    #[arg(long = "final")]
    final_offsets: PathBuf,
    #[arg(long)]
    stop_margin_ms: u64,
    #[arg(long)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    #[arg(long, default_value_t = 2)]
    min_handoffs: usize,
}

/// One offsets sample.
struct Sample {
    t: f64,
    committed: Vec<Option<i64>>,
    high: Vec<i64>,
}

fn json_lines(path: &Path) -> Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(serde_json::from_str(&line).with_context(|| format!("{}: {line}", path.display()))?);
        }
    }
    Ok(out)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

/// A stall: from when records first waited at a committed offset to when it advanced (`None`:
/// never did), and the offset.
type Stall = (f64, Option<f64>, i64);

/// The intervals during which partition `p`'s committed offset stayed put while the high
/// watermark was above it.
fn stalls(samples: &[Sample], p: usize) -> Vec<Stall> {
    let mut out = Vec::new();
    let mut current: Option<i64> = None;
    let mut since: Option<f64> = None;
    for s in samples {
        let (c, h, t) = (s.committed[p].unwrap_or(0), s.high[p], s.t);
        if current != Some(c) {
            if let (Some(start), Some(offset)) = (since, current) {
                out.push((start, Some(t), offset));
            }
            current = Some(c);
            since = None;
        }
        if since.is_none() && h > c {
            since = Some(t);
        }
    }
    if let (Some(start), Some(offset)) = (since, current) {
        out.push((start, None, offset));
    }
    out
}

/// A poller invocation as the runtime saw it.
#[derive(Debug, Clone)]
struct Invocation {
    rid: String,
    start: f64,
    deadline: f64,
    reason: String,
    end: Option<f64>,
    result: Option<Value>,
}

fn reason(payload: &Value) -> Option<String> {
    payload.get("kafkaEsm")?.get("reason")?.as_str().map(str::to_owned)
}

fn result_text(result: Option<&Value>) -> String {
    match result {
        None => "-".to_owned(),
        Some(r) if r.get("exit").is_some() => format!(
            "exit={} records={} batches={} failedInvokes={}",
            py(&r["exit"]),
            py(&r["records"]),
            py(&r["batches"]),
            py(&r["failedInvokes"])
        ),
        Some(r) => r.to_string().chars().take(120).collect(),
    }
}

/// A JSON value printed as the Python report printed it (strings bare, null as None).
fn py(v: &Value) -> String {
    match v {
        Value::Null => "None".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[allow(clippy::too_many_lines)]
pub fn report(args: &ReportArgs) -> Result<bool> {
    let samples: Vec<Sample> = json_lines(&args.samples)?
        .into_iter()
        .filter_map(|s| {
            let committed = s.get("c")?.as_array()?.iter().map(Value::as_i64).collect();
            let high = s.get("h")?.as_array()?.iter().map(|h| h.as_i64().unwrap_or(0)).collect();
            Some(Sample { t: s["t"].as_f64()?, committed, high })
        })
        .collect();
    let events = json_lines(&args.front_log)?;
    let produced = read_json(&args.produced)?;
    let final_offsets = read_json(&args.final_offsets)?;
    let margin = args.stop_margin_ms as f64 / 1000.0;
    let t0 = samples.first().map_or(0.0, |s| s.t);
    let rel = |t: f64| t - t0;

    let mut by_rid: BTreeMap<String, Invocation> = BTreeMap::new();
    for e in &events {
        let rid = e["rid"].as_str().unwrap_or_default().to_owned();
        match e["event"].as_str() {
            Some("delivered") => {
                by_rid.insert(
                    rid.clone(),
                    Invocation {
                        rid,
                        start: e["t"].as_f64().unwrap_or(0.0),
                        deadline: e["deadline"].as_f64().unwrap_or(0.0),
                        reason: reason(&e["payload"]).unwrap_or_else(|| "schedule".to_owned()),
                        end: None,
                        result: None,
                    },
                );
            }
            Some(kind @ ("returned" | "failed")) => {
                if let Some(i) = by_rid.get_mut(&rid) {
                    i.end = e["t"].as_f64();
                    i.result =
                        Some(if kind == "returned" { e["result"].clone() } else { json!({"error": e["result"]}) });
                }
            }
            _ => {}
        }
    }
    let mut invocations: Vec<Invocation> = by_rid.into_values().collect();
    invocations.sort_by(|a, b| a.start.total_cmp(&b.start));
    let relays = events
        .iter()
        .filter(|e| e["event"] == "async-invoke" && reason(&e["payload"]).as_deref() == Some("relay"))
        .count();
    let errors: Vec<&Value> =
        events.iter().filter(|e| matches!(e["event"].as_str(), Some("front-error" | "async-invoke-error"))).collect();

    let mut ok = true;
    println!(
        "Poller invocations (cargo lambda watch, deadline {:.0} s after delivery, stop margin {margin:.0} s); times in s from the first sample:",
        args.timeout_ms as f64 / 1000.0
    );
    println!("   #  reason     started  deadline  returned  before deadline  result");
    for (n, i) in invocations.iter().enumerate() {
        let (left, returned) = match i.end {
            None => ("(running)".to_owned(), "-".to_owned()),
            Some(end) => {
                let mut left = format!("{:.2} s", i.deadline - end);
                if end > i.deadline {
                    left.push_str("  LATE");
                    ok = false;
                }
                (left, format!("{:8.2}", rel(end)))
            }
        };
        println!(
            "  {:2}  {:<9} {:8.2}  {:8.2}  {returned:>8}  {left:>15}  {}",
            n + 1,
            i.reason,
            rel(i.start),
            rel(i.deadline),
            result_text(i.result.as_ref())
        );
    }
    let successors: Vec<&Invocation> = invocations.iter().filter(|i| i.reason == "relay").collect();
    println!("  relay invokes sent (async, 202): {relays}; successor invocations delivered: {}", successors.len());
    if !errors.is_empty() {
        ok = false;
        for e in errors.iter().take(5) {
            println!("  front error: {e}");
        }
    }

    // Handoffs: a poller that returned, and a relay successor that started around its stop.
    let mut handoffs = Vec::new();
    for i in &invocations {
        let Some(end) = i.end else { continue };
        let stop_at = i.deadline - margin;
        if let Some(succ) = successors.iter().find(|s| s.start >= stop_at - 1.0 && s.rid != i.rid) {
            handoffs.push((i, *succ, stop_at, end));
        }
    }
    let partitions = samples.first().map_or(0, |s| s.committed.len());
    let all_stalls: Vec<Vec<Stall>> = (0..partitions).map(|p| stalls(&samples, p)).collect();
    let production_end = produced["stopped_at"].as_f64();
    let first_advance = samples.iter().find(|s| s.committed.iter().any(|c| c.unwrap_or(0) > 0)).map(|s| s.t);
    let last_t = samples.last().map_or(0.0, |s| s.t);

    println!();
    println!(
        "Handoff gaps: per partition, the longest time its committed offset did not advance while records were waiting (sampled every {} ms by a separate librdkafka client), in stalls overlapping [stop - 0.5 s, successor start + 10 s]:",
        args.interval_ms
    );
    let mut used: HashSet<(usize, u64)> = HashSet::new();
    let mut gaps = Vec::new();
    for (k, (a, b, stop_at, end)) in handoffs.iter().enumerate() {
        let (lo, hi) = (stop_at - 0.5, b.start + 10.0);
        let after_production = production_end.is_some_and(|p| lo > p);
        let per: Vec<f64> = (0..partitions)
            .map(|p| {
                let mut best: f64 = 0.0;
                for st in &all_stalls[p] {
                    let st_end = st.1.unwrap_or(f64::INFINITY);
                    if st.0 <= hi && st_end >= lo {
                        used.insert((p, st.0.to_bits()));
                        best = best.max(st.1.unwrap_or(last_t) - st.0);
                    }
                }
                best
            })
            .collect();
        let gap = per.iter().copied().fold(0.0, f64::max);
        if !after_production {
            gaps.push(gap);
        }
        let per_text: Vec<String> = per.iter().map(|g| format!("{g:.2}")).collect();
        println!(
            "  handoff {}: stop at {:6.2} s, successor started {:+.2} s, predecessor returned {:+.2} s; max gap {gap:.2} s (partitions: {}){}",
            k + 1,
            rel(*stop_at),
            b.start - stop_at,
            end - stop_at,
            per_text.join(", "),
            if after_production { " (after production stopped: nothing waiting)" } else { "" }
        );
        let _ = a;
    }
    let mut steady: f64 = 0.0;
    for (p, list) in all_stalls.iter().enumerate() {
        for st in list {
            let Some(end) = st.1 else { continue };
            if used.contains(&(p, st.0.to_bits())) {
                continue;
            }
            // The first poller's start, not a handoff.
            if first_advance.is_some_and(|f| st.0 < f) {
                continue;
            }
            steady = steady.max(end - st.0);
        }
    }
    if gaps.is_empty() {
        println!("  no handoff happened while records were flowing");
    } else {
        println!(
            "  overall max handoff gap: {:.2} s over {} handoffs with records flowing (target <= 1 s on the local stack); steady state between handoffs: max {steady:.2} s",
            gaps.iter().copied().fold(0.0, f64::max),
            gaps.len()
        );
    }

    println!();
    let produced_counts: Vec<i64> =
        produced["partitions"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
    let produce_errors = produced["error_count"].as_i64().unwrap_or(0);
    let committed: Vec<Option<i64>> = final_offsets["partitions"]
        .as_array()
        .map(|a| a.iter().map(|p| p["committed"].as_i64()).collect())
        .unwrap_or_default();
    let list = |v: &[String]| v.join(", ");
    println!(
        "Records: produced {} ({} per partition, {produce_errors} produce errors); committed {} ({}); lag {}",
        produced_counts.iter().sum::<i64>(),
        list(&produced_counts.iter().map(ToString::to_string).collect::<Vec<_>>()),
        committed.iter().map(|c| c.unwrap_or(0)).sum::<i64>(),
        list(&committed.iter().map(|c| c.map_or_else(|| "None".to_owned(), |c| c.to_string())).collect::<Vec<_>>()),
        py(&final_offsets["lag"])
    );
    let returned = invocations.iter().filter(|i| i.end.is_some()).count();
    let checks = [
        (
            format!("every poller invocation that returned did so before its deadline ({returned} returned)"),
            invocations.iter().all(|i| i.end.is_none_or(|e| e <= i.deadline)) && returned > 0,
        ),
        (
            format!(
                "successors ran (relay invocations: {}, handoffs with records flowing: {}, need >= {})",
                successors.len(),
                gaps.len(),
                args.min_handoffs
            ),
            successors.len() >= args.min_handoffs && gaps.len() >= args.min_handoffs,
        ),
        (
            "no records lost: committed == produced on every partition".to_owned(),
            produce_errors == 0
                && committed.len() == produced_counts.len()
                && committed.iter().zip(&produced_counts).all(|(c, p)| *c == Some(*p)),
        ),
        ("lag reached 0".to_owned(), final_offsets["lag"].as_i64() == Some(0)),
    ];
    for (name, passed) in &checks {
        println!("  [{}] {name}", if *passed { "ok" } else { "FAIL" });
        ok = ok && *passed;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, c: Option<i64>, h: i64) -> Sample {
        Sample { t, committed: vec![c], high: vec![h] }
    }

    #[test]
    fn a_stall_runs_from_the_first_waiting_sample_to_the_advance() {
        let samples = [
            s(0.0, None, 0),
            s(1.0, None, 3),    // records wait at 0 from t=1
            s(2.0, Some(3), 3), // advanced: stall 1..2 at offset 0
            s(3.0, Some(3), 5), // wait at 3 from t=3
            s(4.0, Some(3), 6), // still waiting at the end
        ];
        assert_eq!(stalls(&samples, 0), vec![(1.0, Some(2.0), 0), (3.0, None, 3)]);
    }

    #[test]
    fn nothing_waiting_is_no_stall() {
        let samples = [s(0.0, Some(2), 2), s(1.0, Some(2), 2), s(2.0, Some(4), 4)];
        assert!(stalls(&samples, 0).is_empty());
    }
}
