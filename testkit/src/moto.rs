//! moto_server: local SQS, SNS, S3, Secrets Manager (and every other AWS API moto mocks) on a
//! free port, one process serving all of them. Point an SDK client at [`Moto::endpoint`] with
//! [`crate::sdk_config`] (or `AWS_ENDPOINT_URL_<SERVICE>` in a child process); moto accepts any
//! credentials and keeps everything in memory, per account and Region.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::services::{Service, free_port, tool, wait_port};

/// A running moto_server.
#[derive(Debug)]
pub struct Moto {
    pub service: Service,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port (from the install cache's Python, else PATH).
    ///
    /// # Errors
    /// moto is not installed, or did not listen within 30 s.
    pub fn start() -> Result<Self> {
        let port = free_port();
        let args = vec!["-H".to_owned(), "127.0.0.1".to_owned(), "-p".to_owned(), port.to_string()];
        let service = Service::spawn(&tool("moto_server"), &args, "moto").context("start moto_server")?;
        wait_port(port, "moto_server", Duration::from_secs(30))?;
        Ok(Self { service, endpoint: format!("http://127.0.0.1:{port}") })
    }

    /// SDK configuration for this moto (Region us-east-1, fixed credentials).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::sdk_config(&self.endpoint).await
    }

    /// A Secrets Manager client for this moto.
    pub async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    /// Creates secret `name` holding `value` (a `SecretString`); returns its ARN.
    ///
    /// # Errors
    /// moto refused the call.
    pub async fn create_secret(&self, name: &str, value: &str) -> Result<String> {
        let out = self.secrets().await.create_secret().name(name).secret_string(value).send().await?;
        out.arn.context("CreateSecret returned no ARN")
    }

    /// Stores a new version of secret `arn` (a rotation); returns the new `VersionId`.
    ///
    /// # Errors
    /// moto refused the call.
    pub async fn put_secret_value(&self, arn: &str, value: &str) -> Result<String> {
        let out = self.secrets().await.put_secret_value().secret_id(arn).secret_string(value).send().await?;
        out.version_id.context("PutSecretValue returned no VersionId")
    }
}
