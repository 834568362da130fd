//! The connect kind against a broken CDC set-up: a connector with a wrong database password
//! (Debezium tries the connection when the worker validates the configuration, so `create`
//! fails with the worker's cause, before any task could), a connector whose publication does
//! not exist (created, then its task FAILED: `status` fails with the worker's trace),
//! a table left out of the publication, PostgreSQL without logical decoding, and the Connect
//! worker killed. Each asserts the verdict and that the message names the cause; the round
//! trips must leave nothing behind in PostgreSQL, whatever failed. Needs Docker and the kit's
//! postgres, kafka and kafka-connect images.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::report::CheckRecord;
use platform_harness::spec::{Check, PlatformSpec, Spec, Suite};
use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;

const WRONG_PASSWORD: &str = "wrong-pw-5c1d8e";

fn platform() -> PlatformSpec {
    PlatformSpec::load(Path::new("../fixtures/platforms/cdc-lakehouse.toml")).unwrap()
}

/// Every check of `src` in order in one session, `before(check, run_id)` called before
/// each; the records once the session is gone (and nothing of the run is left).
fn run(
    platform: PlatformSpec,
    src: &str,
    before: impl FnMut(&str, &str),
) -> BTreeMap<String, CheckRecord> {
    let suite = Suite::parse(
        Path::new("../suites/cdc-lakehouse/broken.toml"),
        src,
        &platform,
    )
    .unwrap();
    let spec = Spec {
        platform,
        suites: vec![suite],
    };
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    common::run_in_order(&spec, checks, before)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// Kills the run's Kafka Connect worker, as a crash would.
fn kill_connect(run_id: &str) {
    let docker = docker::connect().unwrap();
    let filters = BTreeMap::from([
        ("label", vec![format!("{}={run_id}", docker::LABEL_RUN)]),
        ("name", vec!["^/?kafka-connect-".to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::new()
        .filters(&filters.into_iter().collect())
        .build();
    block_on(async {
        let found = docker.list_containers(Some(options)).await.unwrap();
        assert_eq!(
            found.len(),
            1,
            "one kafka-connect container in run {run_id}"
        );
        let id = found[0].id.clone().unwrap();
        docker.kill_container(&id, None).await.unwrap();
    });
}

const SUITE: &str = r#"
service = "kafka-connect"

[[check]]
name = "wrong_password"
[[check.step]]
connect.create = { name = "harness-broken-pw", database = "postgres", config = { "connector.class" = "io.debezium.connector.postgresql.PostgresConnector", "plugin.name" = "pgoutput", "topic.prefix" = "harness_broken", "slot.name" = "harness_broken_pw", "publication.autocreate.mode" = "disabled", "snapshot.mode" = "no_data", "database.password" = "wrong-pw-5c1d8e" } }
[[check.step]]
connect.status = { name = "harness-broken-pw", within = "45s" }

[[check]]
name = "missing_publication"
[[check.step]]
connect.create = { name = "harness-broken-nopub", database = "postgres", config = { "connector.class" = "io.debezium.connector.postgresql.PostgresConnector", "plugin.name" = "pgoutput", "topic.prefix" = "harness_nopub", "slot.name" = "harness_broken_nopub", "slot.drop.on.stop" = "true", "publication.name" = "harness_no_such_publication", "publication.autocreate.mode" = "disabled", "snapshot.mode" = "no_data" } }
[[check.step]]
connect.status = { name = "harness-broken-nopub", within = "45s" }

[[check]]
name = "unpublished"
[[check.step]]
connect.cdc_roundtrip = { publish_table = false, within = "10s" }

[[check]]
name = "worker_killed"
[[check.step]]
connect.cdc_roundtrip = { within = "10s" }

[[check]]
name = "nothing_left"
service = "postgres"
[[check.step]]
postgres.query.sql = "SELECT (SELECT count(*) FROM pg_tables WHERE tablename LIKE 'harness_cdc_%') AS tables, (SELECT count(*) FROM pg_publication WHERE pubname LIKE 'harness_pub_%') AS publications, (SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'harness_slot_%') AS slots"
expect = [
  { path = "$.rows[0].tables", equals = 0 },
  { path = "$.rows[0].publications", equals = 0 },
  { path = "$.rows[0].slots", equals = 0 },
]
"#;

#[test]
fn wrong_password_unpublished_table_and_a_dead_worker_are_named() {
    let records = run(platform(), SUITE, |check, run_id| {
        if check == "worker_killed" {
            kill_connect(run_id);
        }
    });

    let outcome = &records["wrong_password"].outcome;
    eprintln!("wrong_password: {outcome:?}");
    let Outcome::Failed(msg) = outcome else {
        panic!("a wrong password should fail: {outcome:?}");
    };
    assert!(msg.contains("connector `harness-broken-pw`"), "{msg}");
    assert!(
        msg.contains("password authentication failed for user \"platform\""),
        "the worker's cause: {msg}"
    );
    assert!(
        !msg.contains(WRONG_PASSWORD),
        "no secret in the report: {msg}"
    );

    let outcome = &records["missing_publication"].outcome;
    eprintln!("missing_publication: {outcome:?}");
    let Outcome::Failed(msg) = outcome else {
        panic!("a connector without its publication should fail: {outcome:?}");
    };
    assert!(
        msg.contains("step 2 `connect.status"),
        "created, failed when its task ran: {msg}"
    );
    assert!(msg.contains("task 0 FAILED on "), "{msg}");
    assert!(
        msg.contains("ConnectException: Publication autocreation is disabled, please create one"),
        "the worker's trace: {msg}"
    );

    let outcome = &records["unpublished"].outcome;
    eprintln!("unpublished: {outcome:?}");
    let Outcome::Failed(msg) = outcome else {
        panic!("an unpublished table should fail: {outcome:?}");
    };
    assert!(msg.contains("no change event for the INSERT"), "{msg}");
    assert!(msg.contains("within 10 s"), "{msg}");
    assert!(
        msg.contains("is not in publication harness_pub_"),
        "says why: {msg}"
    );

    let outcome = &records["worker_killed"].outcome;
    eprintln!("worker_killed: {outcome:?}");
    let Outcome::Errored(msg) = outcome else {
        panic!("a dead worker should be an error: {outcome:?}");
    };
    assert!(msg.contains("kafka-connect at http://127.0.0.1:"), "{msg}");
    assert!(msg.contains("/connectors/harness-cdc-"), "{msg}");

    assert_eq!(
        records["nothing_left"].outcome,
        Outcome::Passed,
        "the round trips removed their table, publication and slot"
    );
}

const ROUNDTRIP: &str = r#"
service = "kafka-connect"
[[check]]
name = "roundtrip"
[[check.step]]
connect.cdc_roundtrip = { within = "10s" }
"#;

#[test]
fn postgres_without_logical_decoding_fails_up_front() {
    let mut platform = platform();
    // The image's default command: wal_level stays `replica`.
    platform
        .services
        .get_mut("postgres")
        .unwrap()
        .command
        .clear();
    let records = run(platform, ROUNDTRIP, |_, _| {});
    let outcome = &records["roundtrip"].outcome;
    eprintln!("roundtrip: {outcome:?}");
    let Outcome::Failed(msg) = outcome else {
        panic!("wal_level=replica should fail: {outcome:?}");
    };
    assert!(msg.contains("wal_level is `replica`"), "{msg}");
    assert!(msg.contains("needs wal_level=logical"), "{msg}");
}
