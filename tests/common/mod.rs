//! Shared set-up for the integration tests: one tansu and one dynalite per test binary (started
//! on free ports by the test kit), and per test a fresh Invoke stub, fresh tables and fresh
//! topics, so tests never see each other's data.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_esm::api::{self, CreateRequest};
use kafka_esm::aws::lambda::{LambdaFunctionResolver, LambdaInvoker};
use kafka_esm::aws::leases::DynamoLeaseStore;
use kafka_esm::aws::mappings::{DynamoMappingStore, ensure_tables};
use kafka_esm::clock::SystemClock;
use kafka_esm::config::{Backoffs, KafkaTuning, Settings, Tables};
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::coordination::supervisor::{NoSpawner, Start, run_poller};
use kafka_esm::delivery::metrics::Metrics;
use kafka_esm::kafka::KafkaConnector;
use kafka_esm::kafka::cluster::ClusterResolver;
use kafka_esm::model::mapping::{Endpoints, EventSourceMapping, SelfManagedEventSource, StartingPosition};
use kafka_esm::model::store::{Loaded, MappingStore};
use kafka_esm_testkit::{Dynalite, InvokeStub, Tansu, sdk_config};
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(60);

static SERVICES: OnceLock<(Tansu, Dynalite)> = OnceLock::new();

pub fn services() -> &'static (Tansu, Dynalite) {
    SERVICES.get_or_init(|| {
        let tansu = Tansu::start().expect("start tansu (scripts/install-deps.sh installs it)");
        let dynalite = Dynalite::start().expect("start dynalite (scripts/install-deps.sh installs it)");
        (tansu, dynalite)
    })
}

pub fn bootstrap() -> &'static str {
    &services().0.bootstrap
}

