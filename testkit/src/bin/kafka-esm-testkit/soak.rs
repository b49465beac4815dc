//! `soak`: `esm poll` processes under fire (`scripts/soak.sh` builds and runs it).
//!
//! It starts tansu and dynalite on free ports, a DynamoDB proxy in front of dynalite that can
//! fail or stall the leases table (`ddb::ProxyHandle`), and the Invoke stub in this process
//! (every invocation recorded, each taking `--invoke-ms`), creates a `--partitions` topic and a
//! mapping, produces a steady `--rate` of records (one per producer batch, each stamped with its
//! produce time), and runs `--pollers` `esm poll` processes. Then, for `--cycles` cycles of
//! `--cycle-ms` each:
//!
//! 1. every poller that is down is restarted with probability `--restart-chance`;
//! 2. after a random part of the first half of the cycle, one action, chosen at random: SIGKILL a
//!    running poller (even one draining after SIGTERM), SIGTERM one, or an outage of the leases
//!    table (`--outage-min-ms`..`--outage-max-ms`, failing every request with 500 or holding
//!    every request until it ends and only then forwarding it). A poller is killed or terminated
//!    only while another one runs, so the fleet never empties on purpose (when none can be, the
//!    cycle's action is an outage).
//!
//! Afterwards every poller is restarted, production stops, and the soak waits (at most
//! `--drain-timeout-s`) for the mapping's committed offsets to reach the end of every partition,
//! then stops the pollers with SIGTERM and reports from what the Invoke stub saw:
//!
//! - produced: records acknowledged by the broker (and the partitions' end offsets);
//! - delivered: distinct records some successful invocation carried;
//! - lost: offsets below a partition's end that no invocation carried (must be 0);
//! - duplicates: deliveries beyond the first of a record (at-least-once allows them);
//! - overlaps: invocations that started while another invocation of the same partition was
//!   still running (must be 0);
//! - out of order: invocations whose records are not consecutive, or that start past a record not
//!   yet delivered (must be 0);
//! - the longest stall: the longest any record waited from its produce time to the start of its
//!   first invocation, with the record and when it was produced.
//!
//! The exit status is 1 when anything was lost, overlapped or out of order, 2 when the soak itself
//! could not run. Timings are figures, never checks. Logs: `--logs` (every poller incarnation's log,
//! `events.jsonl`, the soak's actions with their times, and `deliveries.jsonl`, each record's
//! produce time, first invocation and number of deliveries, in seconds from the soak's start).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::Args;
use kafka_esm_testkit::kafka::{self, Batching, Stamp, ValueShape, Workload, epoch_s};
use kafka_esm_testkit::{Dynalite, InvokeStub, Tansu};
use serde_json::{Value, json};

use crate::ddb::{OutageMode, ProxyHandle};

const FUNCTION: &str = "soak-fn";
const MAPPINGS_TABLE: &str = "soak-mappings";
const LEASES_TABLE: &str = "soak-leases";

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Fault cycles to run.
    #[arg(long, env = "SOAK_CYCLES", default_value_t = 100)]
    cycles: u32,
    /// How long each cycle lasts.
    #[arg(long, env = "SOAK_CYCLE_MS", default_value_t = 7000)]
    cycle_ms: u64,
    /// `esm poll` processes.
    #[arg(long, env = "SOAK_POLLERS", default_value_t = 3)]
    pollers: usize,
    #[arg(long, env = "SOAK_PARTITIONS", default_value_t = 12)]
    partitions: i32,
    /// Records per second over all partitions.
    #[arg(long, env = "SOAK_RATE", default_value_t = 24.0)]
    rate: f64,
    /// The mapping's BatchSize.
    #[arg(long, env = "SOAK_BATCH_SIZE", default_value_t = 10)]
    batch_size: u32,
    /// How long every invocation of the function takes.
    #[arg(long, env = "SOAK_INVOKE_MS", default_value_t = 200)]
    invoke_ms: u64,
    /// Chance that a poller found down at the start of a cycle is restarted then.
    #[arg(long, env = "SOAK_RESTART_CHANCE", default_value_t = 0.6)]
    restart_chance: f64,
    /// Relative weights of the actions: SIGKILL, SIGTERM, leases-table outage.
    #[arg(long, env = "SOAK_WEIGHTS", default_value = "1,1,1", value_delimiter = ',', num_args = 3)]
    weights: Vec<u32>,
    #[arg(long, env = "SOAK_OUTAGE_MIN_MS", default_value_t = 2000)]
    outage_min_ms: u64,
    #[arg(long, env = "SOAK_OUTAGE_MAX_MS", default_value_t = 5000)]
    outage_max_ms: u64,
    /// A poller still running this long after SIGTERM is killed (and reported).
    #[arg(long, env = "SOAK_TERM_TIMEOUT_S", default_value_t = 60)]
    term_timeout_s: u64,
    /// After the cycles, how long records may take to be committed before the rest count as lost.
    #[arg(long, env = "SOAK_DRAIN_TIMEOUT_S", default_value_t = 180)]
    drain_timeout_s: u64,
    /// Seed of the fault schedule (random when unset; printed either way).
    #[arg(long, env = "SOAK_SEED")]
    seed: Option<u64>,
    /// The `esm` binary.
    #[arg(long, env = "SOAK_ESM", default_value = "target/debug/esm")]
    esm: PathBuf,
    /// Where the poller logs and `events.jsonl` go (emptied first).
    #[arg(long, env = "SOAK_LOGS", default_value = ".local/soak")]
    logs: PathBuf,
}

