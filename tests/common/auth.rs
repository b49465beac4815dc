//! Shared by the authentication tests (`tests/auth.rs`, `tests/auth_logs.rs`): moto for secrets,
//! a poller whose resolver reads them, an MSK IAM cluster (TLS front → OAUTHBEARER front →
//! tansu), and readers of what was delivered and committed.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::common::{Harness, WAIT, request, settings, wait_for};
use kafka_esm::api::CreateRequest;
use kafka_esm::aws::lambda::LambdaInvoker;
use kafka_esm::coordination::consumer::Deps;
use kafka_esm::coordination::supervisor::Exit;
use kafka_esm::kafka::KafkaConnector;
use kafka_esm::kafka::cluster::ClusterResolver;
use kafka_esm::model::mapping::{
    Endpoints, EventSourceMapping, SelfManagedEventSource, SourceAccessConfiguration, SourceAccessType, State,
};
use kafka_esm::model::store::Loaded;
use kafka_esm_testkit::sasl::{FrontMechanism, IamPolicy, SaslFront};
use kafka_esm_testkit::tls::{TestCa, TlsFront};
use kafka_esm_testkit::{Moto, MskStub, Tansu, free_port, sdk_config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

static MOTO: OnceLock<Moto> = OnceLock::new();

pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| Moto::start().expect("start moto_server (pip install 'moto[server]')"))
}

/// A poller over the harness's tables whose resolver reads secrets from moto and MSK from `msk`.
pub struct AuthPoller {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Exit>,
}

impl AuthPoller {
    pub async fn start(h: &Harness, kafka_sdk: &aws_config::SdkConfig) -> Self {
        let settings = settings();
        let deps = Arc::new(Deps {
            connector: KafkaConnector::new(
                ClusterResolver::from_configs(kafka_sdk, &moto().sdk_config().await),
                settings.kafka,
            ),
            invoker: Arc::new(LambdaInvoker::new(&sdk_config(&h.stub.endpoint).await).unwrap()),
            metrics: h.metrics.clone(),
            settings,
        });
        let stop = CancellationToken::new();
        let task = h.spawn_poller_with(deps, &stop);
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("poller stops within 30 s")
            .expect("poller task");
    }
}

pub fn access(kind: SourceAccessType, uri: &str) -> SourceAccessConfiguration {
    SourceAccessConfiguration { kind, uri: uri.to_owned() }
}

/// A self-managed mapping for `function` on `topic` at `bootstrap` with `access`.
pub fn mapping_request(
    function: &str,
    topic: &str,
    bootstrap: &str,
    access: Vec<SourceAccessConfiguration>,
) -> CreateRequest {
    let mut req = request(function, topic);
    req.self_managed_event_source =
        Some(SelfManagedEventSource { endpoints: Endpoints { kafka_bootstrap_servers: vec![bootstrap.to_owned()] } });
    req.source_access_configurations = Some(access);
    req
}

pub async fn status(h: &Harness, mapping: &EventSourceMapping) -> (State, String, String) {
    match h.mapping(&mapping.uuid).await {
        Some(Loaded::Valid(m)) => {
            (m.state, m.state_transition_reason.unwrap_or_default(), m.last_processing_result.unwrap_or_default())
        }
        other => panic!("unexpected item {other:?}"),
    }
}

pub async fn wait_disabled(h: &Harness, mapping: &EventSourceMapping) -> (State, String, String) {
    wait_for(WAIT, || async { status(h, mapping).await.0 == State::Disabled }).await;
    status(h, mapping).await
}

/// Offsets of records delivered to `function` by successful invokes, per partition key.
pub fn delivered_to(h: &Harness, function: &str) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for inv in h.stub.invocations().iter().filter(|i| i.succeeded && i.function == function) {
        for (key, offsets) in inv.offsets() {
            out.entry(key).or_default().extend(offsets);
        }
    }
    out
}

pub fn count_to(h: &Harness, function: &str) -> usize {
    delivered_to(h, function).values().map(Vec::len).sum()
}

/// The group's committed offsets, read by a separate librdkafka client with its own
/// authentication settings (not kafka-esm's configuration code). `extra` containing
/// `sasl.mechanism=OAUTHBEARER` signs MSK IAM tokens with the test credentials.
pub fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    extra: &[(&str, &str)],
) -> BTreeMap<i32, i64> {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", group).set("enable.auto.commit", "false");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    if extra.contains(&("sasl.mechanism", "OAUTHBEARER")) {
        let consumer: BaseConsumer<IamContext> = config.create_with_context(IamContext).expect("checking client");
        // librdkafka asks for the token on the main queue.
        let _ = consumer.poll(Duration::from_millis(100));
        return committed_of(&consumer, topic, partitions);
    }
    let consumer: BaseConsumer = config.create().expect("checking client");
    committed_of(&consumer, topic, partitions)
}

