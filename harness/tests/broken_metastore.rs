//! The Hive Metastore of the `lakehouse` platform, broken three ways: its database password
//! wrong (the schema step fails, the service never gets ready, and the error carries
//! PostgreSQL's refusal; Trino, which uses it, starts, and its lake check errors naming the
//! metastore), its warehouse bucket missing (the metastore starts, and the step
//! that makes it create a directory there fails naming the path in that bucket), and the
//! metastore killed mid-suite (the next Trino step fails naming it, within a bound). Needs
//! Docker and the kit's postgres, minio, hive-metastore and trino images.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::report::CheckRecord;
use platform_harness::spec::{Check, PlatformSpec, Spec, Suite};
use testcontainers::bollard::query_parameters::ListContainersOptionsBuilder;

const WRONG_PASSWORD: &str = "wrong-pw-9b3e1f";

fn platform() -> PlatformSpec {
    PlatformSpec::load(Path::new("../fixtures/platforms/lakehouse.toml")).unwrap()
}

fn set_metastore_env(platform: &mut PlatformSpec, key: &str, value: &str) {
    platform
        .services
        .get_mut("hive-metastore")
        .unwrap()
        .env
        .insert(key.into(), value.into());
}

/// Every check of `src` in order in one session, `before(check, run_id)` called before
/// each; the records once the session is gone (and nothing of the run is left).
fn run(
    platform: PlatformSpec,
    src: &str,
    before: impl FnMut(&str, &str),
) -> BTreeMap<String, CheckRecord> {
    let suite = Suite::parse(Path::new("../suites/lakehouse/broken.toml"), src, &platform).unwrap();
    let spec = Spec {
        platform,
        suites: vec![suite],
    };
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    common::run_in_order(&spec, checks, before)
}

/// Kills the run's metastore, as a crash would.
fn kill_metastore(run_id: &str) {
    let docker = docker::connect().unwrap();
    let filters = BTreeMap::from([
        ("label", vec![format!("{}={run_id}", docker::LABEL_RUN)]),
        ("name", vec!["^/?hive-metastore-".to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::new()
        .filters(&filters.into_iter().collect())
        .build();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let found = docker.list_containers(Some(options)).await.unwrap();
        assert_eq!(
            found.len(),
            1,
            "one hive-metastore container in run {run_id}"
        );
        let id = found[0].id.clone().unwrap();
        docker.kill_container(&id, None).await.unwrap();
    });
}

/// The message and the services' log tails, as the report shows them together.
fn everything_said(record: &CheckRecord) -> String {
    let mut text = match &record.outcome {
        Outcome::Passed => String::new(),
        Outcome::Failed(m) | Outcome::Errored(m) => m.clone(),
    };
    for (service, log) in &record.service_logs {
        text.push_str(&format!("\n--- {service}\n{log}"));
    }
    text
}

/// The message of a check that must have errored; `what` says what it was in the panic.
fn errored<'a>(record: &'a CheckRecord, what: &str) -> &'a str {
    eprintln!("{}: {:?}", record.name, record.outcome);
    match &record.outcome {
        Outcome::Errored(msg) => msg,
        other => panic!("{what} is an error: {other:?}"),
    }
}

const PING_AND_LAKE: &str = r#"
[[check]]
name = "ping"
service = "hive-metastore"
[[check.step]]
exec = { cmd = ["hms-ping"], timeout = "30s" }

[[check]]
name = "lake"
service = "trino"
[[check.step]]
trino.query.sql = "SHOW SCHEMAS FROM lake"
"#;