impl SoakArgs {
    fn check(&self) -> Result<()> {
        if self.pollers < 2 {
            bail!("--pollers {}: at least 2 (a poller is only stopped while another runs)", self.pollers);
        }
        if self.partitions < 1 || self.cycle_ms < 1000 || !self.rate.is_finite() || self.rate <= 0.0 {
            bail!("--partitions, --cycle-ms (>= 1000) and --rate must be positive");
        }
        if self.outage_min_ms > self.outage_max_ms {
            bail!("--outage-min-ms {} is above --outage-max-ms {}", self.outage_min_ms, self.outage_max_ms);
        }
        if !(0.0..=1.0).contains(&self.restart_chance) {
            bail!("--restart-chance {}: a probability, 0..1", self.restart_chance);
        }
        if self.weights.iter().sum::<u32>() == 0 {
            bail!("--weights: at least one action needs a weight");
        }
        if !self.esm.exists() {
            bail!("{} not found: build it with `cargo build -p kafka-esm --bin esm`", self.esm.display());
        }
        Ok(())
    }

    fn reproduce(&self, seed: u64) -> String {
        format!(
            "SOAK_CYCLES={} SOAK_CYCLE_MS={} SOAK_POLLERS={} SOAK_PARTITIONS={} SOAK_RATE={} SOAK_BATCH_SIZE={} \
             SOAK_INVOKE_MS={} SOAK_RESTART_CHANCE={} SOAK_WEIGHTS={} SOAK_OUTAGE_MIN_MS={} SOAK_OUTAGE_MAX_MS={} \
             SOAK_SEED={seed} scripts/soak.sh",
            self.cycles,
            self.cycle_ms,
            self.pollers,
            self.partitions,
            self.rate,
            self.batch_size,
            self.invoke_ms,
            self.restart_chance,
            self.weights.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            self.outage_min_ms,
            self.outage_max_ms
        )
    }
}

/// The soak's own log of what it did, as JSON lines with `t` (seconds since the soak started).
struct Events {
    file: std::fs::File,
    start: Instant,
}

impl Events {
    fn log(&mut self, mut event: Value) {
        event["t"] = json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        // The events are for reading afterwards; a failed write only loses a line of them.
        let _ = writeln!(self.file, "{event}");
    }
}

/// A running `esm poll` process.
struct Running {
    child: tokio::process::Child,
    pid: u32,
    term_sent: Option<Instant>,
    killed: bool,
}

/// One poller place: restarted as a new process (a new poller id) each time.
struct Slot {
    n: usize,
    incarnations: u32,
    running: Option<Running>,
}

#[derive(Debug, Default)]
struct Tally {
    kills: u32,
    terms: u32,
    outages: BTreeMap<String, u32>,
    restarts: u32,
    /// Longest SIGTERM-to-exit time, and how many did not exit 0.
    slowest_term: Duration,
    term_failures: Vec<String>,
    term_timeouts: u32,
    /// Pollers that exited without being signalled.
    unexpected_exits: Vec<String>,
}

struct Fleet {
    esm: PathBuf,
    env: Vec<(&'static str, String)>,
    logs: PathBuf,
    slots: Vec<Slot>,
    term_timeout: Duration,
}

impl Fleet {
    fn start(&mut self, slot: usize, events: &mut Events) -> Result<()> {
        let s = &mut self.slots[slot];
        s.incarnations += 1;
        let log = self.logs.join(format!("poller-{}-{}.log", s.n, s.incarnations));
        let file = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = tokio::process::Command::new(&self.esm)
            .args(["poll", "--progress-interval", "0"])
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("start esm poll")?;
        let pid = child.id().context("esm poll has no pid")?;
        events.log(json!({"event": "start", "slot": s.n, "incarnation": s.incarnations, "pid": pid}));
        s.running = Some(Running { child, pid, term_sent: None, killed: false });
        Ok(())
    }

