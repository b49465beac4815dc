//! The `esm` binary as users run it: a real process, against dynalite (started once per test
//! binary by the test kit) and the Invoke stub for the Lambda API (`GetFunction`), with fresh
//! tables per test. Covers every command, the AWS CLI's output shape (golden files under
//! `tests/golden/`, keys in the order the AWS CLI prints them), every validation rule with the
//! AWS CLI's error line and exit status, the hand-written item in `docs/mappings.md`,
//! concurrent writers, and the AWS CLI's global options (`--output text|table` and `--query`
//! against files the AWS CLI's own formatter renders: `tests/golden/render-with-aws-cli.py`),
//! input skeletons against botocore's, `--page-size` and tags.
//!
//! `UPDATE_GOLDEN=1 cargo test --test cli` rewrites the golden files; review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use kafka_esm::aws::mappings::DynamoMappingStore;
use kafka_esm::config::Tables;
use kafka_esm::model::mapping::State;
use kafka_esm::model::store::{Loaded, MappingStore, Status};
use kafka_esm_testkit::{Dynalite, InvokeStub, sdk_config};
use serde_json::{Value, json};

/// The AWS CLI's exit status for a service error.
const SERVICE_ERROR: i32 = 254;
/// Every esm process must finish within this.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// The seed's example MSK cluster and the UUID/LastModified golden files are normalised to.
const MSK_ARN: &str = "arn:aws:kafka:us-west-2:111111111111:cluster/my-cluster/fc2f5bdf-fd1b-45ad-85dd-15b4a5a6247e-2";
const GOLDEN_UUID: &str = "6d9bce8e-836b-442c-8070-74e77903c815";
const GOLDEN_LAST_MODIFIED: f64 = 1_580_331_394.363;
const STUB_ACCOUNT_ARN: &str = "arn:aws:lambda:us-east-1:123456789012";

static DYNALITE: OnceLock<Dynalite> = OnceLock::new();

fn dynalite() -> &'static Dynalite {
    DYNALITE.get_or_init(|| Dynalite::start().expect("start dynalite (scripts/install-deps.sh installs it)"))
}

/// What an `esm` process did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The AWS CLI's error line, `An error occurred (Code) when calling the Op operation: msg`.
    fn error_line(&self) -> &str {
        self.stderr.lines().find(|l| l.starts_with("An error occurred (")).unwrap_or("")
    }
}

/// One test's world: its own tables, its own Lambda stub, the esm binary pointed at both.
struct Esm {
    stub: InvokeStub,
    tables: Tables,
    store: DynamoMappingStore,
    dynamo: aws_sdk_dynamodb::Client,
}

impl Esm {
    /// Fresh tables, created by `esm init` run twice (it must be idempotent).
    async fn new() -> Self {
        let dynalite = dynalite();
        let stub = InvokeStub::start().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let tables = Tables { mappings: format!("cli-mappings-{suffix}"), leases: format!("cli-leases-{suffix}") };
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(&dynalite.endpoint).await);
        let store = DynamoMappingStore::new(dynamo.clone(), &tables.mappings);
        let esm = Self { stub, tables, store, dynamo };
        let first = esm.ok(&["init"]).await;
        assert_eq!(
            first,
            json!({"MappingsTable": esm.tables.mappings, "LeasesTable": esm.tables.leases,
                   "Created": [esm.tables.mappings, esm.tables.leases]})
        );
        let again = esm.ok(&["init"]).await;
        assert_eq!(again["Created"], json!([]), "a second init creates nothing");
        esm
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    /// [`Esm::run`] with environment variables changed: `Some` sets one, `None` removes it.
    async fn run_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_esm"));
        command
            .args(args)
            .env_clear()
            .env("AWS_ENDPOINT_URL_DYNAMODB", &dynalite().endpoint)
            .env("AWS_ENDPOINT_URL_LAMBDA", &self.stub.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ESM_MAPPINGS_TABLE", &self.tables.mappings)
            .env("ESM_LEASES_TABLE", &self.tables.leases)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        for (key, value) in env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run the esm binary");
        let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("esm {args:?} did not finish within {PROCESS_TIMEOUT:?}"))
            .expect("esm output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; returns its JSON after checking it is printed the way the
    /// AWS CLI prints JSON (4-space indentation, one trailing newline) and that `Version` never
    /// leaks.
    async fn ok(&self, args: &[&str]) -> Value {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "esm {args:?} failed: {run:?}");
        let value: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("esm {args:?}: {e}: {run:?}"));
        assert_eq!(run.stdout, aws_cli_text(&value), "esm {args:?} is not printed like the AWS CLI");
        assert!(!run.stdout.contains("\"Version\""), "Version leaked: {}", run.stdout);
        value
    }

    /// Runs a command that must fail with a service error; checks the AWS CLI's exit status and
    /// error line, and returns the message after the prefix.
    async fn fails(&self, args: &[&str], code: &str, operation: &str) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, SERVICE_ERROR, "esm {args:?} should fail with {code}: {run:?}");
        assert!(run.stdout.is_empty(), "nothing on stdout on failure: {run:?}");
        let prefix = format!("An error occurred ({code}) when calling the {operation} operation: ");
        assert!(run.stderr.contains(&format!("\n{prefix}")), "esm {args:?}: expected `{prefix}…` on stderr: {run:?}");
        run.error_line().strip_prefix(&prefix).unwrap_or_default().to_owned()
    }

    async fn create(&self, args: &[&str]) -> Value {
        let mut all = vec!["create-event-source-mapping"];
        all.extend_from_slice(args);
        self.ok(&all).await
    }

    async fn get(&self, uuid: &str) -> Value {
        self.ok(&["get-event-source-mapping", "--uuid", uuid]).await
    }

    async fn stored(&self, uuid: &str) -> kafka_esm::model::mapping::EventSourceMapping {
        match self.store.get(uuid).await.expect("read the item") {
            Some(Loaded::Valid(m)) => m,
            other => panic!("mapping {uuid} is not a valid item: {other:?}"),
        }
    }

    /// Sets the state as a poller would (the only way out of `Creating` without one).
    async fn set_state(&self, uuid: &str, state: State, last_processing_result: &str) {
        let version = self.stored(uuid).await.version;
        let status = Status {
            state,
            reason: "USER_INITIATED".to_owned(),
            last_processing_result: last_processing_result.to_owned(),
        };
        self.store.set_status(uuid, Some(version), &status).await.expect("set status");
    }
}

/// The AWS CLI's JSON output: Python's `json.dumps(indent=4)` plus a newline.
fn aws_cli_text(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(value, &mut ser).expect("serialise");
    String::from_utf8(out).expect("utf-8") + "\n"
}

