//! `SourceAccessConfigurations`: which authentication, CA and network entries a mapping names,
//! checked as AWS checks them (one authentication type, none of MSK's unsupported ones, secrets
//! by ARN). The API refuses a mapping that breaks a rule; the poller reads the plan to connect
//! ([`crate::kafka::cluster`]).

use super::invalid::InvalidMapping;
use super::mapping::{EventSourceMapping, KafkaCluster, SourceAccessType};

/// The authentication a mapping asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    Scram256,
    Scram512,
    Plain,
    ClientCertificate,
}

/// What `SourceAccessConfigurations` say, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPlan {
    /// The authentication type and its secret's ARN.
    pub auth: Option<(AuthKind, String)>,
    /// The `SERVER_ROOT_CA_CERTIFICATE` URI.
    pub root_ca: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// Checks `SourceAccessConfigurations` as AWS does and says what to fetch.
///
/// # Errors
/// The first rule broken, naming `SourceAccessConfigurations`.
pub fn access_plan(mapping: &EventSourceMapping, cluster: &KafkaCluster) -> Result<AccessPlan, InvalidMapping> {
    let invalid = |message: String| InvalidMapping { field: "SourceAccessConfigurations", message };
    let msk = matches!(cluster, KafkaCluster::Msk { .. });
    let mut plan = AccessPlan { auth: None, root_ca: None, subnets: Vec::new(), security_groups: Vec::new() };
    for entry in mapping.source_access_configurations.iter().flatten() {
        let auth = match entry.kind {
            SourceAccessType::SaslScram512Auth => Some(AuthKind::Scram512),
            SourceAccessType::SaslScram256Auth if msk => {
                return Err(invalid(
                    "Amazon MSK supports SASL/SCRAM with SHA-512 only: use SASL_SCRAM_512_AUTH".into(),
                ));
            }
            SourceAccessType::SaslScram256Auth => Some(AuthKind::Scram256),
            SourceAccessType::BasicAuth if msk => {
                return Err(invalid(
                    "Amazon MSK does not support SASL/PLAIN (BASIC_AUTH): use SASL_SCRAM_512_AUTH, CLIENT_CERTIFICATE_TLS_AUTH or IAM".into(),
                ));
            }
            SourceAccessType::BasicAuth => Some(AuthKind::Plain),
            SourceAccessType::ClientCertificateTlsAuth => Some(AuthKind::ClientCertificate),
            SourceAccessType::ServerRootCaCertificate => {
                if plan.root_ca.replace(entry.uri.clone()).is_some() {
                    return Err(invalid("give at most one SERVER_ROOT_CA_CERTIFICATE".into()));
                }
                None
            }
            SourceAccessType::VpcSubnet => {
                plan.subnets.push(entry.uri.strip_prefix("subnet:").unwrap_or(&entry.uri).to_owned());
                None
            }
            SourceAccessType::VpcSecurityGroup => {
                plan.security_groups.push(entry.uri.strip_prefix("security_group:").unwrap_or(&entry.uri).to_owned());
                None
            }
            SourceAccessType::VirtualHost => {
                return Err(invalid("VIRTUAL_HOST is for Amazon MQ (RabbitMQ), not Kafka".into()));
            }
        };
        if let Some(kind) = auth {
            if !is_secret_arn(&entry.uri) {
                return Err(invalid(format!(
                    "{} must be a Secrets Manager secret ARN, not '{}'",
                    type_name(kind),
                    entry.uri
                )));
            }
            if plan.auth.replace((kind, entry.uri.clone())).is_some() {
                return Err(invalid(
                    "give one authentication type (SASL_SCRAM_512_AUTH, SASL_SCRAM_256_AUTH, BASIC_AUTH or CLIENT_CERTIFICATE_TLS_AUTH), as AWS allows one".into(),
                ));
            }
        }
    }
    Ok(plan)
}