    /// Collects exited pollers; kills those that overran the SIGTERM timeout.
    fn reap(&mut self, tally: &mut Tally, events: &mut Events) {
        for s in &mut self.slots {
            let Some(r) = s.running.as_mut() else { continue };
            let status = match r.child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    if r.term_sent.is_some_and(|t| t.elapsed() > self.term_timeout) && !r.killed {
                        tally.term_timeouts += 1;
                        events.log(json!({"event": "term-timeout", "slot": s.n, "pid": r.pid}));
                        let _ = r.child.start_kill();
                        r.killed = true;
                    }
                    continue;
                }
                Err(e) => {
                    events.log(json!({"event": "wait-error", "slot": s.n, "pid": r.pid, "error": e.to_string()}));
                    continue;
                }
            };
            let label = format!("poller-{}-{} (pid {})", s.n, s.incarnations, r.pid);
            if r.killed {
                events.log(json!({"event": "exited", "slot": s.n, "pid": r.pid, "after": "SIGKILL"}));
            } else if let Some(sent) = r.term_sent {
                let took = sent.elapsed();
                tally.slowest_term = tally.slowest_term.max(took);
                if !status.success() {
                    tally.term_failures.push(format!("{label}: {status}"));
                }
                events.log(json!({"event": "exited", "slot": s.n, "pid": r.pid, "after": "SIGTERM",
                    "took_s": took.as_secs_f64(), "status": status.to_string()}));
            } else {
                tally.unexpected_exits.push(format!("{label}: {status}"));
                events.log(json!({"event": "exited", "slot": s.n, "pid": r.pid, "after": "nothing",
                    "status": status.to_string()}));
            }
            s.running = None;
        }
    }

    /// Slots whose poller runs and has not been asked to stop.
    fn live(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].running.as_ref().is_some_and(|r| r.term_sent.is_none() && !r.killed))
            .collect()
    }

    /// Slots with a process that has not been SIGKILLed (live or draining).
    fn killable(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|i| self.slots[*i].running.as_ref().is_some_and(|r| !r.killed)).collect()
    }

    fn down(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|i| self.slots[*i].running.is_none()).collect()
    }

    fn signal(&mut self, slot: usize, kill: bool, events: &mut Events) {
        let s = &mut self.slots[slot];
        let Some(r) = s.running.as_mut() else { return };
        if kill {
            let _ = r.child.start_kill();
            r.killed = true;
            events.log(json!({"event": "SIGKILL", "slot": s.n, "pid": r.pid, "draining": r.term_sent.is_some()}));
        } else {
            let sent = std::process::Command::new("kill").args(["-TERM", &r.pid.to_string()]).status();
            r.term_sent = Some(Instant::now());
            events.log(json!({"event": "SIGTERM", "slot": s.n, "pid": r.pid, "sent": sent.is_ok_and(|s| s.success())}));
        }
    }

    /// Sleeps until `until`, reaping exited pollers meanwhile.
    async fn idle_until(&mut self, until: Instant, tally: &mut Tally, events: &mut Events) {
        loop {
            self.reap(tally, events);
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
        }
    }
}

/// Environment of every `esm` command.
fn esm_env(dynamodb: &str, lambda: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.to_owned()),
        ("AWS_ENDPOINT_URL_LAMBDA", lambda.to_owned()),
        ("ESM_MAPPINGS_TABLE", MAPPINGS_TABLE.to_owned()),
        ("ESM_LEASES_TABLE", LEASES_TABLE.to_owned()),
    ];
    // tansu holds every fetch this long; the caller's ESM_* settings reach the pollers unchanged.
    if std::env::var_os("ESM_FETCH_WAIT_MS").is_none() {
        env.push(("ESM_FETCH_WAIT_MS", "10".to_owned()));
    }
    env
}

