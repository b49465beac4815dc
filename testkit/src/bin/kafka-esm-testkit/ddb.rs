//! For `scripts/ddb-calls.sh`, which measures DynamoDB calls per partition-minute of `esm poll`
//! at steady state:
//!
//! - `ddb-proxy`: forwards every request to DynamoDB (dynalite) unchanged and counts it by
//!   operation (`X-Amz-Target`), table and item kind (the `LeaseKey` prefix: `poller#` heartbeat
//!   items, `lease#` partition leases), plus error answers by type (ConditionalCheckFailed
//!   separately) and the items scans read (`ScannedCount`). `GET /__ddb_calls/counts` returns
//!   the counts since the last `POST /__ddb_calls/reset`.
//!   It can also impose an outage on one table (`soak`, or `POST /__ddb_calls/outage` with
//!   `{"table", "mode": "fail"|"stall", "ms"}`): for that long every request naming the table is
//!   answered `500 InternalServerError` at once (`fail`), or held until the outage ends and only
//!   then forwarded (`stall`: a slow DynamoDB, whose writes land after the client gave up).
//! - `ddb-leases`: reads the leases table straight from dynalite (not through the proxy, so it is
//!   not counted): steady means every partition is leased by a live poller, exactly `--pollers`
//!   pollers are live and none is stopping, and each holds at most its fair share. Exit 0 when
//!   steady, 3 when not, 4 when steady but a lease changed since `--compare`.
//! - `ddb-reset`: zeroes the proxy's and the Invoke stub's counts.
//! - `ddb-report`: the figures.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{forward, json as http_json, read_body};

const WRITES: &[&str] = &["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"];
const READS: &[&str] = &["GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"];
const CCF: &str = "ConditionalCheckFailedException";

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[arg(long)]
    port: u16,
    /// host:port of DynamoDB (dynalite).
    #[arg(long)]
    upstream: String,
}

#[derive(Debug)]
struct Counts {
    since: SystemTime,
    /// (operation, table, item kind) -> calls.
    calls: BTreeMap<(String, String, String), u64>,
    /// (operation, error type) -> answers.
    errors: BTreeMap<(String, String), u64>,
    scanned: u64,
    upstream_failures: u64,
    /// Requests answered 500 by an outage, and requests held by one.
    outage_failed: u64,
    outage_stalled: u64,
}

impl Counts {
    fn new() -> Self {
        Self {
            since: SystemTime::now(),
            calls: BTreeMap::new(),
            errors: BTreeMap::new(),
            scanned: 0,
            upstream_failures: 0,
            outage_failed: 0,
            outage_stalled: 0,
        }
    }

    fn snapshot(&self) -> Value {
        let since = self.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        json!({
            "since": since,
            "elapsed_s": self.since.elapsed().map_or(0.0, |d| d.as_secs_f64()),
            "calls": self.calls.iter().map(|((op, table, kind), n)| json!({"op": op, "table": table, "kind": kind, "count": n})).collect::<Vec<_>>(),
            "errors": self.errors.iter().map(|((op, kind), n)| json!({"op": op, "type": kind, "count": n})).collect::<Vec<_>>(),
            "scanned_items": self.scanned,
            "upstream_failures": self.upstream_failures,
            "outage_failed": self.outage_failed,
            "outage_stalled": self.outage_stalled,
        })
    }
}

struct Proxy {
    upstream: String,
    counts: Mutex<Counts>,
    outage: Mutex<Option<Outage>>,
}

/// How requests to a table in an outage are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageMode {
    /// `500 InternalServerError` at once (the SDK retries it).
    Fail,
    /// Held until the outage ends, then forwarded.
    Stall,
}

impl std::fmt::Display for OutageMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fail => "fail",
            Self::Stall => "stall",
        })
    }
}

#[derive(Debug, Clone)]
struct Outage {
    table: String,
    mode: OutageMode,
    until: tokio::time::Instant,
}

