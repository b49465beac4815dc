//! The Secrets Manager secrets a mapping names in `SourceAccessConfigurations`, read with
//! `secretsmanager:GetSecretValue` and parsed in the JSON layouts AWS defines:
//!
//! - `SASL_SCRAM_512_AUTH`, `SASL_SCRAM_256_AUTH`, `BASIC_AUTH`: `{"username", "password"}`;
//! - `CLIENT_CERTIFICATE_TLS_AUTH`: `{"certificate", "privateKey", "privateKeyPassword"?}` (PEM);
//! - `SERVER_ROOT_CA_CERTIFICATE`: `{"certificate"}` (PEM).
//!
//! Secret values live in [`Secret`]s, which never print themselves, and no error here carries a
//! value: errors name the secret's ARN and the field, nothing else, because they end up in logs
//! and in the mapping's `LastProcessingResult`. Which failures are worth retrying is decided here
//! too: throttling and service errors are transient, a missing, unreadable or malformed secret
//! needs a human.

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::delivery::policy::StopReason;

/// A secret value (a password, a private key, …). Its `Debug` shows only that it is redacted and
/// it has no `Display`, so it cannot end up in a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (the Kafka client's configuration).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SASL credentials (`{"username","password"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPassword {
    pub username: Secret,
    pub password: Secret,
}

/// An mTLS client certificate (`{"certificate","privateKey","privateKeyPassword"?}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// PEM: the client certificate first, then intermediates (as AWS asks). Not secret, but kept
    /// out of logs all the same.
    pub certificate_pem: Secret,
    /// PEM, PKCS #8, encrypted or not.
    pub private_key_pem: Secret,
    pub private_key_password: Option<Secret>,
}

/// One secret as read: its version (to tell a rotated secret from the one that failed) and its
/// top-level string fields.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretJson {
    pub arn: String,
    pub version_id: Option<String>,
    fields: Vec<(String, Secret)>,
}

impl std::fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretJson")
            .field("arn", &self.arn)
            .field("version_id", &self.version_id)
            .field("fields", &self.fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// Why a secret cannot be used. Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error(
        "secret {arn} does not exist in the poller's account and Region ({code}). Create it, or fix SourceAccessConfigurations"
    )]
    NotFound { arn: String, code: String },
    #[error(
        "the poller may not read secret {arn} ({code}). Allow secretsmanager:GetSecretValue on it in the poller's role, and kms:Decrypt on its key when the secret uses a customer-managed KMS key"
    )]
    AccessDenied { arn: String, code: String },
    #[error("secret {arn} cannot be read ({code}: {message})")]
    Unusable { arn: String, code: String, message: String },
    #[error("secret {arn} has no SecretString; store the JSON layout AWS defines as text")]
    NotText { arn: String },
    #[error("secret {arn} is not a JSON object; {layout}")]
    NotJson { arn: String, layout: &'static str },
    #[error("secret {arn} has no \"{field}\" text field; {layout}")]
    MissingField { arn: String, field: &'static str, layout: &'static str },
    #[error("cannot read secret {arn} now: {detail}")]
    Transient { arn: String, detail: String },
}

impl SecretError {
    /// `None` when the read may be retried, else the `StateTransitionReason` to stop with.
    pub const fn stop_reason(&self) -> Option<StopReason> {
        match self {
            Self::Transient { .. } => None,
            Self::AccessDenied { .. } => Some(StopReason::EventSourceAuthzError),
            Self::NotFound { .. }
            | Self::Unusable { .. }
            | Self::NotText { .. }
            | Self::NotJson { .. }
            | Self::MissingField { .. } => Some(StopReason::EsmConfigNotValid),
        }
    }
}

/// The layouts, as the error messages show them to users.
pub const USER_PASSWORD_LAYOUT: &str = r#"expected {"username": "...", "password": "..."}"#;
pub const CLIENT_CERTIFICATE_LAYOUT: &str =
    r#"expected {"certificate": "PEM", "privateKey": "PEM", "privateKeyPassword": "..." (only for an encrypted key)}"#;
pub const ROOT_CA_LAYOUT: &str = r#"expected {"certificate": "PEM"}"#;

impl SecretJson {
    /// Parses a `SecretString`.
    ///
    /// # Errors
    /// The text is not a JSON object.
    pub fn parse(arn: &str, version_id: Option<String>, text: &str, layout: &'static str) -> Result<Self, SecretError> {
        // The parser's own message is left out: it may quote a piece of the secret.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| SecretError::NotJson { arn: arn.to_owned(), layout })?;
        let serde_json::Value::Object(map) = value else {
            return Err(SecretError::NotJson { arn: arn.to_owned(), layout });
        };
        let fields = map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, Secret(s))),
                _ => None,
            })
            .collect();
        Ok(Self { arn: arn.to_owned(), version_id, fields })
    }

    fn field(&self, name: &str) -> Option<&Secret> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn required(&self, name: &'static str, layout: &'static str) -> Result<Secret, SecretError> {
        self.field(name).filter(|v| !v.0.trim().is_empty()).cloned().ok_or_else(|| SecretError::MissingField {
            arn: self.arn.clone(),
            field: name,
            layout,
        })
    }

    /// `{"username","password"}`.
    ///
    /// # Errors
    /// A field is missing, empty or not text.
    pub fn user_password(&self) -> Result<UserPassword, SecretError> {
        Ok(UserPassword {
            username: self.required("username", USER_PASSWORD_LAYOUT)?,
            password: self.required("password", USER_PASSWORD_LAYOUT)?,
        })
    }

    /// `{"certificate","privateKey","privateKeyPassword"?}`.
    ///
    /// # Errors
    /// A required field is missing, empty or not text.
    pub fn client_certificate(&self) -> Result<ClientCertificate, SecretError> {
        Ok(ClientCertificate {
            certificate_pem: self.required("certificate", CLIENT_CERTIFICATE_LAYOUT)?,
            private_key_pem: self.required("privateKey", CLIENT_CERTIFICATE_LAYOUT)?,
            private_key_password: self.field("privateKeyPassword").filter(|p| !p.0.is_empty()).cloned(),
        })
    }

    /// `{"certificate"}`: a PEM bundle of trusted roots.
    ///
    /// # Errors
    /// The field is missing, empty or not text.
    pub fn root_ca(&self) -> Result<String, SecretError> {
        self.required("certificate", ROOT_CA_LAYOUT).map(|s| s.0)
    }
}

