//! The `Custom::KafkaEsmEventSource` provider: CloudFormation invokes it for each create, update
//! and delete of a mapping declared in a template; it calls the same API as `esm` on the mappings
//! table (`ESM_MAPPINGS_TABLE`, default `kafka-esm-mappings`) and PUTs the outcome to CloudFormation's response URL
//! (`kafka_esm::deploy::custom_resource`).

use kafka_esm::aws::lambda::LambdaFunctionResolver;
use kafka_esm::aws::mappings::DynamoMappingStore;
use kafka_esm::deploy::custom_resource::{self, Request};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

struct Provider {
    store: DynamoMappingStore,
    functions: LambdaFunctionResolver,
}

async fn handle(provider: &Provider, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (url, response) = match serde_json::from_value::<Request>(event.payload.clone()) {
        Ok(request) => {
            let response = custom_resource::handle(&provider.store, &provider.functions, &request).await;
            (request.response_url, response)
        }
        Err(e) => match custom_resource::malformed(&event.payload, &e.to_string()) {
            Some(answer) => answer,
            // Nobody waits for an answer (a test invoke, the build's start check): say so.
            None => {
                tracing::warn!(error = %e, "Not a CloudFormation custom resource request (no ResponseURL): nothing done.");
                return Ok(
                    json!({"Status": "IGNORED", "Reason": format!("not a CloudFormation custom resource request: {e}")}),
                );
            }
        },
    };
    // A response that cannot be delivered is an error: Lambda retries the asynchronous invoke.
    custom_resource::send(&url, &response).await?;
    Ok(json!({"Status": response.status, "PhysicalResourceId": response.physical_resource_id}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .without_time()
        .init();
    // As for the poller and esm: unset or empty means the default table name.
    let table = std::env::var("ESM_MAPPINGS_TABLE")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| kafka_esm::config::Tables::default().mappings);
    let sdk = kafka_esm::aws::sdk_config().await;
    let provider = Provider {
        store: DynamoMappingStore::from_sdk(&sdk, table),
        functions: LambdaFunctionResolver::new(aws_sdk_lambda::Client::new(&sdk)),
    };
    let provider = &provider;
    lambda_runtime::run(service_fn(move |event| handle(provider, event))).await
}
