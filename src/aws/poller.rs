//! A poller process's parts, built from the environment in one place: the `esm poll` command and
//! the poller Lambda differ only in how they start and stop it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::lambda::{InvokeClientError, LambdaInvoker, SelfInvoke};
use super::leases::DynamoLeaseStore;
use super::mappings::DynamoMappingStore;
use crate::clock::SystemClock;
use crate::config::{ConfigError, Settings};
use crate::coordination::consumer::Deps;
use crate::coordination::supervisor::{Exit, Start, run_poller};
use crate::delivery::metrics::Metrics;
use crate::kafka::KafkaConnector;
use crate::kafka::cluster::ClusterResolver;

/// Why a poller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    InvokeClient(#[from] InvokeClientError),
}

/// Everything one poller runs with.
#[derive(Debug)]
pub struct PollerParts {
    pub store: Arc<DynamoMappingStore>,
    pub leases: Arc<DynamoLeaseStore>,
    pub deps: Arc<Deps<KafkaConnector, LambdaInvoker>>,
    /// Starts more pollers (relay, scale-out) when `ESM_POLLER_FUNCTION` names this function.
    pub spawner: Option<Arc<SelfInvoke>>,
}

impl PollerParts {
    /// The adapters for `settings`, with the AWS environment's endpoints and credentials.
    ///
    /// # Errors
    /// The Invoke client could not be built.
    pub fn new(sdk: &aws_config::SdkConfig, settings: Settings) -> Result<Self, InvokeClientError> {
        let dynamo = super::dynamodb_client(sdk);
        Ok(Self {
            store: Arc::new(DynamoMappingStore::new(dynamo.clone(), &settings.tables.mappings)),
            leases: Arc::new(DynamoLeaseStore::new(dynamo, &settings.tables.leases)),
            spawner: settings.poller_function.as_ref().map(|f| Arc::new(SelfInvoke::new(sdk, f))),
            deps: Arc::new(Deps {
                connector: KafkaConnector::new(ClusterResolver::new(sdk), settings.kafka),
                invoker: Arc::new(LambdaInvoker::new(sdk)?),
                metrics: Arc::new(Metrics::default()),
                settings,
            }),
        })
    }

    /// [`PollerParts::new`] with the settings from the process environment.
    ///
    /// # Errors
    /// An `ESM_*` variable is invalid, or the Invoke client could not be built.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, SetupError> {
        Ok(Self::new(sdk, Settings::from_env()?)?)
    }

    /// Runs one poller until `stop`.
    pub async fn run(&self, start: Start, stop: CancellationToken) -> Exit {
        run_poller(
            self.store.clone(),
            self.leases.clone(),
            self.deps.clone(),
            Arc::new(SystemClock),
            self.spawner.clone(),
            start,
            stop,
        )
        .await
    }
}