#[derive(Debug, Deserialize)]
struct OutageRequest {
    table: String,
    mode: OutageMode,
    ms: u64,
}

impl Proxy {
    fn new(upstream: &str) -> Self {
        Self { upstream: upstream.to_owned(), counts: Mutex::new(Counts::new()), outage: Mutex::new(None) }
    }

    fn start_outage(&self, table: &str, mode: OutageMode, length: std::time::Duration) {
        let until = tokio::time::Instant::now() + length;
        *self.outage.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Outage { table: table.to_owned(), mode, until });
    }

    /// The outage `table` is in right now, if any.
    fn outage_of(&self, table: &str) -> Option<Outage> {
        let outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        outage.as_ref().filter(|o| o.table == table && o.until > tokio::time::Instant::now()).cloned()
    }
}

/// A counting proxy running in this process (for `soak`).
pub struct ProxyHandle {
    pub endpoint: String,
    proxy: Arc<Proxy>,
}

impl ProxyHandle {
    /// Starts the proxy on a free port in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let proxy = Arc::new(Proxy::new(upstream));
        let app = Router::new().fallback(proxy_handle).with_state(proxy.clone());
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.context("listen for the DynamoDB proxy")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { endpoint, proxy })
    }

    /// From now on, for `length`, requests to `table` fail or stall (see [`OutageMode`]).
    pub fn outage(&self, table: &str, mode: OutageMode, length: std::time::Duration) {
        self.proxy.start_outage(table, mode, length);
    }

    /// The counts since the start (as `GET /__ddb_calls/counts` returns them).
    pub fn counts(&self) -> Value {
        self.proxy.counts.lock().unwrap_or_else(PoisonError::into_inner).snapshot()
    }
}

/// `poller#` / `lease#` from the item's key (or a scan's `:p` prefix), else `-`.
fn item_kind(request: &Value) -> String {
    let mut candidates: Vec<&str> = Vec::new();
    for field in ["Key", "Item"] {
        if let Some(map) = request.get(field).and_then(Value::as_object) {
            candidates.extend(map.values().filter_map(|v| v.get("S")?.as_str()));
        }
    }
    if let Some(p) = request.pointer("/ExpressionAttributeValues/:p/S").and_then(Value::as_str) {
        candidates.push(p);
    }
    candidates
        .into_iter()
        .find_map(|value| value.split_once('#').map(|(prefix, _)| format!("{prefix}#")))
        .unwrap_or_else(|| "-".to_owned())
}

pub async fn proxy(args: ProxyArgs) -> Result<()> {
    let state = Arc::new(Proxy::new(&args.upstream));
    let app = Router::new().fallback(proxy_handle).with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("listen on 127.0.0.1:{}", args.port))?;
    println!("proxy on 127.0.0.1:{} -> {}", args.port, args.upstream);
    axum::serve(listener, app).with_graceful_shutdown(crate::terminated()).await?;
    Ok(())
}

fn json_response(value: &Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], value.to_string()).into_response()
}

