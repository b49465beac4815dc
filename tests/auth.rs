//! Authentication against real brokers on the local stack: SASL/SCRAM-SHA-256/512 (tansu with
//! users, behind TLS), SASL/PLAIN (a checking front, behind TLS), mutual TLS (stunnel with
//! `verify = 2`), MSK IAM (the MSK stub's SASL/IAM brokers behind an OAUTHBEARER-checking front),
//! secrets and CAs from Secrets Manager (moto_server), and a custom `ConsumerGroupId`.
//!
//! Each mechanism: records delivered and committed with the right credentials (commits read back
//! by a separate librdkafka client authenticating on its own); the mapping disabled with AWS's
//! reason and wording with wrong ones, while the others keep flowing; a rotated secret picked up
//! without restarting the poller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/auth.rs"]
mod auth_common;
mod common;

use std::collections::{BTreeMap, HashMap};

use auth_common::{
    AuthPoller, IAM_KEY, IamCluster, access, committed, count_to, iam_sdk, mapping_request, moto, secret, status,
    user_password, wait_committed, wait_disabled,
};
use common::{Harness, WAIT, request, wait_for};
use kafka_esm::api::CreateRequest;
use kafka_esm::model::mapping::{KafkaEventSourceConfig, SourceAccessType, StartingPosition, State};
use kafka_esm_testkit::kafka::{Producer, create_topic, create_topic_with, random_topic};
use kafka_esm_testkit::msk_stub::cluster_arn;
use kafka_esm_testkit::sasl::{FrontMechanism, SaslFront, Scram, ScramTansu};
use kafka_esm_testkit::tls::{KeyEncryption, TestCa, TlsFront, TlsTansu, encrypt_private_key};
use kafka_esm_testkit::{MskCluster, MskStub, Tansu, free_port, sdk_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scram_sha_256_and_512_over_tls_deliver_refuse_a_wrong_password_and_follow_a_rotation() {
    let h = Harness::new().await;
    let ca = TestCa::new().unwrap();
    let tls_port = free_port();
    let mut broker = ScramTansu::start(&format!("localhost:{tls_port}")).unwrap();
    let front = TlsFront::start(&ca, tls_port, broker.port).unwrap();
    let ca_file = ca.ca_path().display().to_string();
    let tls = [("security.protocol", "ssl"), ("ssl.ca.location", ca_file.as_str())];
    let topic = random_topic("scram");
    create_topic_with(&front.bootstrap, &topic, 2, &tls).await.unwrap();
    Producer::with_config(&front.bootstrap, &tls).unwrap().fill(&topic, 2, 5, "before").await.unwrap();
    broker.set_users(&[("alice", "alice-pw-256", Scram::Sha256), ("bob", "bob-pw-512", Scram::Sha512)]).unwrap();

    // The CA from a Secrets Manager secret, as AWS defines it.
    let ca_secret = secret("root-ca", &serde_json::json!({"certificate": ca.ca_pem}).to_string()).await;
    let alice = secret("alice", &user_password("alice", "alice-pw-256")).await;
    let bob = secret("bob", &user_password("bob", "bob-pw-512")).await;
    let wrong = secret("mallory", &user_password("bob", "not-bobs-password")).await;
    let with = |kind, arn: &str| vec![access(kind, arn), access(SourceAccessType::ServerRootCaCertificate, &ca_secret)];
    let m256 = h
        .create(mapping_request("scram256", &topic, &front.bootstrap, with(SourceAccessType::SaslScram256Auth, &alice)))
        .await;
    let m512 = h
        .create(mapping_request("scram512", &topic, &front.bootstrap, with(SourceAccessType::SaslScram512Auth, &bob)))
        .await;
    let bad = h
        .create(mapping_request("wrong", &topic, &front.bootstrap, with(SourceAccessType::SaslScram512Auth, &wrong)))
        .await;

    // The same broker as an MSK cluster with SASL/SCRAM on: a SCRAM secret picks its
    // BootstrapBrokerStringSaslScram, although the cluster also lists plaintext brokers.
    let msk = MskStub::start().await;
    let arn = cluster_arn("scram");
    msk.put_cluster(
        &arn,
        MskCluster { brokers_sasl_scram: Some(front.bootstrap.clone()), ..MskCluster::active_plaintext("127.0.0.1:1") },
    );
    let mut msk_scram = request("msk-scram", &topic);
    msk_scram.self_managed_event_source = None;
    msk_scram.event_source_arn = Some(arn);
    msk_scram.source_access_configurations = Some(with(SourceAccessType::SaslScram512Auth, &bob));
    h.create(msk_scram).await;

    let poller = AuthPoller::start(&h, &sdk_config(&msk.endpoint).await).await;
    let done = wait_for(WAIT, || async {
        count_to(&h, "scram256") >= 10 && count_to(&h, "scram512") >= 10 && count_to(&h, "msk-scram") >= 10
    })
    .await;
    assert!(done.is_some(), "delivered: {} / {}", count_to(&h, "scram256"), count_to(&h, "scram512"));
    let (state, reason, result) = wait_disabled(&h, &bad).await;
    assert_eq!(
        (state, reason.as_str(), result.as_str()),
        (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR", "SASL authentication failed")
    );
    assert_eq!(count_to(&h, "wrong"), 0);

    // The committed offsets, read back with SCRAM by another client.
    let expected = BTreeMap::from([(0, 5), (1, 5)]);
    for (user, password, mechanism, mapping) in
        [("alice", "alice-pw-256", "SCRAM-SHA-256", &m256), ("bob", "bob-pw-512", "SCRAM-SHA-512", &m512)]
    {
        let sasl = [
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca_file.as_str()),
            ("sasl.mechanism", mechanism),
            ("sasl.username", user),
            ("sasl.password", password),
        ];
        let got = wait_committed(&front.bootstrap, &mapping.uuid, &topic, 2, &sasl, &expected).await;
        assert_eq!(got, expected, "{mechanism} commits");
    }

    // Rotation: bob's password changes on the broker (a restart: every connection drops) and in
    // the secret. The running poller reconnects, is refused, reads the secret again and goes on.
    broker.set_users(&[("bob", "bob-pw-rotated", Scram::Sha512)]).unwrap();
    moto().put_secret_value(&bob, &user_password("bob", "bob-pw-rotated")).await.unwrap();
    let sasl_bob = [
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.location", ca_file.as_str()),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "bob"),
        ("sasl.password", "bob-pw-rotated"),
    ];
    Producer::with_config(&front.bootstrap, &sasl_bob).unwrap().fill(&topic, 2, 3, "after").await.unwrap();
    let rotated = wait_for(WAIT, || async { count_to(&h, "scram512") >= 16 && count_to(&h, "msk-scram") >= 16 }).await;
    assert!(rotated.is_some(), "after the rotation: {} / {}", count_to(&h, "scram512"), count_to(&h, "msk-scram"));
    assert_eq!(status(&h, &m512).await.0, State::Enabled);
    // alice's password did not change: her mapping reconnects as it was.
    assert!(wait_for(WAIT, || async { count_to(&h, "scram256") >= 16 }).await.is_some());
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_plain_over_tls_delivers_refuses_a_wrong_password_and_follows_a_rotation() {
    let h = Harness::new().await;
    let ca = TestCa::new().unwrap();
    let tls_port = free_port();
    let tansu = Tansu::start_advertising(free_port(), &format!("localhost:{tls_port}")).unwrap();
    let front = SaslFront::start(
        &format!("127.0.0.1:{}", tansu.port),
        FrontMechanism::Plain(HashMap::from([("carol".to_owned(), "carol-pw".to_owned())])),
    )
    .await
    .unwrap();
    let tls = TlsFront::start(&ca, tls_port, front.port).unwrap();
    let ca_file = ca.ca_path().display().to_string();
    let plain = |password: &'static str| {
        [
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca_file.as_str()),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "carol"),
            ("sasl.password", password),
        ]
    };
    let topic = random_topic("plain");
    create_topic_with(&tls.bootstrap, &topic, 2, &plain("carol-pw")).await.unwrap();
    Producer::with_config(&tls.bootstrap, &plain("carol-pw")).unwrap().fill(&topic, 2, 5, "v").await.unwrap();

    let ca_uri = format!("file://{ca_file}");
    let good = secret("carol", &user_password("carol", "carol-pw")).await;
    let wrong = secret("carol-wrong", &user_password("carol", "guess")).await;
    let with = |arn: &str| {
        vec![access(SourceAccessType::BasicAuth, arn), access(SourceAccessType::ServerRootCaCertificate, &ca_uri)]
    };
    let m = h.create(mapping_request("plain", &topic, &tls.bootstrap, with(&good))).await;
    let bad = h.create(mapping_request("plain-wrong", &topic, &tls.bootstrap, with(&wrong))).await;
    let poller = AuthPoller::start(&h, &sdk_config(&h.stub.endpoint).await).await;
    assert!(wait_for(WAIT, || async { count_to(&h, "plain") >= 10 }).await.is_some(), "{}", count_to(&h, "plain"));
    let (state, reason, result) = wait_disabled(&h, &bad).await;
    assert_eq!(
        (state, reason.as_str(), result.as_str()),
        (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR", "SASL authentication failed")
    );
    let expected = BTreeMap::from([(0, 5), (1, 5)]);
    assert_eq!(wait_committed(&tls.bootstrap, &m.uuid, &topic, 2, &plain("carol-pw"), &expected).await, expected);
    assert!(
        front.attempts().iter().any(|a| a.identity == "carol" && !a.accepted),
        "the wrong password reached the broker"
    );

    // Rotation: the password changes at the broker and in the secret; connections drop.
    front.set_user("carol", "carol-pw-2");
    moto().put_secret_value(&good, &user_password("carol", "carol-pw-2")).await.unwrap();
    front.drop_connections();
    Producer::with_config(&tls.bootstrap, &plain("carol-pw-2")).unwrap().fill(&topic, 2, 2, "w").await.unwrap();
    assert!(wait_for(WAIT, || async { count_to(&h, "plain") >= 14 }).await.is_some(), "{}", count_to(&h, "plain"));
    assert_eq!(status(&h, &m).await.0, State::Enabled);
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutual_tls_delivers_with_plain_and_encrypted_keys_and_names_each_refusal() {
    let h = Harness::new().await;
    let server_ca = TestCa::new().unwrap();
    let client_ca = TestCa::new().unwrap();
    let broker = TlsTansu::start_mutual(&server_ca, &client_ca).unwrap();
    let client = client_ca.client_cert("kafka-esm").unwrap();
    let ca_file = server_ca.ca_path().display().to_string();
    let key_file = server_ca.dir.path().join("client.key");
    let cert_file = server_ca.dir.path().join("client.crt");
    std::fs::write(&key_file, &client.private_key).unwrap();
    std::fs::write(&cert_file, &client.certificate).unwrap();
    let (key_path, cert_path) = (key_file.display().to_string(), cert_file.display().to_string());
    let mtls = [
        ("security.protocol", "ssl"),
        ("ssl.ca.location", ca_file.as_str()),
        ("ssl.key.location", key_path.as_str()),
        ("ssl.certificate.location", cert_path.as_str()),
    ];
    let topic = random_topic("mtls");
    create_topic_with(&broker.bootstrap, &topic, 1, &mtls).await.unwrap();
    Producer::with_config(&broker.bootstrap, &mtls).unwrap().fill(&topic, 1, 5, "v").await.unwrap();

    let cert_secret = |certificate: &str, key: &str, password: Option<&str>| {
        let mut v = serde_json::json!({"certificate": certificate, "privateKey": key});
        if let Some(p) = password {
            v["privateKeyPassword"] = p.into();
        }
        v.to_string()
    };
    let pbes1 = encrypt_private_key(&client.private_key, "key-pw-1", KeyEncryption::Pbes1).unwrap();
    let pbes2 = encrypt_private_key(&client.private_key, "key-pw-2", KeyEncryption::Pbes2).unwrap();
    let stranger = TestCa::new().unwrap().client_cert("stranger").unwrap();
    let expired = client_ca.expired_client_cert("old").unwrap();
    let cases = [
        ("mtls-plain", cert_secret(&client.certificate, &client.private_key, None)),
        ("mtls-pbes1", cert_secret(&client.certificate, &pbes1, Some("key-pw-1"))),
        ("mtls-pbes2", cert_secret(&client.certificate, &pbes2, Some("key-pw-2"))),
        ("mtls-unknown", cert_secret(&stranger.certificate, &stranger.private_key, None)),
        ("mtls-expired", cert_secret(&expired.certificate, &expired.private_key, None)),
        ("mtls-wrong-pw", cert_secret(&client.certificate, &pbes2, Some("not-it"))),
        ("mtls-not-pem", cert_secret(&client.certificate, "not a key", None)),
    ];
    let ca_uri = format!("file://{ca_file}");
    let mut mappings = HashMap::new();
    for (name, value) in &cases {
        let arn = secret(name, value).await;
        let access = vec![
            access(SourceAccessType::ClientCertificateTlsAuth, &arn),
            access(SourceAccessType::ServerRootCaCertificate, &ca_uri),
        ];
        mappings.insert(*name, h.create(mapping_request(name, &topic, &broker.bootstrap, access)).await);
    }
    // Without SERVER_ROOT_CA_CERTIFICATE the system roots do not know the test CA.
    let good_arn = secret("mtls-system-roots", &cases[0].1).await;
    let system_roots = h
        .create(mapping_request(
            "mtls-system-roots",
            &topic,
            &broker.bootstrap,
            vec![access(SourceAccessType::ClientCertificateTlsAuth, &good_arn)],
        ))
        .await;

    // The same broker as an MSK cluster with TLS client authentication: an mTLS secret picks
    // its BootstrapBrokerStringTls.
    let msk = MskStub::start().await;
    let arn = cluster_arn("mtls");
    msk.put_cluster(
        &arn,
        MskCluster { brokers_tls: Some(broker.bootstrap.clone()), ..MskCluster::active_plaintext("127.0.0.1:1") },
    );
    let mut msk_mtls = request("msk-mtls", &topic);
    msk_mtls.self_managed_event_source = None;
    msk_mtls.event_source_arn = Some(arn);
    msk_mtls.source_access_configurations = Some(vec![
        access(SourceAccessType::ClientCertificateTlsAuth, &good_arn),
        access(SourceAccessType::ServerRootCaCertificate, &ca_uri),
    ]);
    h.create(msk_mtls).await;

    let poller = AuthPoller::start(&h, &sdk_config(&msk.endpoint).await).await;
    for name in ["mtls-plain", "mtls-pbes1", "mtls-pbes2", "msk-mtls"] {
        assert!(wait_for(WAIT, || async { count_to(&h, name) >= 5 }).await.is_some(), "{name}: {}", count_to(&h, name));
        if let Some(mapping) = mappings.get(name) {
            let expected = BTreeMap::from([(0, 5)]);
            let got = wait_committed(&broker.bootstrap, &mapping.uuid, &topic, 1, &mtls, &expected).await;
            assert_eq!(got, expected, "{name}");
        }
    }
    for (name, wording) in [
        ("mtls-unknown", "Server failed to authenticate Lambda"),
        ("mtls-expired", "Server failed to authenticate Lambda"),
        ("mtls-wrong-pw", "Provided certificate or private key is invalid"),
        ("mtls-not-pem", "Provided certificate or private key is invalid"),
    ] {
        let (state, reason, result) = wait_disabled(&h, &mappings[name]).await;
        assert_eq!(
            (state, reason.as_str(), result.as_str()),
            (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR", wording),
            "{name}"
        );
        assert_eq!(count_to(&h, name), 0, "{name}");
    }
    let (state, reason, result) = wait_disabled(&h, &system_roots).await;
    assert_eq!(
        (state, reason.as_str(), result.as_str()),
        (State::Disabled, "EVENT_SOURCE_AUTHN_ERROR", "Lambda failed to authenticate server")
    );
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_that_are_missing_malformed_or_incomplete_disable_the_mapping_as_config_errors() {
    let h = Harness::new().await;
    let topic = random_topic("secrets");
    create_topic(common::bootstrap(), &topic, 1).await.unwrap();
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf".to_owned();
    let not_json = secret("not-json", "username=alice password=hunter2").await;
    let no_password = secret("no-password", r#"{"username":"alice"}"#).await;
    let mut mappings = Vec::new();
    for (name, arn) in [("missing", &missing), ("not-json", &not_json), ("no-password", &no_password)] {
        let req =
            mapping_request(name, &topic, common::bootstrap(), vec![access(SourceAccessType::SaslScram512Auth, arn)]);
        mappings.push((name, h.create(req).await));
    }
    let healthy = h.create(request("healthy", &topic)).await;
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 1, 3, "v").await.unwrap();
    let poller = AuthPoller::start(&h, &sdk_config(&h.stub.endpoint).await).await;
    for (name, mapping) in &mappings {
        let (state, reason, result) = wait_disabled(&h, mapping).await;
        assert_eq!((state, reason.as_str()), (State::Disabled, "ESM_CONFIG_NOT_VALID"), "{name}: {result}");
        assert!(result.starts_with("PROBLEM: ") && result.contains("secret"), "{name}: {result}");
        assert!(!result.contains("hunter2"), "{name}: no secret value in {result}");
    }
    // The other mapping keeps flowing.
    assert!(wait_for(WAIT, || async { count_to(&h, "healthy") >= 3 }).await.is_some());
    assert_eq!(status(&h, &healthy).await.0, State::Enabled);
    poller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_custom_consumer_group_id_is_where_offsets_are_committed() {
    let h = Harness::new().await;
    let topic = random_topic("group");
    create_topic(common::bootstrap(), &topic, 2).await.unwrap();
    Producer::new(common::bootstrap()).unwrap().fill(&topic, 2, 4, "v").await.unwrap();
    let group = format!("orders-consumers/{}", uuid::Uuid::new_v4().simple());
    let mut req = request("grouped", &topic);
    req.self_managed_kafka_event_source_config =
        Some(KafkaEventSourceConfig { consumer_group_id: Some(group.clone()), schema_registry_config: None });
    let mapping = h.create(req).await;
    let poller = AuthPoller::start(&h, &sdk_config(&h.stub.endpoint).await).await;
    assert!(wait_for(WAIT, || async { count_to(&h, "grouped") >= 8 }).await.is_some());
    let expected = BTreeMap::from([(0, 4), (1, 4)]);
    let under_group = wait_committed(common::bootstrap(), &group, &topic, 2, &[], &expected).await;
    poller.stop().await;
    assert_eq!(under_group, expected, "commits land under the ConsumerGroupId");
    // And not under the UUID, AWS's default group.
    let under_uuid = committed(common::bootstrap(), &mapping.uuid, &topic, 2, &[]);
    assert!(under_uuid.is_empty(), "nothing under the UUID: {under_uuid:?}");
    // Also as a separate process sees it (confluent-kafka, when installed).
    if let Ok(out) = kafka_esm_testkit::kafka::committed_offsets_out_of_process(common::bootstrap(), &group, &topic) {
        assert_eq!(out, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn msk_iam_clusters_without_a_secret_use_oauthbearer_tokens_and_a_denied_connect_is_an_authz_error() {
    let h = Harness::new().await;
    let msk = MskStub::start().await;
    let allowed = IamCluster::start().await;
    let denied = IamCluster::start().await;
    denied.front.allow_connect(false);
    let topic = random_topic("iam");
    // The topic exists on both brokers (each is its own tansu); created through the IAM front.
    allowed.create_topic(&topic, 2).await;
    denied.create_topic(&topic, 1).await;
    allowed.fill(&topic, 2, 5).await;

    // A provisioned cluster with IAM on (and plaintext too: IAM wins, as in AWS) and a Serverless one.
    let provisioned = cluster_arn("iam");
    msk.put_cluster(
        &provisioned,
        MskCluster { brokers_sasl_iam: Some(allowed.bootstrap.clone()), ..MskCluster::active_plaintext("127.0.0.1:1") },
    );
    let serverless = cluster_arn("serverless");
    msk.put_cluster(&serverless, MskCluster::serverless(&allowed.bootstrap));
    let no_connect = cluster_arn("no-connect");
    msk.put_cluster(&no_connect, MskCluster::serverless(&denied.bootstrap));
    let msk_request = |function: &str, arn: &str, ca: &TestCa| CreateRequest {
        function_name: function.into(),
        event_source_arn: Some(arn.to_owned()),
        topics: vec![topic.clone()],
        starting_position: Some(StartingPosition::TrimHorizon),
        // The test CA stands in for Amazon Trust Services (kafka-esm honours it for MSK too).
        source_access_configurations: Some(vec![access(
            SourceAccessType::ServerRootCaCertificate,
            &format!("file://{}", ca.ca_path().display()),
        )]),
        ..CreateRequest::default()
    };
    let m1 = h.create(msk_request("iam-provisioned", &provisioned, &allowed.ca)).await;
    let m2 = h.create(msk_request("iam-serverless", &serverless, &allowed.ca)).await;
    let m3 = h.create(msk_request("iam-denied", &no_connect, &denied.ca)).await;

    let poller = AuthPoller::start(&h, &iam_sdk(&msk).await).await;
    for name in ["iam-provisioned", "iam-serverless"] {
        assert!(
            wait_for(WAIT, || async { count_to(&h, name) >= 10 }).await.is_some(),
            "{name}: {}",
            count_to(&h, name)
        );
    }
    let (state, reason, result) = wait_disabled(&h, &m3).await;
    assert_eq!(
        (state, reason.as_str(), result.as_str()),
        (State::Disabled, "EVENT_SOURCE_AUTHZ_ERROR", "SASL authentication failed")
    );
    // Commits, read back by another client with its own tokens.
    let expected = BTreeMap::from([(0, 5), (1, 5)]);
    let ca_file = allowed.ca.ca_path().display().to_string();
    let iam =
        [("security.protocol", "sasl_ssl"), ("ssl.ca.location", ca_file.as_str()), ("sasl.mechanism", "OAUTHBEARER")];
    for m in [&m1, &m2] {
        assert_eq!(wait_committed(&allowed.bootstrap, &m.uuid, &topic, 2, &iam, &expected).await, expected);
    }
    poller.stop().await;
    let accepted: Vec<_> = allowed.front.attempts().into_iter().filter(|a| a.accepted).collect();
    assert!(accepted.iter().all(|a| a.mechanism == "OAUTHBEARER" && a.identity == IAM_KEY), "{accepted:?}");
    assert!(denied.front.attempts().iter().all(|a| !a.accepted && a.reason.ends_with("Access denied")));
    let event = h.stub.invocations().into_iter().find(|i| i.function == "iam-serverless").unwrap().event;
    assert_eq!(event["eventSource"], "aws:kafka");
    assert_eq!(event["eventSourceArn"], serverless.as_str());
    assert_eq!(event["bootstrapServers"], allowed.bootstrap.as_str());
}