/// Poller settings for tests: tansu needs a short fetch wait; retries and refreshes are quick.
pub fn settings() -> Settings {
    Settings {
        kafka: KafkaTuning { fetch_wait_max_ms: 10, request_timeout: Duration::from_secs(5), ..KafkaTuning::default() },
        retry: Backoffs { base: Duration::from_millis(50), cap: Duration::from_millis(500) },
        reconnect: Backoffs { base: Duration::from_millis(200), cap: Duration::from_secs(2) },
        refresh_interval: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

pub struct Harness {
    pub stub: InvokeStub,
    pub store: Arc<DynamoMappingStore>,
    pub leases: Arc<DynamoLeaseStore>,
    pub tables: Tables,
    pub metrics: Arc<Metrics>,
    lambda_sdk: aws_config::SdkConfig,
}

impl Harness {
    pub async fn new() -> Self {
        // RUST_LOG=kafka_esm=debug shows the poller's logs in failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (_, dynalite) = services();
        let stub = InvokeStub::start().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let tables = Tables { mappings: format!("mappings-{suffix}"), leases: format!("leases-{suffix}") };
        let ddb_sdk = sdk_config(&dynalite.endpoint).await;
        let ddb = kafka_esm::aws::dynamodb_client(&ddb_sdk);
        ensure_tables(&ddb, &tables).await.expect("create tables");
        let store = Arc::new(DynamoMappingStore::new(ddb.clone(), &tables.mappings));
        let leases = Arc::new(DynamoLeaseStore::new(ddb, &tables.leases));
        let lambda_sdk = sdk_config(&stub.endpoint).await;
        Self { stub, store, leases, tables, metrics: Arc::default(), lambda_sdk }
    }

    pub fn env(&self, settings: Settings) -> Arc<Deps<KafkaConnector, LambdaInvoker>> {
        Arc::new(Deps {
            connector: KafkaConnector::new(ClusterResolver::new(&self.lambda_sdk), settings.kafka),
            invoker: Arc::new(LambdaInvoker::new(&self.lambda_sdk).unwrap()),
            metrics: self.metrics.clone(),
            settings,
        })
    }

    /// Runs one poller (as `esm poll` does) until `stop`.
    pub fn spawn_poller(
        &self,
        settings: Settings,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<kafka_esm::coordination::supervisor::Exit> {
        self.spawn_poller_with(self.env(settings), stop)
    }

    /// [`Harness::spawn_poller`] with the parts given.
    pub fn spawn_poller_with(
        &self,
        deps: Arc<Deps<KafkaConnector, LambdaInvoker>>,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<kafka_esm::coordination::supervisor::Exit> {
        tokio::spawn(run_poller(
            self.store.clone(),
            self.leases.clone(),
            deps,
            Arc::new(SystemClock),
            None::<Arc<NoSpawner>>,
            Start::Process,
            stop.clone(),
        ))
    }

    /// Creates a self-managed mapping through the API, as `esm create-event-source-mapping` does.
    pub async fn create(&self, request: CreateRequest) -> EventSourceMapping {
        let functions = LambdaFunctionResolver::new(aws_sdk_lambda::Client::new(&self.lambda_sdk));
        api::create(&*self.store, &functions, request).await.expect("create mapping")
    }

    pub async fn mapping(&self, uuid: &str) -> Option<Loaded> {
        self.store.get(uuid).await.expect("read mapping")
    }

    /// Runs a poller over the table until `done` holds (checked every 50 ms) or `WAIT` passes,
    /// then stops it gracefully. Returns whether `done` held.
    pub async fn poll_until(&self, settings: Settings, done: impl Fn(&Self) -> bool) -> bool {
        let stop = CancellationToken::new();
        let task = self.spawn_poller(settings, &stop);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut ok = false;
        while tokio::time::Instant::now() < deadline {
            if done(self) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("poller stops within 30 s")
            .expect("poller task");
        ok
    }

    /// Starts a poller that runs until [`RunningPoller::stop`].
    pub fn start_poller(&self, settings: Settings) -> RunningPoller {
        let stop = CancellationToken::new();
        let task = self.spawn_poller(settings, &stop);
        RunningPoller { stop, task }
    }

    /// Runs a poller for a fixed time.
    pub async fn poll_for(&self, settings: Settings, duration: Duration) {
        let stop = CancellationToken::new();
        let task = self.spawn_poller(settings, &stop);
        tokio::time::sleep(duration).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("poller stops within 30 s")
            .expect("poller task");
    }

    /// Records delivered so far by successful invocations, per partition key, in delivery order.
    pub fn delivered(&self) -> std::collections::BTreeMap<String, Vec<i64>> {
        let mut out: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        for inv in self.stub.invocations().iter().filter(|i| i.succeeded) {
            for (key, offsets) in inv.offsets() {
                out.entry(key).or_default().extend(offsets);
            }
        }
        out
    }

    pub fn delivered_count(&self) -> usize {
        self.delivered().values().map(Vec::len).sum()
    }
}

/// A self-managed mapping request for `topic` on the shared broker.
pub fn request(function: &str, topic: &str) -> CreateRequest {
    CreateRequest {
        function_name: function.to_owned(),
        self_managed_event_source: Some(SelfManagedEventSource {
            endpoints: Endpoints { kafka_bootstrap_servers: vec![bootstrap().to_owned()] },
        }),
        topics: vec![topic.to_owned()],
        starting_position: Some(StartingPosition::TrimHorizon),
        ..CreateRequest::default()
    }
}

pub struct RunningPoller {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<kafka_esm::coordination::supervisor::Exit>,
}

impl RunningPoller {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("poller stops within 30 s")
            .expect("poller task");
    }
}

/// Waits (async) until `cond` holds, up to `timeout`; returns how long it took.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < timeout {
        if cond().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Owner of every partition's lease of `mapping`, counting only owners whose heartbeat has not
/// expired by this machine's clock (good enough for a test on one machine).
pub async fn live_owners(h: &Harness, mapping: &str) -> std::collections::BTreeMap<i32, String> {
    use kafka_esm::clock::Clock;
    use kafka_esm::coordination::leases::LeaseStore;
    let snapshot = h.leases.snapshot().await.expect("read leases");
    let now = SystemClock.epoch_ms();
    let live: std::collections::BTreeSet<String> =
        snapshot.pollers.iter().filter(|p| p.expires_at_ms >= now).map(|p| p.id.clone()).collect();
    snapshot
        .of(mapping)
        .leases
        .into_iter()
        .filter_map(|l| l.owner.filter(|o| live.contains(o)).map(|o| (l.id.partition, o)))
        .collect()
}