async fn proxy_handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let lock = || proxy.counts.lock().unwrap_or_else(PoisonError::into_inner);
    match (parts.method.clone(), parts.uri.path()) {
        (Method::GET, "/__ddb_calls/counts") => return json_response(&lock().snapshot()),
        (Method::POST, "/__ddb_calls/reset") => {
            let mut counts = lock();
            *counts = Counts::new();
            return json_response(&counts.snapshot());
        }
        (Method::POST, "/__ddb_calls/outage") => {
            let request = match read_body(body).await.map(|b| serde_json::from_slice::<OutageRequest>(&b)) {
                Ok(Ok(request)) => request,
                Ok(Err(e)) => {
                    return (StatusCode::BAD_REQUEST, format!("{{table, mode, ms}} expected: {e}")).into_response();
                }
                Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}")).into_response(),
            };
            proxy.start_outage(&request.table, request.mode, std::time::Duration::from_millis(request.ms));
            return json_response(&json!({"table": request.table, "mode": request.mode, "ms": request.ms}));
        }
        _ => {}
    }
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:#}")).into_response(),
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let op = if target.is_empty() {
        format!("{} {path}", parts.method)
    } else {
        target.rsplit('.').next().unwrap_or(target).to_owned()
    };
    let request_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let table = request_json.get("TableName").and_then(Value::as_str).unwrap_or("-").to_owned();
    let kind = item_kind(&request_json);
    if let Some(outage) = proxy.outage_of(&table) {
        match outage.mode {
            OutageMode::Fail => {
                lock().outage_failed += 1;
                let message = json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                    "message": "ddb-proxy: outage",
                });
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-type", "application/x-amz-json-1.0")],
                    message.to_string(),
                )
                    .into_response();
            }
            OutageMode::Stall => {
                lock().outage_stalled += 1;
                tokio::time::sleep_until(outage.until).await;
            }
        }
    }
    let key = (op.clone(), table, kind);
    let answer = match forward(&proxy.upstream, parts.method, &path, &parts.headers, body).await {
        Ok(answer) => answer,
        Err(e) => {
            let mut counts = lock();
            *counts.calls.entry(key).or_default() += 1;
            counts.upstream_failures += 1;
            let message = json!({"message": format!("ddb-proxy: upstream: {e:#}")});
            return (StatusCode::BAD_GATEWAY, message.to_string()).into_response();
        }
    };
    let answer_json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let status = answer.status.as_u16();
    let error_type = (status >= 400).then(|| {
        answer_json
            .get("__type")
            .and_then(Value::as_str)
            .and_then(|t| t.rsplit('#').next())
            .filter(|t| !t.is_empty())
            .map_or_else(|| format!("HTTP {status}"), str::to_owned)
    });
    let scanned = if status < 400 && op == "Scan" { answer_json["ScannedCount"].as_u64().unwrap_or(0) } else { 0 };
    {
        let mut counts = lock();
        *counts.calls.entry(key).or_default() += 1;
        counts.scanned += scanned;
        if let Some(kind) = error_type {
            *counts.errors.entry((op, kind)).or_default() += 1;
        }
    }
    answer.into_response()
}

#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// dynalite's URL (not the proxy's: these reads are not counted).
    #[arg(long)]
    dynamodb: String,
    #[arg(long)]
    table: String,
    #[arg(long)]
    partitions: usize,
    #[arg(long)]
    pollers: usize,
    /// Save the snapshot here.
    #[arg(long)]
    save: Option<PathBuf>,
    /// A snapshot saved earlier: did any lease change since?
    #[arg(long)]
    compare: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PollerItem {
    expires_at_ms: i64,
    held: i64,
    stopping: bool,
    counter: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseItem {
    partition: i64,
    owner: Option<String>,
    counter: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    now_ms: i64,
    pollers: BTreeMap<String, PollerItem>,
    leases: Vec<LeaseItem>,
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str, default: i64) -> i64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(default)
}

async fn lease_snapshot(endpoint: &str, table: &str) -> Result<Snapshot> {
    let config = kafka_esm_testkit::sdk_config(endpoint).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let items: Vec<_> = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .with_context(|| format!("scan {table} at {endpoint}"))?;
    let mut pollers = BTreeMap::new();
    let mut leases = Vec::new();
    for item in items {
        let key = item.get("LeaseKey").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if let Some(id) = key.strip_prefix("poller#") {
            pollers.insert(
                id.to_owned(),
                PollerItem {
                    expires_at_ms: number(&item, "ExpiresAtMs", 0),
                    held: number(&item, "Held", 0),
                    stopping: item.get("Stopping").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                    counter: number(&item, "Counter", 0),
                },
            );
        } else if key.starts_with("lease#") {
            leases.push(LeaseItem {
                partition: number(&item, "Partition", -1),
                owner: item.get("Owner").and_then(|v| v.as_s().ok()).cloned(),
                counter: number(&item, "Counter", 0),
            });
        }
    }
    leases.sort_by_key(|l| l.partition);
    Ok(Snapshot { now_ms, pollers, leases })
}