/// Reads secrets with `GetSecretValue` (the caller caches what it built from them).
#[derive(Debug, Clone)]
pub struct SecretReader {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretReader {
    pub const fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// The current version of secret `arn`.
    ///
    /// # Errors
    /// See [`SecretError`]; [`SecretError::Transient`] for throttling, service errors and no answer.
    pub async fn read(&self, arn: &str, layout: &'static str) -> Result<SecretJson, SecretError> {
        let out = self.client.get_secret_value().secret_id(arn).send().await.map_err(|e| classify(arn, &e))?;
        let version_id = out.version_id().map(str::to_owned);
        let text = out.secret_string().ok_or_else(|| SecretError::NotText { arn: arn.to_owned() })?;
        SecretJson::parse(arn, version_id, text, layout)
    }
}

/// What a failed `GetSecretValue` means. Throttling is a 400 in Secrets Manager, so the status
/// alone does not tell transient from permanent: the error code does.
fn classify(arn: &str, error: &SdkError<GetSecretValueError, HttpResponse>) -> SecretError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or_default().to_owned();
    let message = error.message().unwrap_or_default().to_owned();
    let arn = arn.to_owned();
    match (status, code.as_str()) {
        (_, "ResourceNotFoundException") => SecretError::NotFound { arn, code },
        (_, "AccessDeniedException" | "DecryptionFailure") | (Some(403), _) => SecretError::AccessDenied { arn, code },
        (_, "InvalidRequestException" | "InvalidParameterException") => SecretError::Unusable { arn, code, message },
        // Throttling (400 ThrottlingException), InternalServiceError and any 5xx, no answer at
        // all, and codes this build does not know: retried, never a reason to stop a mapping.
        (Some(status), code) if !code.is_empty() => {
            SecretError::Transient { arn, detail: format!("{status} {code}: {message}") }
        }
        _ => SecretError::Transient { arn, detail: DisplayErrorContext(error).to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf";

    #[test]
    fn layouts_parse_and_missing_fields_are_named_without_values() {
        let json = SecretJson::parse(ARN, Some("v1".into()), r#"{"username":"alice","password":"hunter2"}"#, "")
            .expect("parse");
        let up = json.user_password().expect("user/password");
        assert_eq!((up.username.expose(), up.password.expose()), ("alice", "hunter2"));
        assert!(!format!("{json:?} {up:?}").contains("hunter2"), "Debug never shows values");

        let only_user = SecretJson::parse(ARN, None, r#"{"username":"alice","password":""}"#, "").expect("parse");
        match only_user.user_password() {
            Err(e @ SecretError::MissingField { field: "password", .. }) => {
                assert_eq!(e.stop_reason(), Some(StopReason::EsmConfigNotValid));
                assert!(e.to_string().contains(ARN) && !e.to_string().contains("alice"), "{e}");
            }
            other => panic!("{other:?}"),
        }

        let cert = SecretJson::parse(ARN, None, r#"{"certificate":"C","privateKey":"K"}"#, "").expect("parse");
        let cert = cert.client_certificate().expect("cert");
        assert_eq!(cert.private_key_password, None);
        assert!(matches!(
            SecretJson::parse(ARN, None, r#"{"certificate":"C"}"#, "").expect("parse").client_certificate(),
            Err(SecretError::MissingField { field: "privateKey", .. })
        ));
    }

    #[test]
    fn text_that_is_not_a_json_object_is_refused_without_quoting_it() {
        for text in ["hunter2", "[\"hunter2\"]", "\"hunter2\"", "{\"password\": hunter2}"] {
            match SecretJson::parse(ARN, None, text, USER_PASSWORD_LAYOUT) {
                Err(e @ SecretError::NotJson { .. }) => assert!(!e.to_string().contains("hunter2"), "{e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn throttling_is_transient_and_a_missing_secret_is_not() {
        assert_eq!(SecretError::Transient { arn: ARN.into(), detail: String::new() }.stop_reason(), None);
        assert_eq!(
            SecretError::AccessDenied { arn: ARN.into(), code: "AccessDeniedException".into() }.stop_reason(),
            Some(StopReason::EventSourceAuthzError)
        );
        assert_eq!(
            SecretError::NotFound { arn: ARN.into(), code: "ResourceNotFoundException".into() }.stop_reason(),
            Some(StopReason::EsmConfigNotValid)
        );
    }
}
