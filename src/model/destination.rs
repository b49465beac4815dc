//! Where a mapping's given-up records go: `DestinationConfig.OnFailure.Destination` parsed into
//! its kind. Validation refuses what does not parse; the writers are in
//! [`crate::delivery::destination`] and the adapters.

use super::mapping::{EventSourceMapping, is_topic_name};

/// Where given-up records go, parsed from `DestinationConfig.OnFailure.Destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqs {
        arn: String,
    },
    Sns {
        arn: String,
    },
    S3 {
        bucket: String,
    },
    /// `servers`: another cluster's `host:port` list; `None` is the mapping's own cluster.
    Kafka {
        servers: Option<Vec<String>>,
        topic: String,
    },
}

impl Target {
    /// Parses a destination; `None` when it is not one of the supported forms.
    pub fn parse(destination: &str) -> Option<Self> {
        if let Some(rest) = destination.strip_prefix("kafka://") {
            return match rest.split_once('/') {
                None => is_topic_name(rest).then(|| Self::Kafka { servers: None, topic: rest.to_owned() }),
                Some((servers, topic)) => {
                    let servers: Vec<String> = servers.split(',').map(str::to_owned).collect();
                    let valid = servers.iter().all(|s| {
                        s.rsplit_once(':').is_some_and(|(host, port)| {
                            !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
                        })
                    });
                    (valid && is_topic_name(topic))
                        .then(|| Self::Kafka { servers: Some(servers), topic: topic.to_owned() })
                }
            };
        }
        let parts: Vec<&str> = destination.splitn(6, ':').collect();
        let ["arn", partition, service, region, account, resource] = parts.as_slice() else {
            return None;
        };
        let regional = !region.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if !partition.starts_with("aws") || resource.is_empty() || resource.contains(['/', ':']) {
            return None;
        }
        match *service {
            "sqs" if regional => Some(Self::Sqs { arn: destination.to_owned() }),
            "sns" if regional => Some(Self::Sns { arn: destination.to_owned() }),
            "s3" if region.is_empty() && account.is_empty() => Some(Self::S3 { bucket: (*resource).to_owned() }),
            _ => None,
        }
    }
}

/// The mapping's `DestinationConfig.OnFailure.Destination`, if any.
pub fn on_failure_destination(mapping: &EventSourceMapping) -> Option<&str> {
    mapping.destination_config.as_ref()?.get("OnFailure")?.get("Destination")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_into_their_kinds() {
        let cases = [
            (
                "arn:aws:sqs:us-east-1:123456789012:dlq",
                Some(Target::Sqs { arn: "arn:aws:sqs:us-east-1:123456789012:dlq".into() }),
            ),
            (
                "arn:aws:sns:eu-west-1:123456789012:t",
                Some(Target::Sns { arn: "arn:aws:sns:eu-west-1:123456789012:t".into() }),
            ),
            ("arn:aws:s3:::bucket", Some(Target::S3 { bucket: "bucket".into() })),
            ("kafka://dlt", Some(Target::Kafka { servers: None, topic: "dlt".into() })),
            (
                "kafka://a:9092,b.example:9093/dlt",
                Some(Target::Kafka {
                    servers: Some(vec!["a:9092".into(), "b.example:9093".into()]),
                    topic: "dlt".into(),
                }),
            ),
            ("kafka://", None),
            ("kafka://bad topic", None),
            ("kafka://a/dlt", None),
            ("kafka://a:0/dlt", None),
            ("kafka://a:9092/", None),
            ("arn:aws:sqs:us-east-1:1234:dlq", None),
            ("arn:aws:s3:us-east-1::bucket", None),
            ("arn:aws:lambda:us-east-1:123456789012:function:f", None),
            ("https://sqs.us-east-1.amazonaws.com/123456789012/dlq", None),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text), expected, "{text}");
        }
    }
}