pub fn committed_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(15)).expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

pub async fn wait_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    extra: &[(&str, &str)],
    expected: &BTreeMap<i32, i64>,
) -> BTreeMap<i32, i64> {
    let (b, g, t) = (bootstrap.to_owned(), group.to_owned(), topic.to_owned());
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut last = BTreeMap::new();
    for _ in 0..40 {
        let (b, g, t, extra) = (b.clone(), g.clone(), t.clone(), extra.clone());
        last = tokio::task::spawn_blocking(move || {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            committed(&b, &g, &t, partitions, &extra)
        })
        .await
        .unwrap();
        if &last == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

pub fn user_password(user: &str, password: &str) -> String {
    serde_json::json!({"username": user, "password": password}).to_string()
}

pub async fn secret(name: &str, value: &str) -> String {
    moto().create_secret(&format!("{name}-{}", uuid::Uuid::new_v4().simple()), value).await.unwrap()
}

/// An MSK cluster with IAM access control: the stub's SASL/IAM brokers are a TLS front over an
/// OAUTHBEARER front over tansu.
pub struct IamCluster {
    pub tansu: Tansu,
    pub front: SaslFront,
    pub tls: TlsFront,
    pub bootstrap: String,
    pub ca: TestCa,
}

pub const IAM_KEY: &str = "ASIAKAFKAESMTEST0001";
pub const IAM_SECRET: &str = "iam-secret-key-that-must-never-be-logged";
pub const IAM_SESSION: &str = "IQoJb3JpZ2luX2VjEAIaCXVzLWVhc3QtMSJHMEUCIQ/session+token==";

impl IamCluster {
    pub async fn start() -> Self {
        let ca = TestCa::new().unwrap();
        let tls_port = free_port();
        let tansu = Tansu::start_advertising(free_port(), &format!("localhost:{tls_port}")).unwrap();
        let front = SaslFront::start(
            &format!("127.0.0.1:{}", tansu.port),
            FrontMechanism::MskIam(IamPolicy {
                region: "us-east-1".into(),
                access_key_id: IAM_KEY.into(),
                session_token: Some(IAM_SESSION.into()),
                allow_connect: true,
            }),
        )
        .await
        .unwrap();
        let tls = TlsFront::start(&ca, tls_port, front.port).unwrap();
        Self { bootstrap: tls.bootstrap.clone(), tansu, front, tls, ca }
    }

    pub fn iam_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", self.ca.ca_path().display().to_string())
            .set("sasl.mechanism", "OAUTHBEARER");
        config
    }

    /// Creates a topic with `tansu topic create` on the broker's own listener (librdkafka's admin
    /// client does not serve OAUTHBEARER token requests, and the fronts admit nothing else).
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let out = tokio::process::Command::new(kafka_esm_testkit::services::tool("tansu"))
            .args(["topic", "create", topic, "--partitions", &partitions.to_string()])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.tansu.port)])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "tansu topic create: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Produces with OAUTHBEARER tokens from kafka-esm's signer (the front checks them).
    pub async fn fill(&self, topic: &str, partitions: i32, count: usize) {
        let mut config = self.iam_config();
        config.set("linger.ms", "0").set("batch.num.messages", "1").set("enable.idempotence", "false");
        let producer: rdkafka::producer::FutureProducer<IamContext> = config.create_with_context(IamContext).unwrap();
        for i in 0..count {
            for p in 0..partitions {
                let value = format!("iam-{p}-{i}");
                let record =
                    rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic).partition(p).payload(value.as_bytes());
                producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
            }
        }
    }
}

/// Tokens for the test clients, from the same fixed credentials the poller's role has here.
#[derive(Clone)]
pub struct IamContext;

impl rdkafka::ClientContext for IamContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;
    fn generate_oauth_token(&self, _: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        let credentials =
            aws_credential_types::Credentials::new(IAM_KEY, IAM_SECRET, Some(IAM_SESSION.into()), None, "test");
        let token =
            kafka_esm::kafka::msk_iam::sign_token("us-east-1", &credentials, std::time::SystemTime::now(), "test")?;
        Ok(rdkafka::client::OAuthToken {
            token: token.token,
            principal_name: "test".into(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

impl rdkafka::consumer::ConsumerContext for IamContext {}

impl rdkafka::producer::ProducerContext for IamContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, (): ()) {}
}

pub async fn iam_sdk(msk: &MskStub) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            IAM_KEY,
            IAM_SECRET,
            Some(IAM_SESSION.into()),
            None,
            "poller-role",
        ))
        .endpoint_url(&msk.endpoint)
        .load()
        .await
}
