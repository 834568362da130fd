//! One smoke check per kit image, proving the service inside is the real thing, then the
//! same checks after each server was killed (SIGKILL to the container's main process):
//! every one must turn into an error naming its service.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use platform_harness::run::Session;
use platform_harness::spec::Spec;

const SMOKE: &str = r#"
[[check]]
name = "postgres"
[[check.step]]
postgres.query.sql = "SELECT version() AS v"
expect = [{ path = "$.rows[0].v", matches = "^PostgreSQL 15\\." }]

[[check]]
name = "minio"
[[check.step]]
s3.bucket = { object_size = "1 KiB", multipart_size = "10 MiB" }
expect = [{ path = "$.keys", count = 2 }]

[[check]]
name = "kafka"
[[check.step]]
kafka.roundtrip = { messages = 10, partitions = 1, within = "20s" }
expect = [{ path = "$.consumed", equals = 10 }]

[[check]]
name = "mlflow"
[[check.step]]
http.get = { path = "/health" }
service = "mlflow"
expect = [{ path = "$.status", equals = 200 }]
[[check.step]]
mlflow.experiment = { name = "image-smoke" }
expect = [{ path = "$.experiment_id", exists = true }]

[[check]]
name = "trino"
[[check.step]]
trino.query.sql = "SELECT count(*) AS n FROM tpch.tiny.nation"
expect = [{ path = "$.rows[0].n", equals = 25 }]
"#;

/// The images of the `observability` platform; each check is named after its service.
const OBSERVABILITY_SMOKE: &str = r#"
[[check]]
name = "redis"
[[check.step]]
redis.info = {}
expect = [{ path = "$.version", matches = '^7\.0\.' }, { path = "$.role", equals = "master" }]

[[check]]
name = "postgres-exporter"
[[check.step]]
http.get = { path = "/metrics", port = "metrics" }
service = "postgres-exporter"
expect = [{ path = "$.body", matches = '(?m)^pg_up 1$' }]

[[check]]
name = "redis-exporter"
[[check.step]]
http.get = { path = "/metrics", port = "metrics" }
service = "redis-exporter"
expect = [{ path = "$.body", matches = '(?m)^redis_up 1$' }]

[[check]]
name = "prometheus"
[[check.step]]
prometheus.query = { query = "vector(42)" }
expect = [{ path = "$.result[0].value[1]", equals = 42 }]

[[check]]
name = "opensearch"
[[check.step]]
opensearch.health = {}
expect = [{ path = "$.status", matches = "^(green|yellow)$" }]
"#;

/// The Spark image of the `streaming` platform, as master and as worker: a PySpark job runs
/// on the cluster (the worker's executor), the worker is registered with the master.
const STREAMING_SMOKE: &str = r#"
[[check]]
name = "spark-master"
[[check.step]]
spark.submit = { app = "/opt/spark/work-dir/jobs/pi.py", args = ["2", "20000"], timeout = "3m" }
expect = [{ path = "$.pi", gt = 3.0 }, { path = "$.pi", lt = 3.3 }, { path = "$.spark_app.state", equals = "FINISHED" }]

[[check]]
name = "spark-worker"
[[check.step]]
http.get = { path = "/json/", port = "ui" }
service = "spark-worker"
expect = [{ path = "$.body.masterurl", equals = "spark://spark-master:7077" }]
"#;

const CDC_SMOKE: &str = r#"
[[check]]
name = "kafka-connect"
[[check.step]]
connect.plugins = {}
expect = [{ path = "$.plugins[?(@ == 'io.debezium.connector.postgresql.PostgresConnector')]", count = 1 }]
"#;

/// The Hive Metastore of the `lakehouse` platform: get_all_databases over Thrift with the
/// metastore's own client, the schema made in PostgreSQL listing `default`.
const METASTORE_SMOKE: &str = r#"
[[check]]
name = "hive-metastore"
[[check.step]]
service = "hive-metastore"
exec = { cmd = ["hms-ping"], timeout = "30s" }
expect = [{ path = "$.stdout", matches = "(?m)^databases: (.*,)?default(,|$)" }]
"#;

#[test]
fn each_image_serves_its_real_service_and_fails_once_killed() {
    smoke("fixtures/platform.toml", SMOKE);
}

#[test]
fn each_observability_image_serves_its_real_service_and_fails_once_killed() {
    smoke("fixtures/platforms/observability.toml", OBSERVABILITY_SMOKE);
}

#[test]
fn the_spark_image_serves_master_and_worker_and_fails_once_killed() {
    smoke("fixtures/platforms/streaming.toml", STREAMING_SMOKE);
}

#[test]
fn the_kafka_connect_image_serves_debezium_and_fails_once_killed() {
    smoke("fixtures/platforms/cdc-lakehouse.toml", CDC_SMOKE);
}

#[test]
fn the_hive_metastore_image_answers_thrift_and_fails_once_killed() {
    smoke("fixtures/platforms/lakehouse.toml", METASTORE_SMOKE);
}

/// Each check of `suite` (named after its service) passes, then errors once its
/// service's container was killed.
fn smoke(platform: &str, suite: &str) {
    // One platform at a time: two starting together would swamp a 2-core machine.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = std::env::temp_dir().join(format!("harness-smoke-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smoke.toml"), suite).unwrap();
    let spec = Spec::load(&root.join(platform), &dir).unwrap();
    // The smoke suite only: a named platform may share other suites.
    let checks: Vec<Arc<_>> = spec
        .checks()
        .filter(|c| c.suite == "smoke")
        .cloned()
        .map(Arc::new)
        .collect();
    let all: BTreeSet<String> = checks.iter().map(|c| c.id()).collect();
    let session = Session::start(&spec, &checks, &all, None).unwrap();

    for c in &checks {
        if let Err(e) = session.trial(c) {
            panic!(
                "{} on a healthy platform: {}",
                c.id(),
                e.message().unwrap_or_default()
            );
        }
    }

    for c in &checks {
        let container = format!("{}-{}", c.name, session.run_id());
        let killed = Command::new("docker")
            .args(["kill", &container])
            .output()
            .unwrap();
        assert!(killed.status.success(), "docker kill {container}");
        let err = session
            .trial(c)
            .expect_err("a check against a killed server must not pass");
        let msg = err.message().unwrap_or_default();
        eprintln!(
            "killed {}: {}",
            c.name,
            msg.lines().next().unwrap_or_default()
        );
        // The cause first (how the container ended, and its dependencies' if they were
        // killed before it), then the step that met it.
        assert!(
            msg.starts_with(&format!("ERROR: {} exited: killed, exit code 137;", c.name)),
            "{msg}"
        );
        assert!(msg.contains("; step 1 `"), "{msg}");
        assert!(
            msg.contains(&format!("on {}", c.name)),
            "names the service: {msg}"
        );
    }
    session.finish();
}