async fn esm_command(esm: &Path, env: &[(&str, String)], cli: &[&str]) -> Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(esm).args(cli).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).output(),
    )
    .await
    .with_context(|| format!("esm {} did not finish within 60 s", cli.first().unwrap_or(&"")))?
    .with_context(|| format!("run {}", esm.display()))?;
    if !out.status.success() {
        bail!("esm {} failed: {}", cli.first().unwrap_or(&""), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn group_offsets(bootstrap: &str, group: &str, topic: &str) -> Result<kafka::GroupOffsets> {
    let (bootstrap, group, topic) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || kafka::group_offsets(&bootstrap, &group, &topic, &[])).await?
}

pub async fn run(args: SoakArgs) -> Result<()> {
    args.check()?;
    let outcome = tokio::select! {
        r = soak(&args) => r,
        () = crate::terminated() => bail!("interrupted"),
    };
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn soak(args: &SoakArgs) -> Result<bool> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    if args.logs.exists() {
        std::fs::remove_dir_all(&args.logs).with_context(|| format!("empty {}", args.logs.display()))?;
    }
    std::fs::create_dir_all(&args.logs).with_context(|| format!("create {}", args.logs.display()))?;
    let start = Instant::now();
    let start_wall_ms = epoch_s() * 1000.0;
    let mut events = Events { file: std::fs::File::create(args.logs.join("events.jsonl"))?, start };

    println!(
        "soak: {} cycles of {} ms; {} x esm poll over {} partitions; {} records/s; BatchSize {}; invocations take {} ms; seed {seed}",
        args.cycles, args.cycle_ms, args.pollers, args.partitions, args.rate, args.batch_size, args.invoke_ms
    );
    let tansu = tokio::task::spawn_blocking(Tansu::start).await??;
    let dynalite = tokio::task::spawn_blocking(Dynalite::start).await??;
    let proxy = ProxyHandle::start(dynalite.endpoint.trim_start_matches("http://")).await?;
    let stub = InvokeStub::start_on(0, true).await;
    stub.set_delay(Duration::from_millis(args.invoke_ms));
    let env = esm_env(&proxy.endpoint, &stub.endpoint);

    let topic = kafka::random_topic("soak");
    kafka::create_topic(&tansu.bootstrap, &topic, args.partitions).await?;
    esm_command(&args.esm, &env, &["init"]).await?;
    let source = format!(r#"{{"Endpoints":{{"KAFKA_BOOTSTRAP_SERVERS":["{}"]}}}}"#, tansu.bootstrap);
    let batch_size = args.batch_size.to_string();
    let created = esm_command(
        &args.esm,
        &env,
        &[
            "create-event-source-mapping",
            "--function-name",
            FUNCTION,
            "--topics",
            &topic,
            "--starting-position",
            "TRIM_HORIZON",
            "--batch-size",
            &batch_size,
            "--maximum-batching-window-in-seconds",
            "0",
            "--self-managed-event-source",
            &source,
        ],
    )
    .await?;
    let mapping: Value = serde_json::from_str(&created).context("parse the created mapping")?;
    let uuid = mapping["UUID"].as_str().context("the created mapping has no UUID")?.to_owned();
    println!("  mapping {uuid}: topic {topic} -> {FUNCTION}; logs in {}", args.logs.display());

    // The producer: one record per batch (tansu 0.6), produce time in the value.
    let producer = kafka::Producer::with_batching(
        &tansu.bootstrap,
        Batching::OnePerBatch,
        &[("max.in.flight.requests.per.connection", "1")],
    )?;
    let workload = Workload {
        topic: topic.clone(),
        partitions: args.partitions,
        count: None,
        rate: Some(args.rate),
        value: ValueShape::Sequence,
        record_bytes: 0,
        keys: Some(97),
        key_prefix: "k-".to_owned(),
        stamp: Stamp::Value,
        headers: Vec::new(),
        in_flight: 1000,
    };
    let (stop_producing, stopped) = tokio::sync::oneshot::channel::<()>();
    let production = tokio::spawn(async move {
        producer
            .run(&workload, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut fleet = Fleet {
        esm: args.esm.clone(),
        env,
        logs: args.logs.clone(),
        slots: (1..=args.pollers).map(|n| Slot { n, incarnations: 0, running: None }).collect(),
        term_timeout: Duration::from_secs(args.term_timeout_s),
    };
    let mut tally = Tally::default();
    for slot in 0..args.pollers {
        fleet.start(slot, &mut events)?;
    }

    let cycle = Duration::from_millis(args.cycle_ms);
    let total_weight: u32 = args.weights.iter().sum();
    for c in 1..=args.cycles {
        let cycle_start = Instant::now();
        for slot in fleet.down() {
            if rng.f64() < args.restart_chance {
                fleet.start(slot, &mut events)?;
                tally.restarts += 1;
            }
        }
        let at = cycle_start + cycle.mul_f64(rng.f64() / 2.0);
        fleet.idle_until(at, &mut tally, &mut events).await;
        let pick = rng.u32(0..total_weight);
        let live = fleet.live();
        if pick < args.weights[0] + args.weights[1] && live.len() >= 2 {
            let kill = pick < args.weights[0];
            let candidates = if kill { fleet.killable() } else { live };
            let slot = candidates[rng.usize(0..candidates.len())];
            fleet.signal(slot, kill, &mut events);
            if kill {
                tally.kills += 1;
            } else {
                tally.terms += 1;
            }
        } else {
            let mode = if rng.bool() { OutageMode::Fail } else { OutageMode::Stall };
            let length = Duration::from_millis(rng.u64(args.outage_min_ms..=args.outage_max_ms));
            proxy.outage(LEASES_TABLE, mode, length);
            *tally.outages.entry(mode.to_string()).or_default() += 1;
            events
                .log(json!({"event": "outage", "table": LEASES_TABLE, "mode": mode, "ms": length.as_millis() as u64}));
        }
        fleet.idle_until(cycle_start + cycle, &mut tally, &mut events).await;
        if c % 10 == 0 || c == args.cycles {
            let lag = group_offsets(&tansu.bootstrap, &uuid, &topic)
                .await
                .map_or_else(|e| format!("? ({e:#})"), |o| o.lag.to_string());
            println!(
                "  cycle {c:3}/{}  {:5.0} s  running {}  SIGKILL {} SIGTERM {} outages {}  invocations {} records {}  lag {lag}",
                args.cycles,
                start.elapsed().as_secs_f64(),
                fleet.live().len(),
                tally.kills,
                tally.terms,
                tally.outages.values().sum::<u32>(),
                stub.counts().0,
                stub.counts().1
            );
        }
    }

    // Every poller back, production over, and every record committed (or the drain timeout).
    for slot in fleet.down() {
        fleet.start(slot, &mut events)?;
        tally.restarts += 1;
    }
    let _ = stop_producing.send(());
    let produced = production.await?;
    events.log(json!({"event": "production-stopped", "produced": produced.total()}));
    println!(
        "  cycles done after {:.0} s; production stopped; waiting for lag 0 (at most {} s)",
        start.elapsed().as_secs_f64(),
        args.drain_timeout_s
    );
    let drain_started = Instant::now();
    let mut last = None;
    while drain_started.elapsed() < Duration::from_secs(args.drain_timeout_s) {
        fleet.idle_until(Instant::now() + Duration::from_secs(2), &mut tally, &mut events).await;
        // A poller that died on its own since is started again: the drain needs the fleet.
        for slot in fleet.down() {
            fleet.start(slot, &mut events)?;
        }
        match group_offsets(&tansu.bootstrap, &uuid, &topic).await {
            Ok(o) if o.lag == 0 => {
                last = Some(o);
                break;
            }
            Ok(o) => last = Some(o),
            Err(e) => events.log(json!({"event": "offsets-error", "error": format!("{e:#}")})),
        }
    }
    let drain = drain_started.elapsed();
    let final_offsets = match last {
        Some(o) => o,
        None => group_offsets(&tansu.bootstrap, &uuid, &topic).await?,
    };
    // Stop the pollers (SIGTERM: they finish in-flight invokes), then let the stub finish too.
    for slot in fleet.live() {
        fleet.signal(slot, false, &mut events);
    }
    let stop_deadline = Instant::now() + fleet.term_timeout + Duration::from_secs(5);
    while fleet.down().len() < fleet.slots.len() && Instant::now() < stop_deadline {
        fleet.idle_until(Instant::now() + Duration::from_millis(200), &mut tally, &mut events).await;
    }
    while !stub.in_flight().is_empty() && Instant::now() < stop_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let highs: Vec<i64> = final_offsets.partitions.iter().map(|p| p.high).collect();
    let report = Report::from_invocations(&stub.invocations(), &topic, &highs, start, start_wall_ms);
    let ddb = proxy.counts();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Soak: {} cycles in {:.0} s ({} x esm poll, {} partitions, {} records/s, invocations {} ms, seed {seed})",
        args.cycles,
        start.elapsed().as_secs_f64(),
        args.pollers,
        args.partitions,
        args.rate,
        args.invoke_ms
    );
    let outages: Vec<String> = tally.outages.iter().map(|(m, n)| format!("{n} {m}")).collect();
    let _ = writeln!(
        w,
        "  faults: {} SIGKILL, {} SIGTERM, {} leases-table outages ({}; {} requests failed, {} held), {} restarts",
        tally.kills,
        tally.terms,
        tally.outages.values().sum::<u32>(),
        if outages.is_empty() { "-".to_owned() } else { outages.join(", ") },
        ddb["outage_failed"],
        ddb["outage_stalled"],
        tally.restarts
    );
    let _ = writeln!(
        w,
        "  SIGTERM to exit: slowest {:.1} s; {} did not exit 0{}; {} killed after {} s",
        tally.slowest_term.as_secs_f64(),
        tally.term_failures.len(),
        if tally.term_failures.is_empty() { String::new() } else { format!(" ({})", tally.term_failures.join("; ")) },
        tally.term_timeouts,
        args.term_timeout_s
    );
    if !tally.unexpected_exits.is_empty() {
        let _ = writeln!(w, "  pollers that exited on their own: {}", tally.unexpected_exits.join("; "));
    }
    let _ = writeln!(
        w,
        "  produced: {} records acknowledged ({} produce errors); partitions end at {} records in all",
        produced.total(),
        produced.error_count,
        highs.iter().sum::<i64>()
    );
    let _ = writeln!(
        w,
        "  delivered: {} distinct records in {} invocations; lag {} after {:.0} s of drain",
        report.delivered,
        report.invocations,
        final_offsets.lag,
        drain.as_secs_f64()
    );
    let _ = writeln!(w, "  lost: {}{}", report.lost.len(), sample(&report.lost));
    let _ = writeln!(
        w,
        "  duplicates: {} deliveries beyond a record's first ({} records delivered more than once)",
        report.duplicates, report.duplicated_records
    );
    let _ = writeln!(
        w,
        "  overlapping invocations of one partition: {} (most at once: {}){}",
        report.overlaps.len(),
        stub.max_in_flight_of_one_partition(),
        sample(&report.overlaps)
    );
    let _ = writeln!(
        w,
        "  out of order (a batch not consecutive, or starting past an undelivered record): {}{}",
        report.out_of_order.len(),
        sample(&report.out_of_order)
    );
    let _ = writeln!(w, "  longest stall: {}", report.longest_wait);
    let _ = writeln!(w, "  record waits: {}", report.waits);
    let _ = writeln!(w, "  logs: {} (events.jsonl: the soak's actions, seconds from its start)", args.logs.display());
    let _ = writeln!(w, "  reproduce: {}", args.reproduce(seed));
    let ok = report.lost.is_empty()
        && report.overlaps.is_empty()
        && report.overlaps_by_stub(&stub)
        && report.out_of_order.is_empty();
    let _ = writeln!(w, "  result: {}", if ok { "PASS (nothing lost, no overlap, in order)" } else { "FAIL" });
    print!("{out}");
    std::fs::write(args.logs.join("report.txt"), &out)?;
    let lines: Vec<String> = report.records.iter().map(Value::to_string).collect();
    std::fs::write(args.logs.join("deliveries.jsonl"), lines.join("\n") + "\n")?;
    drop(fleet);
    drop((tansu, dynalite));
    Ok(ok)
}

/// The first few items of a list, for the report.
fn sample(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = items.iter().take(8).map(String::as_str).collect();
    format!(": {}{}", shown.join("; "), if items.len() > shown.len() { "; …" } else { "" })
}

/// One invocation of one partition.
#[derive(Debug, Clone, Copy)]
struct Span {
    began: f64,
    ended: f64,
    first: i64,
    last: i64,
    /// Its offsets are consecutive and ascending.
    in_order: bool,
    succeeded: bool,
}

/// One record as the Invoke stub saw it: (deliveries, produced at (epoch ms), first delivery (s
/// from the soak's start)).
type Seen = (usize, Option<f64>, f64);

/// What the Invoke stub saw, measured against the partitions' end offsets.
#[derive(Debug, Default)]
struct Report {
    invocations: usize,
    delivered: usize,
    duplicates: usize,
    duplicated_records: usize,
    /// `topic-p@offset` never delivered.
    lost: Vec<String>,
    /// Invocations that started while another of the same partition ran.
    overlaps: Vec<String>,
    /// Invocations whose records were not consecutive, or that skipped undelivered records.
    out_of_order: Vec<String>,
    longest_wait: String,
    /// Waits from produce to first invocation: median, 99th percentile, and how many records
    /// waited longer than 10 s.
    waits: String,
    /// `{"p", "o", "produced_s", "first_s", "deliveries"}` per record, for `deliveries.jsonl`.
    records: Vec<Value>,
}

impl Report {
    fn from_invocations(
        invocations: &[kafka_esm_testkit::invoke_stub::Invocation],
        topic: &str,
        highs: &[i64],
        start: Instant,
        start_wall_ms: f64,
    ) -> Self {
        let at_s = |i: tokio::time::Instant| i.into_std().saturating_duration_since(start).as_secs_f64();
        let mut report = Self { invocations: invocations.len(), ..Self::default() };
        let mut seen: HashMap<(i32, i64), Seen> = HashMap::new();
        // partition -> (start, end, first offset) of each invocation.
        let mut spans: BTreeMap<i32, Vec<Span>> = BTreeMap::new();
        for inv in invocations.iter().filter(|i| i.function == FUNCTION) {
            let (began, ended) = (at_s(inv.started), at_s(inv.finished));
            let Some(records) = inv.event["records"].as_object() else { continue };
            for (key, list) in records {
                let Some(p) = key.strip_prefix(topic).and_then(|k| k.strip_prefix('-')).and_then(|p| p.parse().ok())
                else {
                    continue;
                };
                let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
                let offsets: Vec<i64> = list.iter().filter_map(|r| r["offset"].as_i64()).collect();
                let first = offsets.first().copied().unwrap_or(-1);
                spans.entry(p).or_default().push(Span {
                    began,
                    ended,
                    first,
                    last: offsets.last().copied().unwrap_or(-1),
                    in_order: offsets.windows(2).all(|w| w[1] == w[0] + 1),
                    succeeded: inv.succeeded,
                });
                if !inv.succeeded {
                    continue;
                }
                for r in list {
                    let Some(offset) = r["offset"].as_i64() else { continue };
                    let entry = seen.entry((p, offset)).or_insert_with(|| (0, produced_at_ms(r), began));
                    entry.0 += 1;
                    entry.2 = entry.2.min(began);
                }
            }
        }
        for (p, list) in &mut spans {
            list.sort_by(|a, b| a.began.total_cmp(&b.began));
            let mut running_until = f64::NEG_INFINITY;
            // The next offset a batch may start at: at most one past everything delivered so far.
            let mut next = 0;
            for span in list.iter() {
                let Span { began, ended, first, last, in_order, succeeded } = *span;
                if began < running_until {
                    report.overlaps.push(format!(
                        "{topic}-{p} offset {first} started at {began:.2} s while another ran until {running_until:.2} s"
                    ));
                }
                running_until = running_until.max(ended);
                if !in_order || first > next {
                    report.out_of_order.push(format!(
                        "{topic}-{p} offsets {first}..={last} at {began:.2} s (next undelivered offset {next})"
                    ));
                }
                if succeeded {
                    next = next.max(last + 1);
                }
            }
        }
        for (p, high) in highs.iter().enumerate() {
            let p = i32::try_from(p).unwrap_or(i32::MAX);
            let missing: Vec<i64> = (0..*high).filter(|o| !seen.contains_key(&(p, *o))).collect();
            report.lost.extend(missing.iter().map(|o| format!("{topic}-{p}@{o}")));
        }
        report.delivered = seen.len();
        report.duplicates = seen.values().map(|v| v.0.saturating_sub(1)).sum();
        report.duplicated_records = seen.values().filter(|v| v.0 > 1).count();
        let mut waits: Vec<(f64, i32, i64, f64)> = seen
            .iter()
            .filter_map(|((p, o), (_, produced, first))| {
                let produced_s = ((*produced)? - start_wall_ms) / 1000.0;
                Some((first - produced_s, *p, *o, produced_s))
            })
            .collect();
        waits.sort_by(|a, b| a.0.total_cmp(&b.0));
        report.longest_wait = waits.last().map_or_else(
            || "-".to_owned(),
            |(wait, p, o, produced)| {
                format!("{wait:.1} s from produce to first invocation ({topic}-{p}@{o}, produced at {produced:.1} s)")
            },
        );
        let quantile = |q: f64| waits.get(((waits.len() as f64 - 1.0) * q).round() as usize).map_or(0.0, |w| w.0);
        report.waits = format!(
            "median {:.2} s, 99th percentile {:.1} s; {} records waited more than 10 s",
            quantile(0.5),
            quantile(0.99),
            waits.iter().filter(|w| w.0 > 10.0).count()
        );
        let mut records: Vec<(&(i32, i64), &Seen)> = seen.iter().collect();
        records.sort_by_key(|(k, _)| **k);
        report.records = records
            .into_iter()
            .map(|((p, o), (n, produced, first))| {
                let produced_s = produced.map(|ms| ((ms - start_wall_ms) / 1000.0 * 1000.0).round() / 1000.0);
                json!({"p": p, "o": o, "produced_s": produced_s, "first_s": (first * 1000.0).round() / 1000.0, "deliveries": n})
            })
            .collect();
        report
    }

    /// The stub's own in-flight count agrees that nothing overlapped.
    fn overlaps_by_stub(&self, stub: &InvokeStub) -> bool {
        stub.max_in_flight_of_one_partition() <= 1
    }
}

/// The produce time stamped in a record's value (`produced_at_ms`).
fn produced_at_ms(record: &Value) -> Option<f64> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(record["value"].as_str()?).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value["produced_at_ms"].as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_esm_testkit::Outcome;
    use kafka_esm_testkit::invoke_stub::Invocation;

    /// An invocation of partition `p` of topic `t` carrying `offsets`, running from `from` to
    /// `to` ms after `base`.
    fn invocation(base: Instant, p: i32, offsets: &[i64], from: u64, to: u64, succeeded: bool) -> Invocation {
        let at = |ms: u64| tokio::time::Instant::from_std(base + Duration::from_millis(ms));
        let records: Vec<Value> = offsets
            .iter()
            .map(|o| {
                let value = json!({"n": o, "produced_at_ms": 1000}).to_string();
                json!({"offset": o, "value": base64::engine::general_purpose::STANDARD.encode(value)})
            })
            .collect();
        let event = json!({"records": {format!("t-{p}"): records}});
        Invocation {
            function: FUNCTION.to_owned(),
            raw: event.to_string(),
            event,
            started: at(from),
            finished: at(to),
            succeeded,
            outcome: if succeeded { Outcome::Success } else { Outcome::FunctionError },
            response: String::new(),
        }
    }

    #[test]
    fn a_record_no_successful_invocation_carried_is_lost_and_a_second_delivery_is_a_duplicate() {
        let base = Instant::now();
        let invocations = [
            invocation(base, 0, &[0, 1], 0, 100, true),
            invocation(base, 0, &[2], 100, 200, false),
            invocation(base, 0, &[1, 3], 300, 400, true),
        ];
        let report = Report::from_invocations(&invocations, "t", &[4, 0], base, 0.0);
        assert_eq!(report.lost, ["t-0@2"]);
        assert_eq!((report.delivered, report.duplicates, report.duplicated_records), (3, 1, 1));
        assert!(report.overlaps.is_empty(), "{:?}", report.overlaps);
        // Produced at epoch 1000 ms, i.e. 1 s after a soak that started at epoch 0; offset 3
        // waited until 0.3 s.
        assert!(report.longest_wait.starts_with("-0.7 s"), "{}", report.longest_wait);
        assert_eq!(report.records.len(), 3);
        assert_eq!(report.records[1], json!({"p": 0, "o": 1, "produced_s": 1.0, "first_s": 0.0, "deliveries": 2}));
    }

    #[test]
    fn an_invocation_starting_while_another_of_its_partition_runs_is_an_overlap() {
        let base = Instant::now();
        let invocations = [
            invocation(base, 0, &[0], 0, 500, true),
            invocation(base, 1, &[0], 100, 200, true),
            invocation(base, 0, &[0, 1], 400, 600, true),
            invocation(base, 0, &[2], 600, 700, true),
        ];
        let report = Report::from_invocations(&invocations, "t", &[3, 1], base, 0.0);
        assert_eq!(report.overlaps.len(), 1, "{:?}", report.overlaps);
        assert!(report.overlaps[0].starts_with("t-0 offset 0 started at 0.40 s"), "{:?}", report.overlaps);
        assert!(report.lost.is_empty());
        assert!(report.out_of_order.is_empty(), "{:?}", report.out_of_order);
    }

    #[test]
    fn a_batch_that_skips_an_undelivered_record_or_is_not_consecutive_is_out_of_order() {
        let base = Instant::now();
        let invocations = [
            invocation(base, 0, &[0, 1], 0, 100, true),
            // Redelivery from an older commit is in order; skipping offset 2 is not.
            invocation(base, 0, &[0, 1], 200, 300, true),
            invocation(base, 0, &[3], 400, 500, true),
            invocation(base, 0, &[2, 4], 600, 700, true),
        ];
        let report = Report::from_invocations(&invocations, "t", &[5], base, 0.0);
        assert_eq!(report.out_of_order.len(), 2, "{:?}", report.out_of_order);
        assert!(report.out_of_order[0].starts_with("t-0 offsets 3..=3 at 0.40 s (next undelivered offset 2)"));
        assert!(report.out_of_order[1].starts_with("t-0 offsets 2..=4"));
        assert!(report.lost.is_empty());
    }
}