fn assess(snap: &Snapshot, partitions: usize, pollers: usize) -> (bool, String) {
    let live: BTreeMap<&String, &PollerItem> =
        snap.pollers.iter().filter(|(_, v)| v.expires_at_ms >= snap.now_ms).collect();
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for lease in &snap.leases {
        if let Some(owner) = lease.owner.as_ref().filter(|o| live.contains_key(o)) {
            *held.entry(owner).or_default() += 1;
        }
    }
    let leased: usize = held.values().sum();
    let share = partitions.div_ceil(pollers.max(1));
    let spread: Vec<String> = live.keys().map(|p| held.get(p.as_str()).copied().unwrap_or(0).to_string()).collect();
    let spread = if spread.is_empty() { "-".to_owned() } else { spread.join("/") };
    let text = format!(
        "{leased}/{partitions} partitions leased by live pollers; {} live poller{} holding {spread} (fair share {share})",
        live.len(),
        if live.len() == 1 { "" } else { "s" }
    );
    let steady = snap.leases.len() == partitions
        && leased == partitions
        && live.len() == pollers
        && !live.values().any(|v| v.stopping)
        && held.values().all(|n| *n <= share);
    (steady, text)
}

/// Exit code: 0 steady, 3 not steady, 4 steady but a lease changed since `--compare`.
pub async fn leases(args: LeasesArgs) -> Result<i32> {
    let snap = lease_snapshot(&args.dynamodb, &args.table).await?;
    let (steady, mut text) = assess(&snap, args.partitions, args.pollers);
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_string(&snap)?).with_context(|| format!("write {}", path.display()))?;
    }
    let mut changed = 0;
    if let Some(path) = &args.compare {
        let before: Snapshot = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let before: BTreeMap<i64, &LeaseItem> = before.leases.iter().map(|l| (l.partition, l)).collect();
        changed = snap.leases.iter().filter(|l| before.get(&l.partition) != Some(l)).count();
        if changed == 0 {
            text.push_str("; no lease changed owner or counter since the start");
        } else {
            text.push_str(&format!("; {changed} leases changed owner or counter since the start"));
        }
    }
    println!("{text}");
    Ok(if !steady {
        3
    } else if changed > 0 {
        4
    } else {
        0
    })
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[arg(long)]
    proxy: String,
    #[arg(long)]
    stub: String,
}

pub async fn reset(args: ResetArgs) -> Result<()> {
    http_json(Method::POST, &format!("{}/__ddb_calls/reset", args.proxy)).await?;
    http_json(Method::POST, &format!("{}/__stub/reset", args.stub)).await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    proxy: String,
    #[arg(long)]
    stub: String,
    #[arg(long)]
    partitions: usize,
    #[arg(long)]
    pollers: usize,
    #[arg(long)]
    warmup_s: f64,
    /// Records per second the trickle produced.
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    renew_ms: f64,
    #[arg(long)]
    scan_ms: f64,
    #[arg(long)]
    refresh_ms: f64,
    #[arg(long)]
    settings: String,
    #[arg(long)]
    build: String,
    #[arg(long)]
    command: String,
    #[arg(long)]
    before_text: String,
    #[arg(long)]
    after_text: String,
}

fn what(op: &str, kind: &str, table: &str) -> &'static str {
    match (op, kind) {
        ("UpdateItem", "poller#") => "heartbeats",
        ("UpdateItem", "lease#") => "lease acquire/release",
        ("PutItem", "lease#") => "lease items created",
        ("DeleteItem", "poller#") => "heartbeat removed",
        ("DeleteItem", "lease#") => "lease items deleted",
        ("Scan", "poller#") => "live pollers (every lease scan)",
        ("Scan", "lease#") => "a mapping's leases (every lease scan)",
        ("Scan", "-") if table.contains("mappings") => "mappings refresh",
        ("Scan", "-") => "lease scan (heartbeats and leases, one Scan)",
        _ => "",
    }
}