#[test]
fn a_wrong_database_password_keeps_the_metastore_from_ready_with_postgres_cause() {
    let mut platform = platform();
    set_metastore_env(&mut platform, "METASTORE_DB_PASSWORD", WRONG_PASSWORD);
    let started = std::time::Instant::now();
    let records = run(platform, PING_AND_LAKE, |_, _| {});
    // The schema step fails at once: well before the 90 s startup timeout.
    assert!(started.elapsed() < Duration::from_secs(150), "bounded");
    let record = &records["ping"];
    let msg = errored(record, "a metastore that cannot start");
    assert!(msg.contains("hive-metastore"), "names the service: {msg}");
    assert!(
        msg.contains("stopped before it was ready"),
        "says it never got ready: {msg}"
    );
    let said = everything_said(record);
    assert!(
        said.contains("password authentication failed for user \"platform\""),
        "PostgreSQL's refusal, as the metastore's schema step got it: {said}"
    );
    assert!(!said.contains(WRONG_PASSWORD), "no password in the report");

    // Trino uses the metastore without waiting for it to start: its lake check errors on
    // the metastore's failure, named as such, not on a Trino that never got ready.
    let lake = &records["lake"];
    let msg = errored(lake, "a lake query without a metastore");
    assert!(
        msg.contains(
            "service `hive-metastore` (used by `trino`: its checks cannot run without it)"
        ),
        "names the metastore as what Trino's check lacks: {msg}"
    );
    assert!(
        msg.contains("stopped before it was ready"),
        "says why: {msg}"
    );
    assert!(
        everything_said(lake).contains("password authentication failed"),
        "with the metastore's log: {}",
        everything_said(lake)
    );
}

const BUCKET_AND_KILL: &str = r#"
service = "trino"

[[check]]
name = "ready"
[[check.step]]
service = "hive-metastore"
exec = { cmd = ["hms-ping"], timeout = "30s" }
[[check.step]]
trino.query.sql = "SHOW SCHEMAS FROM lake"

[[check]]
name = "schema_in_warehouse"
[[check.step]]
trino.execute.sql = "CREATE SCHEMA lake.harness_broken_wh"

[[check]]
name = "schema_elsewhere"
[[check.step]]
trino.execute.sql = "CREATE SCHEMA lake.harness_broken_kill WITH (location = 's3a://lake/harness_broken_kill/')"

[[check]]
name = "after_kill"
[[check.step]]
trino.query.sql = "SHOW TABLES FROM lake.harness_broken_kill"
"#;

#[test]
fn a_missing_warehouse_bucket_and_a_killed_metastore_fail_the_step_that_meets_them() {
    let mut platform = platform();
    set_metastore_env(
        &mut platform,
        "METASTORE_WAREHOUSE_DIR",
        "s3a://harness-no-such-bucket/warehouse",
    );
    let mut killed_at = None;
    let records = run(platform, BUCKET_AND_KILL, |check, run_id| {
        if check == "after_kill" {
            kill_metastore(run_id);
            killed_at = Some(std::time::Instant::now());
        }
    });
    let after_kill = killed_at.expect("the metastore was killed").elapsed();
    eprintln!("after_kill took {after_kill:?}");

    assert_eq!(
        records["ready"].outcome,
        Outcome::Passed,
        "the metastore starts without its bucket: only a call that writes there fails"
    );

    let outcome = &records["schema_in_warehouse"].outcome;
    eprintln!("schema_in_warehouse: {outcome:?}");
    let (Outcome::Failed(msg) | Outcome::Errored(msg)) = outcome else {
        panic!("a schema in a missing bucket must not pass");
    };
    assert!(msg.contains("step 1 `trino.execute"), "{msg}");
    assert!(
        msg.contains("HIVE_METASTORE_ERROR"),
        "the metastore refused: {msg}"
    );
    // The metastore's own words. Hive 4.0.1 drops S3A's cause here (the message ends in
    // `: null`, its log has no more), so the path naming the bucket is what there is to say.
    assert!(
        msg.contains(
            "Failed to create external path s3a://harness-no-such-bucket/warehouse/harness_broken_wh.db"
        ),
        "names the path in the missing bucket: {msg}"
    );

    assert_eq!(
        records["schema_elsewhere"].outcome,
        Outcome::Passed,
        "a schema in the bucket that exists still works"
    );

    let outcome = &records["after_kill"].outcome;
    eprintln!("after_kill: {outcome:?}");
    let (Outcome::Failed(msg) | Outcome::Errored(msg)) = outcome else {
        panic!("a query through a dead metastore must not pass");
    };
    assert!(msg.contains("hive-metastore"), "names the metastore: {msg}");
    // Trino's metastore timeout and retry time (10 s each, the lake catalog) bound it: about
    // 11 s here, 33 s with Trino's default retry time; nothing hangs.
    assert!(after_kill < Duration::from_secs(60), "took {after_kill:?}");
}
