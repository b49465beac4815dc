//! No secret value ever reaches a log line, an error, a mapping item, an event or a metric.
//!
//! This binary records everything the process logs (every target, at `RUST_LOG`, TRACE by
//! default: kafka-esm, librdkafka through the `log` bridge, the AWS SDK) while a poller consumes
//! with SASL/SCRAM (right and wrong passwords, the CA from a secret), mTLS with an encrypted key
//! (right and wrong key passwords) and MSK IAM (the poller's secret key and session token), then
//! searches the record, the mapping items, the invocations and the metrics for every secret.
//! Recording starts once the secrets are stored, so the test's own set-up calls are not counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/auth.rs"]
mod auth_common;
mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use auth_common::{
    AuthPoller, IAM_SECRET, IAM_SESSION, IamCluster, access, count_to, iam_sdk, mapping_request, secret, status,
    user_password, wait_disabled,
};
use common::{Harness, WAIT, wait_for};
use kafka_esm::api::CreateRequest;
use kafka_esm::model::mapping::{SourceAccessType, StartingPosition, State};
use kafka_esm::model::store::MappingStore as _;
use kafka_esm_testkit::kafka::{Producer, create_topic_with, random_topic};
use kafka_esm_testkit::msk_stub::cluster_arn;
use kafka_esm_testkit::sasl::{Scram, ScramTansu};
use kafka_esm_testkit::tls::{KeyEncryption, TestCa, TlsFront, TlsTansu, encrypt_private_key};
use kafka_esm_testkit::{MskCluster, MskStub, free_port};