#[allow(clippy::too_many_lines)]
pub async fn report(args: ReportArgs) -> Result<()> {
    let counts = http_json(Method::GET, &format!("{}/__ddb_calls/counts", args.proxy)).await?;
    let stub = http_json(Method::GET, &format!("{}/__stub/counts", args.stub)).await?;
    let elapsed = counts["elapsed_s"].as_f64().unwrap_or(0.0);
    let minutes = elapsed / 60.0;
    let (partitions, pollers) = (args.partitions as f64, args.pollers as f64);
    let calls = counts["calls"].as_array().cloned().unwrap_or_default();
    let errors = counts["errors"].as_array().cloned().unwrap_or_default();
    let n = |c: &Value| c["count"].as_u64().unwrap_or(0);
    let op = |c: &Value| c["op"].as_str().unwrap_or_default().to_owned();
    let writes: u64 = calls.iter().filter(|c| WRITES.contains(&op(c).as_str())).map(n).sum();
    let reads: u64 = calls.iter().filter(|c| READS.contains(&op(c).as_str())).map(n).sum();
    let other: u64 =
        calls.iter().filter(|c| !WRITES.contains(&op(c).as_str()) && !READS.contains(&op(c).as_str())).map(n).sum();
    let ccf: u64 = errors.iter().filter(|e| e["type"] == CCF).map(n).sum();
    let scans: u64 = calls.iter().filter(|c| op(c) == "Scan").map(n).sum();
    let wpm = writes as f64 / partitions / minutes;
    let rpm = reads as f64 / partitions / minutes;
    let mut out = vec![String::new()];
    let mut p = |line: String| out.push(line);
    p(format!(
        "DynamoDB calls of {} x `esm poll` over one {}-partition mapping, steady state",
        args.pollers, args.partitions
    ));
    p(format!(
        "  window: {elapsed:.1} s, after a warm-up of {:.0} s (leases at the start: {})",
        args.warmup_s, args.before_text
    ));
    p(format!("  {:<11} {:<19} {:<8} {:>6} {:>7}   what", "operation", "table", "item", "calls", "/min"));
    for c in &calls {
        let (o, table, kind) = (op(c), c["table"].as_str().unwrap_or_default(), c["kind"].as_str().unwrap_or_default());
        p(format!(
            "  {o:<11} {table:<19} {kind:<8} {:>6} {:>7.1}   {}",
            n(c),
            n(c) as f64 / minutes,
            what(&o, kind, table)
        ));
    }
    if calls.is_empty() {
        p("  (no calls)".to_owned());
    }
    let mut per_op: BTreeMap<String, u64> = BTreeMap::new();
    for c in &calls {
        *per_op.entry(op(c)).or_default() += n(c);
    }
    let per_op: Vec<String> = per_op.iter().map(|(o, k)| format!("{o} {k}")).collect();
    p(format!("  per operation: {}", if per_op.is_empty() { "-".to_owned() } else { per_op.join(", ") }));
    p(format!(
        "  writes: {writes} ({:.1}/min, {:.1} per poller-minute)   reads: {reads} ({:.1}/min, {:.1} per poller-minute){}",
        writes as f64 / minutes,
        writes as f64 / minutes / pollers,
        reads as f64 / minutes,
        reads as f64 / minutes / pollers,
        if other > 0 { format!("   other: {other}") } else { String::new() }
    ));
    let other_errors: String = errors
        .iter()
        .filter(|e| e["type"] != CCF)
        .map(|e| format!("; {} {}: {}", op(e), e["type"].as_str().unwrap_or_default(), n(e)))
        .collect();
    p(format!("  conditional-check failures: {ccf}{other_errors}"));
    let failures = counts["upstream_failures"].as_u64().unwrap_or(0);
    if failures > 0 {
        p(format!("  proxy could not reach dynalite {failures} times"));
    }
    let scanned = counts["scanned_items"].as_u64().unwrap_or(0);
    p(format!(
        "  items read by scans (ScannedCount): {scanned}{}",
        if scans > 0 { format!(" ({:.1} per scan)", scanned as f64 / scans as f64) } else { String::new() }
    ));
    p(format!("  writes per partition-minute: {wpm:.2}   reads per partition-minute: {rpm:.2}"));
    // What the settings predict: one heartbeat per renew interval per poller; one Scan of the
    // leases table per lease scan; one mappings scan per refresh.
    let model_w = pollers * 60000.0 / args.renew_ms / partitions;
    let model_r = pollers * (60000.0 / args.scan_ms + 60000.0 / args.refresh_ms) / partitions;
    p(format!(
        "  model at these settings: {model_w:.2} writes and {model_r:.2} reads per partition-minute (pollers x 60000/RENEW; pollers x (60000/SCAN + 60000/REFRESH); / partitions)"
    ));
    p(format!("  target <= 2 writes per partition-minute: {} ({wpm:.2})", if wpm <= 2.0 { "MET" } else { "NOT MET" }));
    p(format!(
        "  heartbeat writes are per poller, not per partition: <= 2 per partition-minute needs >= {:.1} partitions per poller at these settings",
        60000.0 / args.renew_ms / 2.0
    ));
    p(format!(
        "  function: {} invocations, {} records in the window (trickle {} records/s)",
        stub["invocations"].as_u64().unwrap_or(0),
        stub["records"].as_u64().unwrap_or(0),
        args.rate
    ));
    p(format!("  leases at the end: {}", args.after_text));
    p(format!("  settings: pollers={} partitions={} {}", args.pollers, args.partitions, args.settings));
    p(format!("  build: {}", args.build));
    p(format!("  reproduce: {}", args.command));
    println!("{}", out.join("\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_kinds_come_from_the_key_or_the_scan_prefix() {
        let heartbeat = json!({"Key": {"LeaseKey": {"S": "poller#abc"}}});
        assert_eq!(item_kind(&heartbeat), "poller#");
        let lease = json!({"Item": {"LeaseKey": {"S": "lease#m#t#0"}, "Owner": {"S": "x"}}});
        assert_eq!(item_kind(&lease), "lease#");
        let scan = json!({"ExpressionAttributeValues": {":p": {"S": "lease#m#"}}});
        assert_eq!(item_kind(&scan), "lease#");
        assert_eq!(item_kind(&json!({"TableName": "t"})), "-");
    }

    fn snapshot(pollers: &[(&str, bool)], owners: &[&str]) -> Snapshot {
        Snapshot {
            now_ms: 1000,
            pollers: pollers
                .iter()
                .map(|(id, stopping)| {
                    ((*id).to_owned(), PollerItem { expires_at_ms: 2000, held: 0, stopping: *stopping, counter: 1 })
                })
                .collect(),
            leases: owners
                .iter()
                .enumerate()
                .map(|(i, o)| LeaseItem { partition: i as i64, owner: Some((*o).to_owned()), counter: 1 })
                .collect(),
        }
    }

    #[test]
    fn steady_means_all_leased_by_live_pollers_in_fair_shares() {
        let (steady, text) = assess(&snapshot(&[("a", false), ("b", false)], &["a", "a", "b", "b"]), 4, 2);
        assert!(steady, "{text}");
        assert_eq!(text, "4/4 partitions leased by live pollers; 2 live pollers holding 2/2 (fair share 2)");
        assert!(!assess(&snapshot(&[("a", false), ("b", false)], &["a", "a", "a", "b"]), 4, 2).0, "unfair");
        assert!(!assess(&snapshot(&[("a", false), ("b", true)], &["a", "a", "b", "b"]), 4, 2).0, "stopping");
        assert!(!assess(&snapshot(&[("a", false)], &["a", "a", "gone", "gone"]), 4, 1).0, "dead owner");
    }
}