const fn type_name(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::Scram256 => "SASL_SCRAM_256_AUTH",
        AuthKind::Scram512 => "SASL_SCRAM_512_AUTH",
        AuthKind::Plain => "BASIC_AUTH",
        AuthKind::ClientCertificate => "CLIENT_CERTIFICATE_TLS_AUTH",
    }
}

/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`.
pub fn is_secret_arn(uri: &str) -> bool {
    let parts: Vec<&str> = uri.splitn(7, ':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && parts[2] == "secretsmanager"
        && parts[5] == "secret"
        && !parts[6].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mapping::SourceAccessConfiguration;

    const ARN: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/abcd-1";
    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-abc";

    fn mapping(msk: bool, access: &[(SourceAccessType, &str)]) -> (EventSourceMapping, KafkaCluster) {
        let mut item = serde_json::json!({
            "UUID": "3f6b1a7e-4c1e-4a53-9f1a-1d2c3b4a5e6f",
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "Topics": ["t"],
            "StartingPosition": "LATEST",
            "State": "Enabled",
            "LastModified": 0.0,
        });
        if msk {
            item["EventSourceArn"] = ARN.into();
        } else {
            item["SelfManagedEventSource"] = serde_json::json!({"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b:9092"]}});
        }
        let mut mapping: EventSourceMapping = serde_json::from_value(item).expect("mapping");
        mapping.source_access_configurations = Some(
            access
                .iter()
                .map(|(kind, uri)| SourceAccessConfiguration { kind: *kind, uri: (*uri).to_owned() })
                .collect(),
        );
        let cluster = mapping.cluster();
        (mapping, cluster)
    }

    fn plan_of(msk: bool, access: &[(SourceAccessType, &str)]) -> Result<AccessPlan, InvalidMapping> {
        let (m, c) = mapping(msk, access);
        access_plan(&m, &c)
    }

    #[test]
    fn access_configurations_are_checked_as_aws_does() {
        use SourceAccessType as T;
        let plan = plan_of(false, &[(T::SaslScram256Auth, SECRET), (T::ServerRootCaCertificate, "file:///ca.pem")])
            .expect("valid");
        assert_eq!(plan.auth, Some((AuthKind::Scram256, SECRET.to_owned())));
        assert_eq!(plan.root_ca.as_deref(), Some("file:///ca.pem"));

        let config_error = |r: Result<AccessPlan, InvalidMapping>, needle: &str| match r {
            Err(e) => {
                assert_eq!(e.field, "SourceAccessConfigurations");
                assert!(e.message.contains(needle), "{e}");
            }
            other => panic!("{needle}: {other:?}"),
        };
        config_error(plan_of(true, &[(T::BasicAuth, SECRET)]), "SASL/PLAIN");
        config_error(plan_of(true, &[(T::SaslScram256Auth, SECRET)]), "SHA-512 only");
        config_error(
            plan_of(false, &[(T::SaslScram512Auth, SECRET), (T::ClientCertificateTlsAuth, SECRET)]),
            "one authentication type",
        );
        config_error(plan_of(false, &[(T::BasicAuth, "user:password")]), "Secrets Manager secret ARN");
        config_error(plan_of(false, &[(T::VirtualHost, "/")]), "Amazon MQ");

        let vpc = plan_of(false, &[(T::VpcSubnet, "subnet:subnet-1"), (T::VpcSecurityGroup, "security_group:sg-1")])
            .expect("VPC entries are accepted");
        assert_eq!((vpc.subnets, vpc.security_groups), (vec!["subnet-1".to_owned()], vec!["sg-1".to_owned()]));
        assert!(plan_of(true, &[(T::SaslScram512Auth, SECRET)]).is_ok());
    }

    #[test]
    fn secret_arns_in_every_partition() {
        assert!(is_secret_arn(SECRET));
        assert!(is_secret_arn("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a-b"));
        assert!(!is_secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:"));
        assert!(!is_secret_arn("arn:aws:s3:::bucket"));
    }
}