fn uuid_of(mapping: &Value) -> String {
    mapping["UUID"].as_str().expect("UUID").to_owned()
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// A self-managed mapping's flags, with the AWS shorthand for the event source.
const SELF_MANAGED: [&str; 8] = [
    "--function-name",
    "fn",
    "--topics",
    "orders",
    "--starting-position",
    "TRIM_HORIZON",
    "--self-managed-event-source",
    "Endpoints={KAFKA_BOOTSTRAP_SERVERS=[b-1.example:9092]}",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

/// `args` with topic `orders` replaced: one topic maps to one function once per cluster, so a test
/// that creates several mappings gives each its own topic.
fn on_topic<'a>(args: &[&'a str], topic: &'a str) -> Vec<&'a str> {
    args.iter().map(|&a| if a == "orders" { topic } else { a }).collect()
}

// ---------------------------------------------------------------------------------------------
// Golden files

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Replaces the generated values (the mapping's UUID wherever it appears, `LastModified`) with
/// the seed's, after checking their types, so the rest compares byte for byte.
fn normalise(value: &Value, uuid: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(uuid, GOLDEN_UUID)),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalise(v, uuid)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = if k == "LastModified" {
                        assert!(v.is_f64(), "LastModified must be a float (epoch seconds), got {v}");
                        json!(GOLDEN_LAST_MODIFIED)
                    } else {
                        normalise(v, uuid)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Compares the normalised output with `tests/golden/<name>` byte for byte: keys, order, types,
/// indentation.
fn assert_golden(name: &str, output: &Value, uuid: &str) {
    let actual = aws_cli_text(&normalise(output, uuid));
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// The shape every mapping output shares, whatever the command.
fn assert_mapping_shape(m: &Value) {
    let uuid = uuid_of(m);
    assert!(uuid::Uuid::parse_str(&uuid).is_ok(), "UUID {uuid}");
    assert_eq!(keys(m)[0], "UUID", "UUID comes first");
    assert!(m["BatchSize"].is_u64(), "BatchSize is a number: {m}");
    assert!(m["LastModified"].is_f64(), "LastModified is a float: {m}");
    let last_modified = m["LastModified"].as_f64().unwrap_or_default();
    assert!(last_modified > 1.7e9 && last_modified < 1e10, "LastModified is epoch seconds: {last_modified}");
    assert!(m["Topics"].as_array().is_some_and(|t| t.len() == 1 && t[0].is_string()), "Topics is a list: {m}");
    assert!(m["FunctionArn"].as_str().is_some_and(|a| a.starts_with(STUB_ACCOUNT_ARN)), "FunctionArn: {m}");
    assert_eq!(
        m["EventSourceMappingArn"],
        json!(format!("{STUB_ACCOUNT_ARN}:event-source-mapping:{uuid}")),
        "EventSourceMappingArn"
    );
    assert_eq!(m["StateTransitionReason"], "USER_INITIATED");
    assert!(m.get("Version").is_none(), "Version never leaks");
    // Keys in the order the AWS CLI prints them (see AWS_ORDER).
    let positions: Vec<usize> = keys(m)
        .iter()
        .map(|k| AWS_ORDER.iter().position(|a| a == k).unwrap_or_else(|| panic!("{k} is not an AWS field")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "keys out of the AWS CLI's order: {:?}", keys(m));
}

/// `EventSourceMappingConfiguration`'s members in the order of the Lambda service model
/// (botocore `data/lambda/2015-03-31/service-2.json`); botocore's JSON parser builds the parsed
/// response by walking the shape's members, so this is the order the AWS CLI prints.
const AWS_ORDER: [&str; 33] = [
    "UUID",
    "StartingPosition",
    "StartingPositionTimestamp",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "EventSourceArn",
    "FilterCriteria",
    "FilterCriteriaError",
    "KMSKeyArn",
    "MetricsConfig",
    "LoggingConfig",
    "ScalingConfig",
    "FunctionArn",
    "LastModified",
    "LastProcessingResult",
    "State",
    "StateTransitionReason",
    "DestinationConfig",
    "Topics",
    "Queues",
    "SourceAccessConfigurations",
    "SelfManagedEventSource",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "TumblingWindowInSeconds",
    "FunctionResponseTypes",
    "AmazonManagedKafkaEventSourceConfig",
    "SelfManagedKafkaEventSourceConfig",
    "DocumentDBEventSourceConfig",
    "EventSourceMappingArn",
    "ProvisionedPollerConfig",
];

/// The keys of the seed's `aws lambda create-event-source-mapping` example output
/// (seed-using-lambda-with-msk.md), in the order the AWS CLI prints them. (The seed lists `State`
/// before `LastProcessingResult`; that example was edited by hand: the CLI prints model order.)
const SEED_MSK_KEYS: [&str; 9] = [
    "UUID",
    "BatchSize",
    "EventSourceArn",
    "FunctionArn",
    "LastModified",
    "LastProcessingResult",
    "State",
    "StateTransitionReason",
    "Topics",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msk_mapping_through_every_command_matches_the_aws_cli_shapes() {
    let esm = Esm::new().await;
    // The seed's own command line.
    let created = esm
        .create(&[
            "--event-source-arn",
            MSK_ARN,
            "--topics",
            "AWSKafkaTopic",
            "--starting-position",
            "LATEST",
            "--function-name",
            "my-kafka-function",
        ])
        .await;
    let uuid = uuid_of(&created);
    assert_mapping_shape(&created);
    let ours: Vec<&str> = keys(&created).into_iter().filter(|k| SEED_MSK_KEYS.contains(k)).collect();
    assert_eq!(ours, SEED_MSK_KEYS, "every key of the seed's example, in the AWS CLI's order");
    assert_eq!(created["State"], "Creating");
    assert_eq!(created["BatchSize"], 100);
    assert_eq!(created["AmazonManagedKafkaEventSourceConfig"], json!({"ConsumerGroupId": uuid}));
    assert!(created.get("SelfManagedKafkaEventSourceConfig").is_none());
    assert_golden("create-msk.json", &created, &uuid);

    // Get returns what create returned.
    assert_eq!(esm.get(&uuid).await, created);
    // A poller took it up (as in the seed's get example).
    esm.set_state(&uuid, State::Enabled, "OK").await;
    let got = esm.get(&uuid).await;
    assert_mapping_shape(&got);
    assert_golden("get-msk.json", &got, &uuid);

    let listed = esm.ok(&["list-event-source-mappings", "--event-source-arn", MSK_ARN]).await;
    assert_eq!(keys(&listed), ["EventSourceMappings"]);
    assert_eq!(listed["EventSourceMappings"], json!([got]), "list items are exactly what get prints");
    assert_golden("list-msk.json", &listed, &uuid);

    let updated = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "200"]).await;
    assert_mapping_shape(&updated);
    assert_eq!((updated["State"].as_str(), updated["BatchSize"].as_u64()), (Some("Updating"), Some(200)));
    assert!(updated["LastModified"].as_f64() >= got["LastModified"].as_f64());
    assert_golden("update-msk.json", &updated, &uuid);
    assert_eq!(esm.get(&uuid).await, updated);

    esm.set_state(&uuid, State::Enabled, "OK").await;
    let deleted = esm.ok(&["delete-event-source-mapping", "--uuid", &uuid]).await;
    assert_mapping_shape(&deleted);
    assert_eq!(deleted["State"], "Deleting");
    assert_golden("delete-msk.json", &deleted, &uuid);
    // Still there until a poller removes it.
    assert_eq!(esm.get(&uuid).await, deleted);
    assert_eq!(esm.stored(&uuid).await.state, State::Deleting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_mapping_with_every_flag_is_stored_and_echoed() {
    let esm = Esm::new().await;
    let filter = r#"{"Filters":[{"Pattern":"{\"value\":{\"kind\":[\"order\"]}}"}]}"#;
    let created = esm
        .create(&[
            "--function-name",
            "fn-full",
            "--topics",
            "orders",
            "--starting-position",
            "AT_TIMESTAMP",
            "--starting-position-timestamp",
            "1700000000",
            "--self-managed-event-source",
            r#"{"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":["b-1.example:9092","b-2.example:9092"]}}"#,
            "--batch-size",
            "500",
            "--maximum-batching-window-in-seconds",
            "5",
            "--no-enabled",
            "--filter-criteria",
            filter,
            "--destination-config",
            "OnFailure={Destination=arn:aws:sqs:us-east-1:123456789012:orders-dlq}",
            "--maximum-retry-attempts",
            "-1",
            "--maximum-record-age-in-seconds",
            "3600",
            "--bisect-batch-on-function-error",
            "--function-response-types",
            "ReportBatchItemFailures",
            "--provisioned-poller-config",
            "MinimumPollers=1,MaximumPollers=3",
            "--metrics-config",
            "Metrics=EventCount",
            "--source-access-configurations",
            "Type=CLIENT_CERTIFICATE_TLS_AUTH,URI=arn:aws:secretsmanager:us-east-1:123456789012:secret:client",
            "Type=SERVER_ROOT_CA_CERTIFICATE,URI=arn:aws:secretsmanager:us-east-1:123456789012:secret:ca",
            "--self-managed-kafka-event-source-config",
            "ConsumerGroupId=orders-readers",
        ])
        .await;
    let uuid = uuid_of(&created);
    assert_mapping_shape(&created);
    assert_eq!(created["State"], "Disabled");
    assert_eq!(created["StartingPositionTimestamp"], json!(1_700_000_000.0));
    assert_eq!(created["FilterCriteria"], serde_json::from_str::<Value>(filter).unwrap_or_default());
    assert_eq!(created["MetricsConfig"], json!({"Metrics": ["EventCount"]}));
    assert_eq!(created["ProvisionedPollerConfig"], json!({"MinimumPollers": 1, "MaximumPollers": 3}));
    assert_eq!(created["SelfManagedKafkaEventSourceConfig"], json!({"ConsumerGroupId": "orders-readers"}));
    assert!(created.get("AmazonManagedKafkaEventSourceConfig").is_none());
    assert!(created.get("EventSourceArn").is_none());
    assert_golden("create-self-managed.json", &created, &uuid);
    // Everything survives the round trip through DynamoDB.
    assert_eq!(esm.get(&uuid).await, created);

    // Update changes the stored-not-enforced settings too; the JSON list form of
    // --source-access-configurations works as well as the shorthand.
    let updated = esm
        .ok(&[
            "update-event-source-mapping",
            "--uuid",
            &uuid,
            "--maximum-retry-attempts",
            "10",
            "--maximum-record-age-in-seconds",
            "-1",
            "--no-bisect-batch-on-function-error",
            "--destination-config",
            r#"{"OnFailure":{"Destination":"kafka://orders-failed"}}"#,
            "--metrics-config",
            r#"{"Metrics":["EventCount","ErrorCount","KafkaMetrics"]}"#,
            "--provisioned-poller-config",
            r#"{"MinimumPollers":2,"MaximumPollers":2000}"#,
            "--source-access-configurations",
            r#"[{"Type":"BASIC_AUTH","URI":"arn:aws:secretsmanager:us-east-1:123456789012:secret:plain"}]"#,
            "--parallelization-factor",
            "4",
            "--scaling-config",
            "MaximumConcurrency=20",
        ])
        .await;
    assert_mapping_shape(&updated);
    assert_eq!(updated["ParallelizationFactor"], 4);
    assert_eq!(updated["ScalingConfig"], json!({"MaximumConcurrency": 20}));
    assert_eq!(updated["State"], "Disabled", "updating a disabled mapping leaves it disabled");
    assert_eq!(updated["MaximumRetryAttempts"], 10);
    assert_eq!(updated["MaximumRecordAgeInSeconds"], -1);
    assert_eq!(updated["BisectBatchOnFunctionError"], false);
    assert_eq!(updated["DestinationConfig"], json!({"OnFailure": {"Destination": "kafka://orders-failed"}}));
    assert_eq!(updated["MetricsConfig"], json!({"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]}));
    assert_eq!(updated["ProvisionedPollerConfig"], json!({"MinimumPollers": 2, "MaximumPollers": 2000}));
    assert_eq!(
        updated["SourceAccessConfigurations"],
        json!([{"Type": "BASIC_AUTH", "URI": "arn:aws:secretsmanager:us-east-1:123456789012:secret:plain"}])
    );
    // Untouched settings stay.
    for key in ["FilterCriteria", "FunctionResponseTypes", "SelfManagedEventSource", "BatchSize", "Topics"] {
        assert_eq!(updated[key], created[key], "{key}");
    }
    assert_eq!(esm.get(&uuid).await, updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_source_access_types_use_the_aws_spelling() {
    let esm = Esm::new().await;
    for kind in ["SASL_SCRAM_512_AUTH", "SASL_SCRAM_256_AUTH"] {
        let config = format!("Type={kind},URI=arn:aws:secretsmanager:us-east-1:123456789012:secret:scram");
        let m = esm.create(&with(&on_topic(&SELF_MANAGED, kind), &["--source-access-configurations", &config])).await;
        assert_eq!(m["SourceAccessConfigurations"][0]["Type"], kind);
        assert_eq!(esm.get(&uuid_of(&m)).await, m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_function_and_source_and_pages_with_next_token() {
    let esm = Esm::new().await;
    let a1 = esm.create(&SELF_MANAGED.map(|a| if a == "fn" { "fn-a" } else { a })).await;
    let a2 = esm
        .create(&[
            "--function-name",
            "fn-a",
            "--topics",
            "payments",
            "--starting-position",
            "LATEST",
            "--self-managed-event-source",
            "Endpoints={KAFKA_BOOTSTRAP_SERVERS=[b-1.example:9092,b-2.example:9092]}",
        ])
        .await;
    let b = esm
        .create(&[
            "--function-name",
            "fn-b",
            "--event-source-arn",
            MSK_ARN,
            "--topics",
            "orders",
            "--starting-position",
            "LATEST",
        ])
        .await;
    assert_eq!(
        a2["SelfManagedEventSource"],
        json!({"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.example:9092", "b-2.example:9092"]}})
    );
    assert_eq!(a1["SelfManagedKafkaEventSourceConfig"], json!({"ConsumerGroupId": uuid_of(&a1)}));
    let uuids = |page: &Value| -> BTreeSet<String> {
        page["EventSourceMappings"].as_array().expect("list").iter().map(uuid_of).collect()
    };
    let set = |ms: &[&Value]| -> BTreeSet<String> { ms.iter().map(|m| uuid_of(m)).collect() };

    let all = esm.ok(&["list-event-source-mappings"]).await;
    assert_eq!(keys(&all), ["EventSourceMappings"], "no NextToken when everything fits");
    assert_eq!(uuids(&all), set(&[&a1, &a2, &b]));
    for m in all["EventSourceMappings"].as_array().expect("list") {
        assert_mapping_shape(m);
        assert_eq!(*m, esm.get(&uuid_of(m)).await);
    }

    let by_name = esm.ok(&["list-event-source-mappings", "--function-name", "fn-a"]).await;
    assert_eq!(uuids(&by_name), set(&[&a1, &a2]));
    let arn = format!("{STUB_ACCOUNT_ARN}:function:fn-a");
    let by_arn = esm.ok(&["list-event-source-mappings", "--function-name", &arn]).await;
    assert_eq!(uuids(&by_arn), set(&[&a1, &a2]));
    let by_source = esm.ok(&["list-event-source-mappings", "--event-source-arn", MSK_ARN]).await;
    assert_eq!(uuids(&by_source), set(&[&b]));
    let both = esm.ok(&["list-event-source-mappings", "--event-source-arn", MSK_ARN, "--function-name", "fn-a"]).await;
    assert_eq!(both, json!({"EventSourceMappings": []}));
    let none = esm.ok(&["list-event-source-mappings", "--function-name", "nobody"]).await;
    assert_eq!(none, json!({"EventSourceMappings": []}));

    // Paging: --max-items 2 then --starting-token NextToken, as the AWS CLI pages.
    let first = esm.ok(&["list-event-source-mappings", "--max-items", "2"]).await;
    assert_eq!(keys(&first), ["EventSourceMappings", "NextToken"]);
    assert_eq!(first["EventSourceMappings"].as_array().map(Vec::len), Some(2));
    let token = first["NextToken"].as_str().expect("NextToken");
    let second = esm.ok(&["list-event-source-mappings", "--max-items", "2", "--starting-token", token]).await;
    assert_eq!(keys(&second), ["EventSourceMappings"], "the last page has no NextToken");
    assert_eq!(second["EventSourceMappings"].as_array().map(Vec::len), Some(1));
    let mut paged = uuids(&first);
    paged.extend(uuids(&second));
    assert_eq!(paged, uuids(&all), "the pages together are the whole list, once each");
    let one_page = esm.ok(&["list-event-source-mappings", "--max-items", "1", "--function-name", "fn-b"]).await;
    assert_eq!(keys(&one_page), ["EventSourceMappings"], "exactly max-items left: no NextToken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_moves_states_and_re_resolves_the_function() {
    let esm = Esm::new().await;
    let created = esm.create(&with(&SELF_MANAGED, &["--no-enabled"])).await;
    let uuid = uuid_of(&created);
    assert_eq!(created["State"], "Disabled");

    let updated = esm
        .ok(&[
            "update-event-source-mapping",
            "--uuid",
            &uuid,
            "--batch-size",
            "42",
            "--maximum-batching-window-in-seconds",
            "7",
        ])
        .await;
    assert_eq!(
        (updated["BatchSize"].as_u64(), updated["MaximumBatchingWindowInSeconds"].as_u64()),
        (Some(42), Some(7))
    );
    assert_eq!(updated["State"], "Disabled");

    let moved = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--function-name", "other-fn"]).await;
    assert_eq!(moved["FunctionArn"], json!(format!("{STUB_ACCOUNT_ARN}:function:other-fn")));
    let aliased = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--function-name", "other-fn:live"]).await;
    assert_eq!(aliased["FunctionArn"], json!(format!("{STUB_ACCOUNT_ARN}:function:other-fn:live")));

    let enabling = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--enabled"]).await;
    assert_eq!(enabling["State"], "Enabling");
    // A change while it is Enabling (no poller has settled it yet) applies and stays Enabling.
    let changed = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "42"]).await;
    assert_eq!(changed["State"], "Enabling");

    esm.set_state(&uuid, State::Enabled, "OK").await;
    let disabling = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--no-enabled"]).await;
    assert_eq!(disabling["State"], "Disabling");
    esm.set_state(&uuid, State::Disabled, "OK").await;
    assert_eq!(esm.get(&uuid).await["State"], "Disabled");
    let stored = esm.stored(&uuid).await;
    assert_eq!((stored.batch_size, stored.maximum_batching_window_in_seconds), (Some(42), Some(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_rules_and_missing_things_give_the_aws_errors() {
    let esm = Esm::new().await;
    esm.stub.set_known_functions(&["fn", "fn-b"]);
    let msg = esm
        .fails(
            &with(&["create-event-source-mapping"], &SELF_MANAGED.map(|a| if a == "fn" { "nope" } else { a })),
            "ResourceNotFoundException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(msg.contains("nope"), "{msg}");

    // A Creating mapping no poller has picked up can be fixed, and deleted at once (AWS refuses
    // both until its poller settled it; here a poller may never have run).
    let creating = esm.create(&SELF_MANAGED).await;
    let uuid = uuid_of(&creating);
    assert_eq!(creating["State"], "Creating");
    let fixed = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "5"]).await;
    assert_eq!((fixed["State"].as_str(), fixed["BatchSize"].as_u64()), (Some("Creating"), Some(5)));
    let deleted = esm.ok(&["delete-event-source-mapping", "--uuid", &uuid]).await;
    assert_eq!(deleted["State"], "Deleting");
    esm.fails(&["get-event-source-mapping", "--uuid", &uuid], "ResourceNotFoundException", "GetEventSourceMapping")
        .await;
    // An Updating mapping can be deleted; a Deleting one cannot be changed or deleted again.
    let uuid = uuid_of(&esm.create(&on_topic(&SELF_MANAGED, "orders-updating")).await);
    esm.set_state(&uuid, State::Enabled, "OK").await;
    let updating = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "5"]).await;
    assert_eq!(updating["State"], "Updating");
    let deleting = esm.ok(&["delete-event-source-mapping", "--uuid", &uuid]).await;
    assert_eq!(deleting["State"], "Deleting");
    for (args, op) in [
        (vec!["delete-event-source-mapping", "--uuid", &uuid], "DeleteEventSourceMapping"),
        (vec!["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "6"], "UpdateEventSourceMapping"),
    ] {
        let msg = esm.fails(&args, "ResourceConflictException", op).await;
        assert!(msg.contains("Deleting"), "{msg}");
    }
    assert_eq!(esm.get(&uuid).await, deleting, "a refused command changes nothing");
    // A Deleting mapping still holds its topic and function.
    let msg = esm
        .fails(
            &with(&["create-event-source-mapping"], &on_topic(&SELF_MANAGED, "orders-updating")),
            "ResourceConflictException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(msg.contains(&uuid), "{msg}");
    let uuid = uuid_of(&esm.create(&SELF_MANAGED).await);

    // The function must exist on update too.
    esm.set_state(&uuid, State::Enabled, "OK").await;
    esm.fails(
        &["update-event-source-mapping", "--uuid", &uuid, "--function-name", "gone"],
        "ResourceNotFoundException",
        "UpdateEventSourceMapping",
    )
    .await;

    // ConsumerGroupId is create-only.
    let msg = esm
        .fails(
            &[
                "update-event-source-mapping",
                "--uuid",
                &uuid,
                "--self-managed-kafka-event-source-config",
                "ConsumerGroupId=other",
            ],
            "InvalidParameterValueException",
            "UpdateEventSourceMapping",
        )
        .await;
    assert!(msg.contains("SelfManagedKafkaEventSourceConfig.ConsumerGroupId"), "{msg}");
    // Giving the same one again is not a change.
    esm.ok(&[
        "update-event-source-mapping",
        "--uuid",
        &uuid,
        "--self-managed-kafka-event-source-config",
        &format!("ConsumerGroupId={uuid}"),
    ])
    .await;

    // One consumer group per cluster.
    let group = ["--self-managed-kafka-event-source-config", "ConsumerGroupId=shared-group"];
    esm.create(&with(&on_topic(&SELF_MANAGED, "orders-grouped"), &group)).await;
    let msg = esm
        .fails(
            &with(&with(&["create-event-source-mapping"], &on_topic(&SELF_MANAGED, "orders-other")), &group),
            "ResourceConflictException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(msg.contains("shared-group"), "{msg}");
    let msk_group = ["--amazon-managed-kafka-event-source-config", "ConsumerGroupId=shared-group"];
    let msk = [
        "--function-name",
        "fn-b",
        "--event-source-arn",
        MSK_ARN,
        "--topics",
        "orders",
        "--starting-position",
        "LATEST",
    ];
    esm.create(&with(&msk, &msk_group)).await; // another cluster: fine
    esm.fails(
        &with(&with(&["create-event-source-mapping"], &msk), &msk_group),
        "ResourceConflictException",
        "CreateEventSourceMapping",
    )
    .await;

    // Unknown UUIDs.
    let unknown = uuid::Uuid::new_v4().to_string();
    for (args, op) in [
        (vec!["get-event-source-mapping", "--uuid", &unknown], "GetEventSourceMapping"),
        (vec!["update-event-source-mapping", "--uuid", &unknown, "--batch-size", "5"], "UpdateEventSourceMapping"),
        (vec!["delete-event-source-mapping", "--uuid", &unknown], "DeleteEventSourceMapping"),
    ] {
        let msg = esm.fails(&args, "ResourceNotFoundException", op).await;
        assert!(msg.contains("does not exist"), "{msg}");
    }
}

/// Every create-time rule: `(extra flags or replacement args, a field the message must name)`.
fn invalid_creates() -> Vec<(Vec<String>, &'static str)> {
    let sm = |extra: &[&str]| -> Vec<String> { with(&SELF_MANAGED, extra).iter().map(|s| (*s).to_owned()).collect() };
    let replace = |flag: &str, value: &str| -> Vec<String> {
        let mut args: Vec<String> = SELF_MANAGED.iter().map(|s| (*s).to_owned()).collect();
        let i = args.iter().position(|a| a == flag).expect("flag") + 1;
        args[i] = value.to_owned();
        args
    };
    let servers = |n: usize| -> String {
        let list: Vec<String> = (0..n).map(|i| format!("\"b-{i}.example:9092\"")).collect();
        format!(r#"{{"Endpoints":{{"KAFKA_BOOTSTRAP_SERVERS":[{}]}}}}"#, list.join(","))
    };
    let future = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default();
    let no_source: Vec<String> = SELF_MANAGED[..6].iter().map(|s| (*s).to_owned()).collect();
    let msk = |arn: &str| -> Vec<String> {
        let mut args = no_source.clone();
        args.extend(["--event-source-arn".to_owned(), arn.to_owned()]);
        args
    };
    let long_group = format!("ConsumerGroupId={}", "g".repeat(201));
    vec![
        (sm(&["--batch-size", "0"]), "BatchSize"),
        (sm(&["--batch-size", "10001"]), "BatchSize"),
        (sm(&["--maximum-batching-window-in-seconds", "301"]), "MaximumBatchingWindowInSeconds"),
        (sm(&["--parallelization-factor", "0"]), "ParallelizationFactor"),
        (sm(&["--parallelization-factor", "11"]), "ParallelizationFactor"),
        (sm(&["--scaling-config", "MaximumConcurrency=1"]), "MaximumConcurrency"),
        (sm(&["--scaling-config", "MaximumConcurrency=1001"]), "MaximumConcurrency"),
        (sm(&["--scaling-config", "{}"]), "MaximumConcurrency"),
        (sm(&["--topics", "orders", "payments"]), "Topics"),
        (replace("--topics", "bad topic!"), "Topics"),
        (replace("--starting-position", "AT_TIMESTAMP"), "StartingPositionTimestamp"),
        (
            [replace("--starting-position", "AT_TIMESTAMP"), vec!["--starting-position-timestamp".into(), future]]
                .concat(),
            "StartingPositionTimestamp",
        ),
        (sm(&["--starting-position-timestamp", "1700000000"]), "StartingPositionTimestamp"),
        (replace("--starting-position", "EARLIEST"), "StartingPosition"),
        (sm(&["--event-source-arn", MSK_ARN]), "SelfManagedEventSource"),
        (no_source.clone(), "EventSourceArn"),
        (msk("arn:aws:kafka:us-east-1:111111111111:cluster/no-id"), "EventSourceArn"),
        (msk("arn:aws:sqs:us-east-1:111111111111:queue"), "EventSourceArn"),
        (replace("--self-managed-event-source", &servers(0)), "KAFKA_BOOTSTRAP_SERVERS"),
        (replace("--self-managed-event-source", &servers(11)), "KAFKA_BOOTSTRAP_SERVERS"),
        (
            replace("--self-managed-event-source", "Endpoints={KAFKA_BOOTSTRAP_SERVERS=[no-port]}"),
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            replace("--self-managed-event-source", "Endpoints={KAFKA_BOOTSTRAP_SERVERS=[h:99999]}"),
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        (sm(&["--self-managed-kafka-event-source-config", "ConsumerGroupId=bad!group"]), "ConsumerGroupId"),
        (sm(&["--self-managed-kafka-event-source-config", &long_group]), "ConsumerGroupId"),
        (
            sm(&["--amazon-managed-kafka-event-source-config", "ConsumerGroupId=g"]),
            "AmazonManagedKafkaEventSourceConfig",
        ),
        (replace("--self-managed-event-source", r#"{"Endpoints":"#), "self-managed-event-source"),
        (sm(&["--filter-criteria", r#"{"Filters":[{"Pattern":"#]), "filter-criteria"),
        (sm(&["--source-access-configurations", "Type=KERBEROS,URI=x"]), "source-access-configurations"),
        // Stored, not yet enforced: still held to AWS's ranges and formats.
        (sm(&["--maximum-retry-attempts", "10001"]), "MaximumRetryAttempts"),
        (sm(&["--maximum-retry-attempts", "-2"]), "MaximumRetryAttempts"),
        (sm(&["--maximum-record-age-in-seconds", "59"]), "MaximumRecordAgeInSeconds"),
        (sm(&["--maximum-record-age-in-seconds", "604801"]), "MaximumRecordAgeInSeconds"),
        (sm(&["--maximum-record-age-in-seconds", "0"]), "MaximumRecordAgeInSeconds"),
        (sm(&["--provisioned-poller-config", "MinimumPollers=0"]), "MinimumPollers"),
        (sm(&["--provisioned-poller-config", "MinimumPollers=201,MaximumPollers=300"]), "MinimumPollers"),
        (sm(&["--provisioned-poller-config", "MaximumPollers=2001"]), "MaximumPollers"),
        (sm(&["--provisioned-poller-config", "MinimumPollers=5,MaximumPollers=3"]), "ProvisionedPollerConfig"),
        (sm(&["--metrics-config", "Metrics=Latency"]), "MetricsConfig"),
        (sm(&["--metrics-config", r#"{"Metrics":["EventCount","EventCount"]}"#]), "MetricsConfig"),
        (sm(&["--function-response-types", "ReportEverything"]), "FunctionResponseTypes"),
        (sm(&["--destination-config", "OnFailure={Destination=not-an-arn}"]), "DestinationConfig"),
        (
            sm(&["--destination-config", "OnFailure={Destination=arn:aws:lambda:us-east-1:123456789012:function:f}"]),
            "DestinationConfig",
        ),
        (sm(&["--destination-config", "OnFailure={Destination=kafka://bad topic}"]), "DestinationConfig"),
        (
            sm(&["--destination-config", "OnSuccess={Destination=arn:aws:sqs:us-east-1:123456789012:q}"]),
            "DestinationConfig",
        ),
        (sm(&["--filter-criteria", r#"{"Filters":[{"Pattern":"not json"}]}"#]), "FilterCriteria"),
        (
            sm(&["--filter-criteria", &format!(r#"{{"Filters":[{}]}}"#, [r#"{"Pattern":"{}"}"#; 6].join(","))]),
            "FilterCriteria",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_create_is_refused_naming_the_field() {
    let esm = Esm::new().await;
    let cases = invalid_creates();
    let count = cases.len();
    let results: Vec<_> = futures::stream::iter(cases)
        .map(|(args, field)| {
            let esm = &esm;
            async move {
                let mut all = vec!["create-event-source-mapping"];
                all.extend(args.iter().map(String::as_str));
                let msg = esm.fails(&all, "InvalidParameterValueException", "CreateEventSourceMapping").await;
                (args, field, msg)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert_eq!(results.len(), count);
    for (args, field, msg) in results {
        assert!(msg.contains(field), "create {args:?}: message should name {field}: {msg}");
    }
    // Nothing invalid was stored.
    assert_eq!(esm.ok(&["list-event-source-mappings"]).await, json!({"EventSourceMappings": []}));

    // A timestamp in the past is fine with AT_TIMESTAMP, in either form.
    for (ts, topic) in [("1700000000", "orders-seconds"), ("2023-11-14T22:13:20Z", "orders-iso")] {
        let mut args: Vec<&str> = on_topic(&SELF_MANAGED, topic);
        args.iter_mut().filter(|a| **a == "TRIM_HORIZON").for_each(|a| *a = "AT_TIMESTAMP");
        args.extend(["--starting-position-timestamp", ts]);
        let m = esm.create(&args).await;
        assert_eq!(m["StartingPositionTimestamp"], json!(1_700_000_000.0));
    }
    // Edges that are valid.
    let m = esm
        .create(&with(
            &on_topic(&SELF_MANAGED, "orders-edges"),
            &[
                "--batch-size",
                "10000",
                "--maximum-batching-window-in-seconds",
                "300",
                "--maximum-retry-attempts",
                "10000",
                "--maximum-record-age-in-seconds",
                "604800",
                "--provisioned-poller-config",
                "MinimumPollers=200,MaximumPollers=200",
                "--destination-config",
                "OnFailure={Destination=arn:aws:s3:::failed-batches}",
            ],
        ))
        .await;
    assert_eq!((m["BatchSize"].as_u64(), m["MaximumRecordAgeInSeconds"].as_i64()), (Some(10_000), Some(604_800)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_refused_and_change_nothing() {
    let esm = Esm::new().await;
    let m = esm.create(&with(&SELF_MANAGED, &["--no-enabled"])).await;
    let uuid = uuid_of(&m);
    for (flags, field) in [
        (["--batch-size", "0"], "BatchSize"),
        (["--maximum-batching-window-in-seconds", "301"], "MaximumBatchingWindowInSeconds"),
        (["--parallelization-factor", "11"], "ParallelizationFactor"),
        (["--scaling-config", "MaximumConcurrency=0"], "MaximumConcurrency"),
        (["--maximum-retry-attempts", "10001"], "MaximumRetryAttempts"),
        (["--maximum-record-age-in-seconds", "30"], "MaximumRecordAgeInSeconds"),
        (["--provisioned-poller-config", "MaximumPollers=0"], "MaximumPollers"),
        (["--function-response-types", "Nope"], "FunctionResponseTypes"),
        (["--metrics-config", "Metrics=Nope"], "MetricsConfig"),
        (["--destination-config", "OnFailure={Destination=sqs}"], "DestinationConfig"),
        (["--amazon-managed-kafka-event-source-config", "ConsumerGroupId=x"], "AmazonManagedKafkaEventSourceConfig"),
    ] {
        let args = with(&["update-event-source-mapping", "--uuid", &uuid], &flags);
        let msg = esm.fails(&args, "InvalidParameterValueException", "UpdateEventSourceMapping").await;
        assert!(msg.contains(field), "{args:?}: {msg}");
    }
    assert_eq!(esm.get(&uuid).await, m);
    assert_eq!(esm.stored(&uuid).await.version, 1, "no write happened");
}

// ---------------------------------------------------------------------------------------------
// docs/mappings.md

/// The JSON of the `aws dynamodb put-item` example, and the table it names.
fn documented_item() -> (String, Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/mappings.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/mappings.md");
    let start = doc.find("aws dynamodb put-item").expect("the put-item example");
    let command = &doc[start..];
    let table =
        command.split_whitespace().skip_while(|w| *w != "--table-name").nth(1).expect("--table-name").to_owned();
    let json_start = command.find("--item '").expect("--item '") + "--item '".len();
    let json_len = command[json_start..].find('\'').expect("closing quote");
    let item = serde_json::from_str(&command[json_start..json_start + json_len]).expect("the documented item is JSON");
    (table, item)
}

/// DynamoDB JSON (`{"S": …}`, `{"N": …}`, …) to an SDK attribute value, and to plain JSON.
fn attribute(value: &Value) -> (AttributeValue, Value) {
    let (kind, inner) = value.as_object().and_then(|o| o.iter().next()).expect("one type key");
    match kind.as_str() {
        "S" => (AttributeValue::S(inner.as_str().expect("S").to_owned()), inner.clone()),
        "N" => {
            let n = inner.as_str().expect("N");
            (AttributeValue::N(n.to_owned()), json!(n.parse::<f64>().expect("number")))
        }
        "BOOL" => (AttributeValue::Bool(inner.as_bool().expect("BOOL")), inner.clone()),
        "NULL" => (AttributeValue::Null(true), Value::Null),
        "L" => {
            let (attrs, plain): (Vec<_>, Vec<_>) = inner.as_array().expect("L").iter().map(attribute).unzip();
            (AttributeValue::L(attrs), Value::Array(plain))
        }
        "M" => {
            let (attrs, plain) = item(inner);
            (AttributeValue::M(attrs), plain)
        }
        other => panic!("unexpected DynamoDB type {other}"),
    }
}

fn item(value: &Value) -> (HashMap<String, AttributeValue>, Value) {
    let mut attrs = HashMap::new();
    let mut plain = serde_json::Map::new();
    for (k, v) in value.as_object().expect("M") {
        let (a, p) = attribute(v);
        attrs.insert(k.clone(), a);
        plain.insert(k.clone(), p);
    }
    (attrs, Value::Object(plain))
}

/// Numbers compared by value (the item says `100`, esm prints `100`; `LastModified` is a float).
fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_put_item_example_is_a_valid_mapping() {
    let esm = Esm::new().await;
    let (table, documented) = documented_item();
    assert_eq!(table, Tables::default().mappings, "the example writes to the default table");
    let (attrs, plain) = item(&documented);
    esm.dynamo
        .put_item()
        .table_name(&esm.tables.mappings)
        .set_item(Some(attrs))
        .send()
        .await
        .expect("put the documented item");
    let uuid = plain["UUID"].as_str().expect("UUID").to_owned();

    let printed = esm.get(&uuid).await;
    let mut expected = plain.clone();
    expected.as_object_mut().expect("object").remove("Version");
    assert_eq!(numbers_as_f64(&printed), numbers_as_f64(&expected), "esm prints the documented item minus Version");
    assert!(printed["LastModified"].is_f64());
    // It is a valid mapping (a poller would take it up), and esm manages it like its own.
    let stored = esm.stored(&uuid).await;
    assert_eq!(stored.version, plain["Version"].as_f64().map(|v| v as u64).unwrap_or_default());
    assert_eq!(stored.state, State::Creating);
    let listed = esm.ok(&["list-event-source-mappings", "--function-name", "my-fn"]).await;
    assert_eq!(listed["EventSourceMappings"], json!([printed]));
    esm.set_state(&uuid, State::Enabled, "OK").await;
    let updated = esm.ok(&["update-event-source-mapping", "--uuid", &uuid, "--batch-size", "50"]).await;
    assert_eq!(updated["BatchSize"], 50);
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers

/// Runs `n` `esm update-event-source-mapping` processes at once, each with its own batch size;
/// returns the batch sizes that were written and checks every refusal is a conflict.
async fn race(esm: &Esm, uuid: &str, n: u32) -> Vec<u32> {
    let runs = futures::future::join_all((1..=n).map(|size| async move {
        let size_arg = size.to_string();
        (size, esm.run(&["update-event-source-mapping", "--uuid", uuid, "--batch-size", &size_arg]).await)
    }))
    .await;
    let mut written = Vec::new();
    for (size, run) in runs {
        if run.code == 0 {
            let out: Value = serde_json::from_str(&run.stdout).expect("update output");
            assert_eq!(out["BatchSize"], size);
            written.push(size);
        } else {
            assert_eq!(run.code, SERVICE_ERROR, "{run:?}");
            assert!(
                run.error_line().starts_with(
                    "An error occurred (ResourceConflictException) when calling the UpdateEventSourceMapping operation: "
                ),
                "a lost race is a ResourceConflictException: {run:?}"
            );
        }
    }
    written
}

/// The item minus what every update changes.
fn unchanging(m: &kafka_esm::model::mapping::EventSourceMapping) -> Value {
    let mut v = serde_json::to_value(m).expect("mapping as JSON");
    let obj = v.as_object_mut().expect("object");
    for k in ["BatchSize", "LastModified", "Version", "State", "StateTransitionReason", "LastProcessingResult"] {
        obj.remove(k);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_updates_never_lose_a_write_or_corrupt_the_item() {
    let esm = Esm::new().await;

    // A Disabled mapping stays Disabled on update, so every racer may win: each write either
    // happens on top of the one before it or is refused, never silently lost.
    let m = esm.create(&with(&SELF_MANAGED, &["--no-enabled"])).await;
    let uuid = uuid_of(&m);
    let before = esm.stored(&uuid).await;
    let written = race(&esm, &uuid, 20).await;
    assert!(!written.is_empty(), "at least one racer wins");
    let after = esm.stored(&uuid).await;
    assert_eq!(after.version, before.version + written.len() as u64, "Version counts exactly the successful writes");
    assert!(after.batch_size.is_some_and(|b| written.contains(&b)), "the stored batch size is one that was written");
    assert_eq!(after.state, State::Disabled);
    assert_eq!(unchanging(&after), unchanging(&before), "nothing else changed");

    // An Enabled mapping goes to Updating on the first write and stays there: the same rule.
    let m = esm.create(&on_topic(&SELF_MANAGED, "orders-enabled")).await;
    let uuid = uuid_of(&m);
    esm.set_state(&uuid, State::Enabled, "OK").await;
    let before = esm.stored(&uuid).await;
    let written = race(&esm, &uuid, 20).await;
    assert!(!written.is_empty(), "at least one racer wins");
    let after = esm.stored(&uuid).await;
    assert_eq!(after.version, before.version + written.len() as u64, "Version counts exactly the successful writes");
    assert!(after.batch_size.is_some_and(|b| written.contains(&b)));
    assert_eq!(after.state, State::Updating);
    assert_eq!(unchanging(&after), unchanging(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_is_not_a_valid_mapping_is_shown_with_its_problem_and_can_be_deleted() {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let esm = Esm::new().await;
    let good = uuid_of(&esm.create(&SELF_MANAGED).await);
    // A hand-written item without Version, BatchSize as a string.
    let bad = uuid::Uuid::new_v4().to_string();
    esm.dynamo
        .put_item()
        .table_name(&esm.tables.mappings)
        .item("UUID", A::S(bad.clone()))
        .item("FunctionArn", A::S("fn".into()))
        .item("BatchSize", A::S("7".into()))
        .item("Topics", A::L(vec![A::S("orders".into())]))
        .item("State", A::S("Enabled".into()))
        .send()
        .await
        .unwrap();
    let shown = esm.get(&bad).await;
    assert_eq!(shown["UUID"], json!(bad));
    assert_eq!(shown["State"], "Enabled");
    assert_eq!(shown["StateTransitionReason"], "ESM_CONFIG_NOT_VALID");
    let problem = shown["LastProcessingResult"].as_str().unwrap();
    assert!(problem.starts_with("PROBLEM: BatchSize: invalid type: string \"7\""), "{problem}");
    let listed = esm.ok(&["list-event-source-mappings"]).await;
    let uuids: Vec<&str> =
        listed["EventSourceMappings"].as_array().unwrap().iter().filter_map(|m| m["UUID"].as_str()).collect();
    assert!(uuids.contains(&bad.as_str()) && uuids.contains(&good.as_str()), "{listed}");
    // Updating it says what to do; deleting it removes it at once.
    let msg = esm
        .fails(
            &["update-event-source-mapping", "--uuid", &bad, "--batch-size", "7"],
            "InvalidParameterValueException",
            "UpdateEventSourceMapping",
        )
        .await;
    assert!(msg.contains("delete it") && msg.contains("BatchSize"), "{msg}");
    esm.ok(&["delete-event-source-mapping", "--uuid", &bad]).await;
    esm.fails(&["get-event-source-mapping", "--uuid", &bad], "ResourceNotFoundException", "GetEventSourceMapping")
        .await;
    // A Version-less valid item (the documented schema makes Version optional) can be updated.
    let plain = uuid::Uuid::new_v4().to_string();
    let mut item = esm
        .dynamo
        .get_item()
        .table_name(&esm.tables.mappings)
        .key("UUID", A::S(good.clone()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item.insert("UUID".into(), A::S(plain.clone()));
    item.remove("Version");
    item.insert("State".into(), A::S("Enabled".into()));
    item.remove("SelfManagedKafkaEventSourceConfig");
    esm.dynamo.put_item().table_name(&esm.tables.mappings).set_item(Some(item)).send().await.unwrap();
    let updated = esm.ok(&["update-event-source-mapping", "--uuid", &plain, "--batch-size", "9"]).await;
    assert_eq!((updated["BatchSize"].as_u64(), updated["State"].as_str()), (Some(9), Some("Updating")));
    esm.ok(&["delete-event-source-mapping", "--uuid", &plain]).await;
}

// ---------------------------------------------------------------------------------------------
// The AWS CLI's global options, output formats, input skeletons, pagination and tags

fn golden_text(name: &str) -> String {
    let path = golden_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Esm {
    /// Runs a command that must succeed and returns its stdout as is.
    async fn stdout(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "esm {args:?} failed: {run:?}");
        run.stdout
    }

    /// The seed's MSK mapping, enabled, stored under the golden files' UUID and `LastModified`
    /// (and nothing else in the table), so text and table output compare byte for byte.
    async fn golden_msk_mapping(&self) {
        let created = self
            .create(&[
                "--event-source-arn",
                MSK_ARN,
                "--topics",
                "AWSKafkaTopic",
                "--starting-position",
                "LATEST",
                "--function-name",
                "my-kafka-function",
            ])
            .await;
        let uuid = uuid_of(&created);
        self.set_state(&uuid, State::Enabled, "OK").await;
        let stored = self.stored(&uuid).await;
        let golden: kafka_esm::model::mapping::EventSourceMapping =
            serde_json::from_value(normalise(&serde_json::to_value(&stored).unwrap(), &uuid)).unwrap();
        self.store.create(&golden).await.expect("store the golden copy");
        self.store.delete(&uuid, stored.version).await.expect("remove the original");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_text_and_table_and_query_print_what_the_aws_cli_prints() {
    let esm = Esm::new().await;
    esm.golden_msk_mapping().await;
    let get = ["get-event-source-mapping", "--uuid", GOLDEN_UUID];
    let list = ["list-event-source-mappings"];
    // The golden .table/.text files are the AWS CLI's own rendering of the JSON golden files
    // (tests/golden/render-with-aws-cli.py).
    assert_eq!(esm.stdout(&get).await, golden_text("get-msk.json"));
    assert_eq!(esm.stdout(&with(&get, &["--output", "table"])).await, golden_text("get-msk.table"));
    assert_eq!(esm.stdout(&with(&get, &["--output", "text"])).await, golden_text("get-msk.text"));
    // Not a terminal: no colour unless asked for, as the AWS CLI's --color auto.
    assert_eq!(
        esm.stdout(&with(&get, &["--output", "table", "--color", "on"])).await,
        golden_text("get-msk.table-color")
    );
    assert_eq!(esm.stdout(&with(&get, &["--output", "table", "--color", "off"])).await, golden_text("get-msk.table"));
    assert_eq!(esm.stdout(&with(&list, &["--output", "table"])).await, golden_text("list-msk.table"));
    assert_eq!(esm.stdout(&with(&list, &["--output", "text"])).await, golden_text("list-msk.text"));
    // Global options go before the command too, and AWS_DEFAULT_OUTPUT sets the default.
    assert_eq!(esm.stdout(&["--output", "table", "list-event-source-mappings"]).await, golden_text("list-msk.table"));
    // --debug logs the calls on stderr (RUST_LOG=warn here) and leaves stdout as it is.
    let debug = esm.run(&with(&list, &["--debug"])).await;
    assert_eq!(debug.stdout, golden_text("list-msk.json"));
    assert!(debug.stderr.lines().any(|l| l.trim_start().starts_with("DEBUG")), "{}", debug.stderr);
    // esm never pages its output, so the AWS CLI v2's --no-cli-pager holds by construction.
    assert_eq!(esm.stdout(&["--no-cli-pager", "list-event-source-mappings"]).await, golden_text("list-msk.json"));
    let run = esm.run_env(&list, &[("AWS_DEFAULT_OUTPUT", Some("text"))]).await;
    assert_eq!(run.stdout, golden_text("list-msk.text"));

    // --query, evaluated before formatting, as the AWS CLI does.
    let query = "EventSourceMappings[].{Topic: Topics[0], UUID: UUID, State: State}";
    let queried = with(&list, &["--query", query]);
    assert_eq!(esm.stdout(&with(&queried, &["--output", "table"])).await, golden_text("list-msk-query.table"));
    assert_eq!(esm.stdout(&with(&queried, &["--output", "text"])).await, golden_text("list-msk-query.text"));
    let picked = esm.ok(&with(&list, &["--query", query])).await;
    assert_eq!(keys(&picked[0]), ["Topic", "UUID", "State"], "a multi-select hash keeps its written order");
    // A sub-object keeps the response's (the model's) key order.
    assert_eq!(esm.stdout(&with(&list, &["--query", "EventSourceMappings[0]"])).await, golden_text("get-msk.json"));
    assert_eq!(esm.stdout(&with(&get, &["--query", "State", "--output", "text"])).await, "Enabled\n");
    assert_eq!(esm.stdout(&with(&get, &["--query", "State"])).await, "\"Enabled\"\n");
    assert_eq!(esm.stdout(&with(&get, &["--query", "Topics", "--output", "text"])).await, "AWSKafkaTopic\n");
    assert_eq!(esm.stdout(&with(&list, &["--query", "length(EventSourceMappings[?State=='Enabled'])"])).await, "1\n");
    assert_eq!(esm.stdout(&with(&get, &["--query", "NoSuchField"])).await, "null\n");

    // A bad expression is refused before anything is called, as the AWS CLI refuses it.
    let bad = esm.run(&with(&get, &["--query", "Topics[0"])).await;
    assert_eq!(bad.code, 252, "{bad:?}");
    assert!(bad.stderr.contains("Bad value for --query Topics[0"), "{bad:?}");
    let bad = esm.run(&with(&get, &["--output", "yaml"])).await;
    assert_eq!(bad.code, 2, "clap refuses an unknown --output: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_profile_and_endpoint_url_override_the_environment() {
    let esm = Esm::new().await;
    let uuid = uuid_of(&esm.create(&SELF_MANAGED).await);
    let list = ["list-event-source-mappings", "--query", "EventSourceMappings[].UUID", "--output", "text"];

    // --region: without one the SDK cannot sign a request.
    let no_region = esm.run_env(&list, &[("AWS_REGION", None)]).await;
    assert_ne!(no_region.code, 0, "no region anywhere: {no_region:?}");
    let run = esm.run_env(&with(&list, &["--region", "us-east-1"]), &[("AWS_REGION", None)]).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("{uuid}\n").as_str()), "{run:?}");

    // --profile: region and credentials from a named profile of the shared files.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let credentials = dir.path().join("credentials");
    std::fs::write(&config, "[profile esm-test]\nregion = us-east-1\n").unwrap();
    std::fs::write(&credentials, "[esm-test]\naws_access_key_id = profile\naws_secret_access_key = profile\n").unwrap();
    let profile_env = [
        ("AWS_REGION", None),
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_CONFIG_FILE", config.to_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str()),
    ];
    let default_profile = esm.run_env(&list, &profile_env).await;
    assert_ne!(default_profile.code, 0, "the default profile does not exist: {default_profile:?}");
    let run = esm.run_env(&with(&list, &["--profile", "esm-test"]), &profile_env).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("{uuid}\n").as_str()), "{run:?}");
    // The profile's `output` applies when neither --output nor AWS_DEFAULT_OUTPUT is given, and
    // AWS_PROFILE selects a profile as --profile does.
    std::fs::write(&config, "[profile esm-test]\nregion = us-east-1\noutput = text\n").unwrap();
    let uuids = ["list-event-source-mappings", "--query", "EventSourceMappings[].UUID"];
    let run = esm.run_env(&with(&uuids, &["--profile", "esm-test"]), &profile_env).await;
    assert_eq!(run.stdout, format!("{uuid}\n"), "{run:?}");
    let by_env = [&profile_env[..], &[("AWS_PROFILE", Some("esm-test"))]].concat();
    assert_eq!(esm.run_env(&uuids, &by_env).await.stdout, format!("{uuid}\n"));
    let run = esm.run_env(&with(&uuids, &["--profile", "esm-test", "--output", "json"]), &profile_env).await;
    assert_eq!(run.stdout, aws_cli_text(&json!([uuid])), "--output wins over the profile: {run:?}");
    std::fs::write(&config, "[profile esm-test]\nregion = us-east-1\noutput = yaml\n").unwrap();
    let run = esm.run_env(&with(&uuids, &["--profile", "esm-test"]), &profile_env).await;
    assert_eq!(run.code, 252, "an output esm cannot print is refused: {run:?}");
    assert!(run.stderr.contains("\"yaml\" is not one esm prints"), "{run:?}");

    // --endpoint-url wins over AWS_ENDPOINT_URL_DYNAMODB.
    let dead = [("AWS_ENDPOINT_URL_DYNAMODB", Some("http://127.0.0.1:1"))];
    let unreachable = esm.run_env(&list, &dead).await;
    assert_eq!(unreachable.code, SERVICE_ERROR, "{unreachable:?}");
    let run = esm.run_env(&with(&list, &["--endpoint-url", &dynalite().endpoint]), &dead).await;
    assert_eq!((run.code, run.stdout.as_str()), (0, format!("{uuid}\n").as_str()), "{run:?}");
    let bad = esm.run(&with(&list, &["--endpoint-url", "localhost:8000"])).await;
    assert_eq!(bad.code, 252, "{bad:?}");
    assert!(bad.stderr.contains("Bad value for --endpoint-url \"localhost:8000\": scheme is missing"), "{bad:?}");
}

/// A skeleton with every non-empty string (an enum value, which the AWS CLI picks at random
/// each time) replaced by `<enum>`: names, order, types and empty placeholders remain.
fn without_enum_picks(value: &Value) -> Value {
    match value {
        Value::String(s) if !s.is_empty() && s != "1970-01-01T00:00:00" => json!("<enum>"),
        Value::Array(items) => Value::Array(items.iter().map(without_enum_picks).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), without_enum_picks(v))).collect())
        }
        other => other.clone(),
    }
}

/// The AWS CLI's skeleton (`tests/golden/aws-skeleton-*.json`, printed by `aws lambda …
/// --generate-cli-skeleton` from botocore's model) less what kafka-esm refuses.
fn expected_skeleton(operation: &str) -> Value {
    let mut skeleton: Value = serde_json::from_str(&golden_text(&format!("aws-skeleton-{operation}.json"))).unwrap();
    let fields = skeleton.as_object_mut().unwrap();
    for unsupported in
        ["TumblingWindowInSeconds", "Queues", "DocumentDBEventSourceConfig", "KMSKeyArn", "LoggingConfig"]
    {
        fields.shift_remove(unsupported);
    }
    fields["ProvisionedPollerConfig"].as_object_mut().unwrap().shift_remove("PollerGroupName");
    skeleton
}

const CA_SECRET: &str = "arn:aws:secretsmanager:us-east-1:111111111111:secret:ca";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_skeletons_round_trip_through_cli_input_json() {
    let esm = Esm::new().await;
    for operation in ["create-event-source-mapping", "update-event-source-mapping"] {
        let printed = esm.stdout(&[operation, "--generate-cli-skeleton"]).await;
        let ours: Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(printed, aws_cli_text(&ours), "printed as the AWS CLI prints JSON");
        assert_eq!(
            aws_cli_text(&without_enum_picks(&ours)),
            aws_cli_text(&without_enum_picks(&expected_skeleton(operation))),
            "{operation}: botocore's names, order and placeholders"
        );
        assert_eq!(esm.stdout(&[operation, "--generate-cli-skeleton", "input"]).await, printed);
    }
    // Fill in the skeleton as a user would: values for what they want, the rest removed.
    let mut input = expected_skeleton("create-event-source-mapping");
    let fields = input.as_object_mut().unwrap();
    for unwanted in ["EventSourceArn", "AmazonManagedKafkaEventSourceConfig", "DestinationConfig", "FilterCriteria"] {
        fields.shift_remove(unwanted);
    }
    fields["FunctionName"] = json!("fn-input");
    fields["BatchSize"] = json!(10);
    fields["MaximumBatchingWindowInSeconds"] = json!(2);
    fields["ParallelizationFactor"] = json!(2);
    fields["ScalingConfig"] = json!({"MaximumConcurrency": 5});
    fields["StartingPosition"] = json!("AT_TIMESTAMP");
    fields["StartingPositionTimestamp"] = json!("2023-11-14T22:13:20");
    fields["MaximumRecordAgeInSeconds"] = json!(-1);
    fields["MaximumRetryAttempts"] = json!(-1);
    fields["Tags"] = json!({"team": "payments"});
    fields["Topics"] = json!(["orders"]);
    fields["SourceAccessConfigurations"] = json!([{"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": CA_SECRET}]);
    fields["SelfManagedEventSource"] = json!({"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.example:9092"]}});
    fields["SelfManagedKafkaEventSourceConfig"] = json!({"ConsumerGroupId": "input-group"});
    fields["MetricsConfig"] = json!({"Metrics": ["EventCount"]});
    fields["ProvisionedPollerConfig"] = json!({"MinimumPollers": 1, "MaximumPollers": 2});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let from_file = format!("file://{}", file.display());
    let created = esm.create(&["--cli-input-json", &from_file]).await;
    let uuid = uuid_of(&created);
    let expected = json!({
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": 1_700_000_000.0,
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 2,
        "ParallelizationFactor": 2,
        "ScalingConfig": {"MaximumConcurrency": 5},
        "MetricsConfig": {"Metrics": ["EventCount"]},
        "Topics": ["orders"],
        "SourceAccessConfigurations": [{"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": CA_SECRET}],
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b-1.example:9092"]}},
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": true,
        "MaximumRetryAttempts": -1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "input-group"},
        "ProvisionedPollerConfig": {"MinimumPollers": 1, "MaximumPollers": 2},
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&created[key], value, "{key} from --cli-input-json: {created}");
    }
    assert_eq!(created["State"], "Creating", "Enabled: true from the skeleton");
    assert!(created["FunctionArn"].as_str().unwrap().ends_with(":function:fn-input"));
    assert_eq!(esm.stored(&uuid).await.tags, Some([("team".to_owned(), "payments".to_owned())].into()));

    // A flag wins over the same parameter in the input, as in the AWS CLI.
    let inline = input.to_string();
    let overridden = esm
        .create(&[
            "--cli-input-json",
            &inline,
            "--batch-size",
            "20",
            "--topics",
            "other",
            "--function-name",
            "fn-2",
            "--self-managed-kafka-event-source-config",
            "ConsumerGroupId=other-group",
        ])
        .await;
    assert_eq!((overridden["BatchSize"].as_u64(), overridden["Topics"].clone()), (Some(20), json!(["other"])));
    assert_eq!(overridden["SelfManagedKafkaEventSourceConfig"], json!({"ConsumerGroupId": "other-group"}));
    assert_eq!(overridden["MaximumBatchingWindowInSeconds"], 2, "the rest still comes from the input");

    // Update through its own skeleton's names.
    esm.set_state(&uuid, State::Enabled, "OK").await;
    let update_input = json!({"UUID": uuid, "BatchSize": 30, "Enabled": false}).to_string();
    let updated = esm.ok(&["update-event-source-mapping", "--cli-input-json", &update_input]).await;
    assert_eq!((updated["BatchSize"].as_u64(), updated["State"].as_str()), (Some(30), Some("Disabling")));

    // What kafka-esm does not support is named, not silently dropped.
    let mut queues = input.clone();
    queues["Queues"] = json!(["q"]);
    let message = esm
        .fails(
            &["create-event-source-mapping", "--cli-input-json", &queues.to_string()],
            "InvalidParameterValueException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(message.contains("Queues is not supported"), "{message}");
    let mut unknown = input.clone();
    unknown["BatchSise"] = json!(1);
    let message = esm
        .fails(
            &["create-event-source-mapping", "--cli-input-json", &unknown.to_string()],
            "InvalidParameterValueException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(message.contains("BatchSise"), "{message}");
    let mut nameless = input.clone();
    nameless["FunctionName"] = json!("");
    let message = esm
        .fails(
            &["create-event-source-mapping", "--cli-input-json", &nameless.to_string()],
            "InvalidParameterValueException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(message.contains("FunctionName"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_pages_like_the_aws_cli_paginator() {
    let esm = Esm::new().await;
    let mut uuids = Vec::new();
    for topic in ["t1", "t2", "t3", "t4", "t5"] {
        uuids.push(uuid_of(&esm.create(&on_topic(&SELF_MANAGED, topic)).await));
    }
    uuids.sort();
    let listed = |value: &Value| -> Vec<String> {
        value["EventSourceMappings"].as_array().unwrap().iter().map(uuid_of).collect()
    };
    let list = ["list-event-source-mappings"];
    // Page size changes the calls, not the result.
    let all = esm.ok(&with(&list, &["--page-size", "2"])).await;
    assert_eq!((listed(&all), all.get("NextToken")), (uuids.clone(), None));
    let first = esm.ok(&with(&list, &["--page-size", "2", "--max-items", "3"])).await;
    assert_eq!(listed(&first), uuids[..3]);
    let token = first["NextToken"].as_str().expect("NextToken after --max-items").to_owned();
    // botocore's token: base64 of {"Marker": …} (here the last UUID printed).
    let decoded =
        String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &token).unwrap()).unwrap();
    assert_eq!(decoded, format!("{{\"Marker\": \"{}\"}}", uuids[2]));
    let rest = esm.ok(&with(&list, &["--page-size", "2", "--max-items", "3", "--starting-token", &token])).await;
    assert_eq!((listed(&rest), rest.get("NextToken")), (uuids[3..].to_vec(), None));
    // Text output is printed page by page, the query applied to each, then the NextToken.
    let text = esm
        .stdout(&with(&list, &["--page-size", "2", "--query", "EventSourceMappings[].UUID", "--output", "text"]))
        .await;
    assert_eq!(text, format!("{}\t{}\n{}\t{}\n{}\n", uuids[0], uuids[1], uuids[2], uuids[3], uuids[4]));
    let text = esm
        .stdout(&with(&list, &["--max-items", "1", "--query", "EventSourceMappings[].UUID", "--output", "text"]))
        .await;
    assert_eq!(text, format!("{}\nNone\n", uuids[0]), "the AWS CLI applies the query to the NextToken too");
    let text = esm
        .stdout(&with(
            &list,
            &["--max-items", "1", "--output", "text", "--query", "EventSourceMappings[].UUID || NextToken.NextToken"],
        ))
        .await;
    assert_eq!(text.lines().count(), 2, "{text}");
    let message = esm
        .fails(
            &with(&list, &["--starting-token", "garbage"]),
            "InvalidParameterValueException",
            "ListEventSourceMappings",
        )
        .await;
    assert!(message.contains("not a NextToken"), "{message}");
    let bad = esm.run(&with(&list, &["--page-size", "0"])).await;
    assert_eq!(bad.code, 2, "page size 0 is refused: {bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_stored_on_the_item_with_the_aws_rules() {
    let esm = Esm::new().await;
    let created = esm.create(&with(&SELF_MANAGED, &["--tags", "team=payments,env=prod"])).await;
    assert!(created.get("Tags").is_none(), "Tags are not part of the mapping's shape: {created}");
    let uuid = uuid_of(&created);
    let arn = created["EventSourceMappingArn"].as_str().unwrap().to_owned();
    let list_tags = ["list-tags", "--resource", &arn];
    let tags = esm.ok(&list_tags).await;
    assert_eq!(tags, json!({"Tags": {"env": "prod", "team": "payments"}}));
    assert_golden("list-tags.json", &tags, &uuid);
    // The shape of botocore's ListTagsResponse (its output skeleton): `Tags`, a map of strings.
    let model: Value = serde_json::from_str(&golden_text("aws-skeleton-list-tags-output.json")).unwrap();
    assert_eq!(keys(&tags), keys(&model));
    assert!(model["Tags"]["KeyName"].is_string() && tags["Tags"].as_object().unwrap().values().all(Value::is_string));

    let before = esm.stored(&uuid).await;
    // tag-resource and untag-resource print nothing, as the AWS CLI does for an empty response.
    let tagged = esm.run(&["tag-resource", "--resource", &arn, "--tags", "env=staging,owner=me,cost=042"]).await;
    assert_eq!((tagged.code, tagged.stdout.as_str()), (0, ""), "{tagged:?}");
    assert_eq!(
        esm.ok(&list_tags).await,
        json!({"Tags": {"cost": "042", "env": "staging", "owner": "me", "team": "payments"}})
    );
    let untagged = esm.run(&["untag-resource", "--resource", &arn, "--tag-keys", "env", "cost", "never-there"]).await;
    assert_eq!((untagged.code, untagged.stdout.as_str()), (0, ""), "{untagged:?}");
    assert_eq!(esm.ok(&list_tags).await, json!({"Tags": {"owner": "me", "team": "payments"}}));
    // Tagging changes neither the mapping's state nor its LastModified.
    let after = esm.stored(&uuid).await;
    assert_eq!((after.state, after.last_modified), (before.state, before.last_modified));
    assert_eq!(esm.get(&uuid).await, created);

    let refused = [
        (vec!["tag-resource", "--resource", &arn, "--tags", "aws:owner=me"], "TagResource", "reserved"),
        (vec!["untag-resource", "--resource", &arn, "--tag-keys", "AWS:owner"], "UntagResource", "reserved"),
        (vec!["tag-resource", "--resource", &arn, "--tags", "bad;key=x"], "TagResource", "bad;key"),
        (
            vec!["tag-resource", "--resource", "arn:aws:lambda:us-east-1:123456789012:function:fn", "--tags", "a=b"],
            "TagResource",
            "is a function",
        ),
        (vec!["list-tags", "--resource", "not-an-arn"], "ListTags", "not an event source mapping ARN"),
    ];
    for (args, operation, expected) in refused {
        let message = esm.fails(&args, "InvalidParameterValueException", operation).await;
        assert!(message.contains(expected), "{args:?}: {message}");
    }
    let long_key = format!("{}=v", "k".repeat(129));
    let message = esm
        .fails(
            &["tag-resource", "--resource", &arn, "--tags", &long_key],
            "InvalidParameterValueException",
            "TagResource",
        )
        .await;
    assert!(message.contains("1 to 128 characters"), "{message}");
    let many: String = (0..49).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
    let message = esm
        .fails(&["tag-resource", "--resource", &arn, "--tags", &many], "InvalidParameterValueException", "TagResource")
        .await;
    assert!(message.contains("at most 50 tags"), "2 + 49 tags: {message}");
    let message = esm
        .fails(
            &[&["create-event-source-mapping"][..], &on_topic(&SELF_MANAGED, "other"), &["--tags", "aws:x=y"]].concat(),
            "InvalidParameterValueException",
            "CreateEventSourceMapping",
        )
        .await;
    assert!(message.contains("reserved"), "{message}");
    // The ARN must be this mapping's: another account's is not found.
    let elsewhere = arn.replace("123456789012", "210987654321");
    esm.fails(&["list-tags", "--resource", &elsewhere], "ResourceNotFoundException", "ListTags").await;
    let gone = format!("{STUB_ACCOUNT_ARN}:event-source-mapping:{}", uuid::Uuid::new_v4());
    esm.fails(&["tag-resource", "--resource", &gone, "--tags", "a=b"], "ResourceNotFoundException", "TagResource")
        .await;
    assert_eq!(
        esm.ok(&list_tags).await,
        json!({"Tags": {"owner": "me", "team": "payments"}}),
        "nothing refused was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_item_with_tags_is_a_valid_mapping() {
    let esm = Esm::new().await;
    let (_, mut documented) = documented_item();
    documented["Tags"] = json!({"M": {"team": {"S": "payments"}}});
    let (attrs, plain) = item(&documented);
    esm.dynamo.put_item().table_name(&esm.tables.mappings).set_item(Some(attrs)).send().await.expect("put the item");
    let uuid = plain["UUID"].as_str().unwrap().to_owned();
    let stored = esm.stored(&uuid).await;
    assert_eq!(stored.tags, Some([("team".to_owned(), "payments".to_owned())].into()));
    let printed = esm.get(&uuid).await;
    assert!(printed.get("Tags").is_none() && printed["LastProcessingResult"] != "PROBLEM", "{printed}");
    let arn = format!("{STUB_ACCOUNT_ARN}:event-source-mapping:{uuid}");
    let arn = plain["EventSourceMappingArn"].as_str().map_or(arn, str::to_owned);
    assert_eq!(esm.ok(&["list-tags", "--resource", &arn]).await, json!({"Tags": {"team": "payments"}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_get_function_warns_in_one_readable_line() {
    let esm = Esm::new().await;
    // Nothing listens there; then an endpoint that answers GetFunction with an unrelated error.
    let endpoints = [("nothing", "http://127.0.0.1:1".to_owned()), ("dynalite", dynalite().endpoint.clone())];
    for (i, (what, endpoint)) in endpoints.iter().enumerate() {
        let topic = format!("orders-{i}");
        let args = [&["create-event-source-mapping"][..], &on_topic(&SELF_MANAGED, &topic)].concat();
        let run = esm.run_env(&args, &[("AWS_ENDPOINT_URL_LAMBDA", Some(endpoint.as_str()))]).await;
        assert_eq!(run.code, 0, "{what}: {run:?}");
        let created: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(created["FunctionArn"], "fn", "{what}: the name is stored as given");
        let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one line: {:?}", run.stderr);
        let line = lines[0].trim_start();
        assert!(line.starts_with("WARN lambda:GetFunction is not available ("), "{what}: {line}");
        assert!(line.contains("storing the function name as given"), "{what}: {line}");
        for dump in ["Error {", "ErrorMetadata", "SdkBody", "Response {", "kafka_esm::"] {
            assert!(!line.contains(dump), "{what}: no SDK debug output ({dump}): {line}");
        }
        if *what == "nothing" {
            assert!(line.contains("Connection refused"), "the cause is named: {line}");
        } else {
            assert!(line.contains("unexpected response (HTTP 200)"), "what came back is named: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shorthand_values_take_the_type_of_the_parameter() {
    let esm = Esm::new().await;
    let created = esm
        .create(&with(
            &SELF_MANAGED,
            &[
                "--self-managed-kafka-event-source-config",
                "ConsumerGroupId=12345",
                "--provisioned-poller-config",
                "MinimumPollers=1,MaximumPollers=3",
            ],
        ))
        .await;
    assert_eq!(created["SelfManagedKafkaEventSourceConfig"], json!({"ConsumerGroupId": "12345"}));
    assert_eq!(created["ProvisionedPollerConfig"], json!({"MinimumPollers": 1, "MaximumPollers": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapping_and_tag_command_takes_cli_input_json() {
    let esm = Esm::new().await;
    for operation in
        ["get-event-source-mapping", "delete-event-source-mapping", "tag-resource", "untag-resource", "list-tags"]
    {
        let printed = esm.stdout(&[operation, "--generate-cli-skeleton"]).await;
        assert_eq!(printed, golden_text(&format!("aws-skeleton-{operation}.json")), "{operation}: botocore's skeleton");
    }
    let created = esm.create(&SELF_MANAGED).await;
    let uuid = uuid_of(&created);
    let arn = created["EventSourceMappingArn"].as_str().unwrap().to_owned();
    let by_uuid = json!({"UUID": uuid}).to_string();
    assert_eq!(esm.ok(&["get-event-source-mapping", "--cli-input-json", &by_uuid]).await, created);
    let tag = json!({"Resource": arn, "Tags": {"team": "payments", "env": "prod"}}).to_string();
    assert_eq!(esm.stdout(&["tag-resource", "--cli-input-json", &tag]).await, "");
    let untag = json!({"Resource": arn, "TagKeys": ["env"]}).to_string();
    assert_eq!(esm.stdout(&["untag-resource", "--cli-input-json", &untag]).await, "");
    let list = json!({"Resource": arn}).to_string();
    assert_eq!(esm.ok(&["list-tags", "--cli-input-json", &list]).await, json!({"Tags": {"team": "payments"}}));
    // A flag wins over the input; a member of another operation is refused, not ignored.
    let message = esm
        .fails(
            &["list-tags", "--cli-input-json", &list, "--resource", "nope"],
            "InvalidParameterValueException",
            "ListTags",
        )
        .await;
    assert!(message.contains("nope"), "{message}");
    let message =
        esm.fails(&["list-tags", "--cli-input-json", &tag], "InvalidParameterValueException", "ListTags").await;
    assert!(message.contains("unknown parameter Tags"), "{message}");
    let message =
        esm.fails(&["tag-resource", "--resource", &arn], "InvalidParameterValueException", "TagResource").await;
    assert!(message.contains("--tags (Tags) is required"), "{message}");
    let deleted = esm.ok(&["delete-event-source-mapping", "--cli-input-json", &by_uuid]).await;
    assert_eq!(deleted["UUID"], json!(uuid));
}
