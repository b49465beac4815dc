//! Producing and inspecting test data with librdkafka, independently of the code under test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A random topic name, so tests never share data.
pub fn random_topic(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_with(bootstrap, topic, partitions, &[]).await
}

/// Like [`create_topic`], with extra client settings (e.g. TLS).
pub async fn create_topic_with(bootstrap: &str, topic: &str, partitions: i32, extra: &[(&str, &str)]) -> Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("create topic {name}: {code}");
        }
    }
    Ok(())
}

/// One record to produce.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A producer that writes one record per batch (a tansu 0.6 fetch that starts inside a
/// multi-record batch skips the rest of it) and waits for each acknowledgement.
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

impl Producer {
    pub fn new(bootstrap: &str) -> Result<Self> {
        Self::with_config(bootstrap, &[])
    }

    /// A producer with extra client settings (e.g. TLS).
    pub fn with_config(bootstrap: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let mut config = ClientConfig::new();
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let inner = config
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .set("max.in.flight.requests.per.connection", "1")
            .set("enable.idempotence", "false")
            .set("message.max.bytes", "10000000")
            .create()?;
        Ok(Self { inner })
    }

    /// Produces `record` to `topic` and returns its offset.
    pub async fn send(&self, topic: &str, record: &TestRecord) -> Result<i64> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        let mut future = FutureRecord::<[u8], [u8]>::to(topic).partition(record.partition).headers(headers);
        if let Some(k) = &record.key {
            future = future.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            future = future.payload(v.as_slice());
        }
        let delivery = self.inner.send(future, Duration::from_secs(10)).await.map_err(|(e, _)| e).context("produce")?;
        Ok(delivery.offset)
    }

    /// Produces `count` records per partition with values `"{prefix}-{partition}-{i}"`.
    pub async fn fill(&self, topic: &str, partitions: i32, count: usize, prefix: &str) -> Result<()> {
        for i in 0..count {
            for p in 0..partitions {
                let value = format!("{prefix}-{p}-{i}").into_bytes();
                self.send(
                    topic,
                    &TestRecord {
                        partition: p,
                        key: Some(format!("k{i}").into_bytes()),
                        value: Some(value),
                        headers: vec![],
                    },
                )
                .await?;
            }
        }
        Ok(())
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The group's committed offsets, read by a separate process with a separate client
/// (confluent-kafka, through `scripts/kafka-offsets.py`).
pub fn committed_offsets_out_of_process(bootstrap: &str, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    committed_offsets_out_of_process_tls(bootstrap, group, topic, None)
}

/// Like [`committed_offsets_out_of_process`], over TLS trusting `ca_file` when given.
pub fn committed_offsets_out_of_process_tls(
    bootstrap: &str,
    group: &str,
    topic: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<BTreeMap<i32, i64>> {
    let python = crate::services::tool("python");
    let mut command = Command::new(python);
    command.arg(repo_root().join("scripts/kafka-offsets.py")).args([
        "--bootstrap",
        bootstrap,
        "--group",
        group,
        "--topic",
        topic,
        "--json",
    ]);
    if let Some(ca) = ca_file {
        command.arg("--ca").arg(ca);
    }
    let out = command.output().context("run scripts/kafka-offsets.py")?;
    if !out.status.success() {
        bail!("kafka-offsets.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut offsets = BTreeMap::new();
    for p in value["partitions"].as_array().into_iter().flatten() {
        if let (Some(partition), Some(committed)) = (p["partition"].as_i64(), p["committed"].as_i64()) {
            offsets.insert(i32::try_from(partition)?, committed);
        }
    }
    Ok(offsets)
}
