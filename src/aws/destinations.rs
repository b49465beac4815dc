//! SQS, SNS and S3 on-failure destinations, and building a mapping's destination from its
//! `DestinationConfig` (the `kafka://` ones are in [`crate::kafka::destination`]).
//!
//! SQS and SNS receive the failure record as the message body; S3 receives it with `payload`
//! (the invoke event, as a JSON string) as an object named
//! `aws/lambda/<mapping UUID>/<topic-partition>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<request id>`.
//! Clients come from [`super::sqs_client`] and friends, so endpoints follow
//! `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_SNS` and `AWS_ENDPOINT_URL_S3`.

use std::sync::Arc;

use aws_config::SdkConfig;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use crate::delivery::destination::{Destination, DestinationError, GivenUp, Target, on_failure_destination};
use crate::kafka::KafkaSettings;
use crate::kafka::destination::KafkaDestination;
use crate::model::mapping::EventSourceMapping;

/// Why a mapping's destination cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DestinationConfig.OnFailure.Destination: {0}")]
pub struct InvalidDestination(pub String);

/// The mapping's on-failure destination, if it has one. `sdk` is the AWS configuration to use;
/// `None` loads it from the environment when the destination is an AWS one.
///
/// # Errors
/// The destination is not a supported form, or its Kafka producer cannot be configured.
pub async fn for_mapping(
    mapping: &EventSourceMapping,
    kafka: &KafkaSettings,
    sdk: Option<&SdkConfig>,
) -> Result<Option<Arc<dyn Destination>>, InvalidDestination> {
    let Some(destination) = on_failure_destination(mapping) else { return Ok(None) };
    let target = Target::parse(destination)
        .ok_or_else(|| InvalidDestination(format!("'{destination}' is not an SQS, SNS or S3 ARN or kafka://")))?;
    let name = destination.to_owned();
    let sdk = match (&target, sdk) {
        (Target::Kafka { .. }, _) => None,
        (_, Some(sdk)) => Some(sdk.clone()),
        (_, None) => Some(super::sdk_config().await),
    };
    let aws = |sdk: &Option<SdkConfig>| sdk.clone().unwrap_or_else(|| SdkConfig::builder().build());
    Ok(Some(match target {
        Target::Sqs { arn } => {
            Arc::new(SqsDestination { client: super::sqs_client(&aws(&sdk)), arn, url: OnceCell::new() })
        }
        Target::Sns { arn } => Arc::new(SnsDestination { client: super::sns_client(&aws(&sdk)), arn }),
        Target::S3 { bucket } => {
            Arc::new(S3Destination { client: super::s3_client(&aws(&sdk)), bucket, mapping: mapping.uuid.clone() })
        }
        Target::Kafka { servers, topic } => {
            let servers = servers.map_or_else(|| kafka.bootstrap_servers.clone(), |s| s.join(","));
            Arc::new(
                KafkaDestination::new(kafka, &servers, &topic, &name, &mapping.uuid)
                    .map_err(|e| InvalidDestination(e.to_string()))?,
            )
        }
    }))
}

fn failed(destination: &str, error: &impl std::fmt::Display) -> DestinationError {
    DestinationError { destination: destination.to_owned(), message: error.to_string() }
}

/// An SQS queue, by ARN; its URL is looked up once.
#[derive(Debug)]
struct SqsDestination {
    client: aws_sdk_sqs::Client,
    arn: String,
    url: OnceCell<String>,
}

impl SqsDestination {
    async fn url(&self) -> Result<&String, DestinationError> {
        self.url
            .get_or_try_init(|| async {
                // arn:aws:sqs:REGION:ACCOUNT:NAME
                let mut parts = self.arn.rsplitn(3, ':');
                let (name, account) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let out = self
                    .client
                    .get_queue_url()
                    .queue_name(name)
                    .queue_owner_aws_account_id(account)
                    .send()
                    .await
                    .map_err(|e| failed(&self.arn, &aws_sdk_sqs::error::DisplayErrorContext(e)))?;
                out.queue_url.ok_or_else(|| failed(&self.arn, &"GetQueueUrl returned no URL"))
            })
            .await
    }
}

impl Destination for SqsDestination {
    fn store<'a>(&'a self, given_up: &'a GivenUp) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            let url = self.url().await?;
            let body = String::from_utf8_lossy(&given_up.without_payload()).into_owned();
            self.client
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| failed(&self.arn, &aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            Ok(())
        })
    }
}

#[derive(Debug)]
struct SnsDestination {
    client: aws_sdk_sns::Client,
    arn: String,
}

impl Destination for SnsDestination {
    fn store<'a>(&'a self, given_up: &'a GivenUp) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            let body = String::from_utf8_lossy(&given_up.without_payload()).into_owned();
            self.client
                .publish()
                .topic_arn(&self.arn)
                .message(body)
                .send()
                .await
                .map_err(|e| failed(&self.arn, &aws_sdk_sns::error::DisplayErrorContext(e)))?;
            Ok(())
        })
    }
}

#[derive(Debug)]
struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
    mapping: String,
}

impl Destination for S3Destination {
    fn store<'a>(&'a self, given_up: &'a GivenUp) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            let record = &given_up.record;
            let partition = record.kafka_batch_info.records_info.keys().next().cloned().unwrap_or_default();
            // 2026-01-01T00:00:00.000Z → 2026/01/01 and 2026-01-01T00.00.00
            let ts = &record.timestamp;
            let (date, time) = (ts.get(..10).unwrap_or_default(), ts.get(11..19).unwrap_or_default());
            let key = format!(
                "aws/lambda/{}/{partition}/{}/{date}T{}-{}",
                self.mapping,
                date.replace('-', "/"),
                time.replace(':', "."),
                record.request_context.request_id
            );
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                .body(Bytes::from(given_up.with_payload_string()).into())
                .send()
                .await
                .map_err(|e| {
                    failed(&format!("arn:aws:s3:::{}", self.bucket), &aws_sdk_s3::error::DisplayErrorContext(e))
                })?;
            Ok(())
        })
    }
}