static RECORDING: AtomicBool = AtomicBool::new(false);
static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if RECORDING.load(Ordering::Relaxed) {
            self.0.lock().unwrap().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the recording subscriber before anything else can install one.
fn capture() -> Arc<Mutex<Vec<u8>>> {
    CAPTURED
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = Capture(buffer.clone());
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("trace"));
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("this binary installs the only subscriber");
            buffer
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_value_appears_in_logs_errors_items_events_or_metrics() {
    let buffer = capture();
    let h = Harness::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let scram_password = format!("scram-password-{tag}");
    let wrong_password = format!("wrong-password-{tag}");
    let key_password = format!("key-password-{tag}");
    let wrong_key_password = format!("wrong-key-password-{tag}");

    // SASL/SCRAM over TLS, the CA from a secret.
    let ca = TestCa::new().unwrap();
    let tls_port = free_port();
    let mut broker = ScramTansu::start(&format!("localhost:{tls_port}")).unwrap();
    let front = TlsFront::start(&ca, tls_port, broker.port).unwrap();
    let ca_file = ca.ca_path().display().to_string();
    let tls = [("security.protocol", "ssl"), ("ssl.ca.location", ca_file.as_str())];
    let topic = random_topic("secrets");
    create_topic_with(&front.bootstrap, &topic, 1, &tls).await.unwrap();
    Producer::with_config(&front.bootstrap, &tls).unwrap().fill(&topic, 1, 3, "v").await.unwrap();
    broker.set_users(&[("erin", &scram_password, Scram::Sha512)]).unwrap();
    let ca_secret = secret("ca", &serde_json::json!({"certificate": ca.ca_pem}).to_string()).await;
    let good = secret("erin", &user_password("erin", &scram_password)).await;
    let bad = secret("erin-wrong", &user_password("erin", &wrong_password)).await;
    let scram = |arn: &str| {
        vec![
            access(SourceAccessType::SaslScram512Auth, arn),
            access(SourceAccessType::ServerRootCaCertificate, &ca_secret),
        ]
    };
    h.create(mapping_request("scram", &topic, &front.bootstrap, scram(&good))).await;
    let scram_bad = h.create(mapping_request("scram-bad", &topic, &front.bootstrap, scram(&bad))).await;

    // mTLS with an encrypted key.
    let server_ca = TestCa::new().unwrap();
    let client_ca = TestCa::new().unwrap();
    let mtls_broker = TlsTansu::start_mutual(&server_ca, &client_ca).unwrap();
    let client = client_ca.client_cert("kafka-esm").unwrap();
    let encrypted = encrypt_private_key(&client.private_key, &key_password, KeyEncryption::Pbes2).unwrap();
    let key_body_line = client.private_key.lines().nth(1).unwrap().to_owned();
    let encrypted_body_line = encrypted.lines().nth(1).unwrap().to_owned();
    let cert_json = |password: &str| {
        serde_json::json!({"certificate": client.certificate, "privateKey": encrypted, "privateKeyPassword": password})
            .to_string()
    };
    let server_ca_uri = format!("file://{}", server_ca.ca_path().display());
    let mtls_topic = random_topic("mtls-secrets");
    {
        let dir = server_ca.dir.path();
        std::fs::write(dir.join("c.key"), &client.private_key).unwrap();
        std::fs::write(dir.join("c.crt"), &client.certificate).unwrap();
        let (k, c, s) = (
            dir.join("c.key").display().to_string(),
            dir.join("c.crt").display().to_string(),
            server_ca.ca_path().display().to_string(),
        );
        let mtls = [
            ("security.protocol", "ssl"),
            ("ssl.ca.location", s.as_str()),
            ("ssl.key.location", k.as_str()),
            ("ssl.certificate.location", c.as_str()),
        ];
        create_topic_with(&mtls_broker.bootstrap, &mtls_topic, 1, &mtls).await.unwrap();
        Producer::with_config(&mtls_broker.bootstrap, &mtls).unwrap().fill(&mtls_topic, 1, 3, "v").await.unwrap();
    }
    for (name, password) in [("mtls", key_password.as_str()), ("mtls-bad", wrong_key_password.as_str())] {
        let arn = secret(name, &cert_json(password)).await;
        let access = vec![
            access(SourceAccessType::ClientCertificateTlsAuth, &arn),
            access(SourceAccessType::ServerRootCaCertificate, &server_ca_uri),
        ];
        h.create(mapping_request(name, &mtls_topic, &mtls_broker.bootstrap, access)).await;
    }

    // MSK IAM: the poller's own secret key and session token.
    let msk = MskStub::start().await;
    let iam = IamCluster::start().await;
    let iam_topic = random_topic("iam-secrets");
    iam.create_topic(&iam_topic, 1).await;
    iam.fill(&iam_topic, 1, 3).await;
    let arn = cluster_arn("iam");
    msk.put_cluster(&arn, MskCluster::serverless(&iam.bootstrap));
    h.create(CreateRequest {
        function_name: "iam".into(),
        event_source_arn: Some(arn),
        topics: vec![iam_topic.clone()],
        starting_position: Some(StartingPosition::TrimHorizon),
        source_access_configurations: Some(vec![access(
            SourceAccessType::ServerRootCaCertificate,
            &format!("file://{}", iam.ca.ca_path().display()),
        )]),
        ..CreateRequest::default()
    })
    .await;

    RECORDING.store(true, Ordering::Relaxed);
    let poller = AuthPoller::start(&h, &iam_sdk(&msk).await).await;
    let all = wait_for(WAIT, || async {
        count_to(&h, "scram") >= 3 && count_to(&h, "mtls") >= 3 && count_to(&h, "iam") >= 3
    })
    .await;
    assert!(all.is_some(), "delivered {} / {} / {}", count_to(&h, "scram"), count_to(&h, "mtls"), count_to(&h, "iam"));
    assert_eq!(wait_disabled(&h, &scram_bad).await.0, State::Disabled);
    poller.stop().await;
    RECORDING.store(false, Ordering::Relaxed);
    assert_eq!(count_to(&h, "mtls-bad"), 0);

    let logs = String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned();
    assert!(logs.len() > 10_000, "the poller's logs were recorded ({} bytes)", logs.len());
    let items = h.store.list().await.unwrap();
    let items = format!("{items:?}");
    let events: String = h.stub.invocations().iter().map(|i| i.raw.clone()).collect();
    let metrics = format!("{:?}", h.metrics);
    let mut states = String::new();
    for m in h.store.list().await.unwrap() {
        if let kafka_esm::model::store::Loaded::Valid(m) = m {
            states.push_str(&format!("{:?}", status(&h, &m).await));
        }
    }
    let secrets = [
        scram_password.as_str(),
        wrong_password.as_str(),
        key_password.as_str(),
        wrong_key_password.as_str(),
        key_body_line.as_str(),
        encrypted_body_line.as_str(),
        IAM_SECRET,
        IAM_SESSION,
        "session%2Btoken", // the session token as it appears inside a token URL
    ];
    for (what, text) in
        [("logs", &logs), ("mapping items", &items), ("events", &events), ("metrics", &metrics), ("states", &states)]
    {
        for (n, secret) in secrets.iter().enumerate() {
            if let Some(at) = text.find(secret) {
                // Shows where, with the value itself masked.
                let start = text[..at].char_indices().rev().nth(300).map_or(0, |(i, _)| i);
                let end = text[at..].char_indices().nth(300).map_or(text.len(), |(i, _)| at + i);
                let context = text[start..end].replace(secret, "<SECRET>");
                panic!("secret #{n} appears in the {what}: …{context}…");
            }
        }
    }
}
