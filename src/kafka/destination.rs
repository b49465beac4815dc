//! `kafka://` on-failure destinations: one message per given-up record, keyed with the record's
//! key, on the mapping's own cluster with its authentication (`kafka://TOPIC`), or on another
//! cluster with the mapping's transport security and credentials
//! (`kafka://HOST:PORT[,HOST:PORT…]/TOPIC`, kafka-esm's extension).

use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{EsmContext, KafkaClientError, KafkaSettings, apply_security, creation_error};
use crate::delivery::destination::{Destination, DestinationError, GivenUp};

/// How long one message may take to be acknowledged before the write is retried.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Kafka's default `max.message.bytes` (1 MB) less room for the record overhead: a failure
/// record that would be larger goes without its payload.
const MAX_MESSAGE_BYTES: usize = 1_000_000 - 1024;

/// Writes given-up records to a Kafka topic.
pub struct KafkaDestination {
    producer: FutureProducer<EsmContext>,
    topic: String,
    /// For errors: `kafka://…` as configured.
    name: String,
}

impl std::fmt::Debug for KafkaDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDestination").field("destination", &self.name).finish()
    }
}

impl KafkaDestination {
    /// A producer for `topic` on `servers` (comma-separated) with `settings`' security.
    ///
    /// # Errors
    /// librdkafka rejected the configuration.
    pub fn new(
        settings: &KafkaSettings,
        servers: &str,
        topic: &str,
        name: &str,
        mapping: &str,
    ) -> Result<Self, KafkaClientError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", servers)
            .set("client.id", format!("kafka-esm-{mapping}-on-failure"))
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .set("linger.ms", "5");
        apply_security(&mut config, &settings.security);
        let context = EsmContext::new(mapping, topic, servers, &settings.security);
        let producer = config.create_with_context(context).map_err(|e| creation_error(&settings.security, &e))?;
        Ok(Self { producer, topic: topic.to_owned(), name: name.to_owned() })
    }
}

impl Destination for KafkaDestination {
    fn store<'a>(&'a self, given_up: &'a GivenUp) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            let error = |message: String| DestinationError { destination: self.name.clone(), message };
            let messages = given_up.per_record(MAX_MESSAGE_BYTES);
            let mut pending = Vec::with_capacity(messages.len());
            for (key, value) in &messages {
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).payload(value.as_slice());
                if let Some(key) = key {
                    record = record.key(key.as_slice());
                }
                pending.push(self.producer.send(record, SEND_TIMEOUT));
            }
            // Every message must be acknowledged: a failed one fails the whole write, which is
            // retried (the others are then written twice, never lost).
            for result in futures::future::join_all(pending).await {
                result.map_err(|(e, _)| error(e.to_string()))?;
            }
            Ok(())
        })
    }
}
