//! The spark kind against a real cluster that breaks: a job that raises (its Python
//! traceback in the message), a job with a wrong S3 secret (S3A's cause in the message),
//! and the worker killed (the cluster check sees 0 alive workers). One platform for all
//! three: a Spark cluster starts in about 15 s on 2 cores, so it is started once.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

mod common;

/// The streaming platform's Spark and MinIO, jobs and Spark settings from fixtures/spark.
fn platform() -> String {
    let spark = common::root().join("fixtures/spark");
    format!(
        r#"
[secrets]
minio_password = {{ default = "broken-spark-minio-7c2a" }}

[services.spark-master]
image = "platform-kit/spark:4.0.1"
command = ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.master.Master"]
env = {{ SPARK_MASTER_HOST = "spark-master" }}
ports = {{ ui = 8080 }}
copy = [
  {{ from = "{jobs}", to = "/opt/spark/work-dir/jobs" }},
  {{ from = "{defaults}", to = "/opt/spark/conf/spark-defaults.conf", template = true }},
]
ready = [{{ http = "/json/", port = "ui", body_matches = '"status"\s*:\s*"ALIVE"' }}]
startup_timeout = "60s"

[services.spark-worker]
image = "platform-kit/spark:4.0.1"
depends_on = ["spark-master"]
command = ["/opt/spark/bin/spark-class", "org.apache.spark.deploy.worker.Worker", "spark://spark-master:7077"]
env = {{ SPARK_WORKER_CORES = "2", SPARK_WORKER_MEMORY = "1280m" }}
ready = [{{ log = "Successfully registered with master" }}]
startup_timeout = "60s"

[services.minio]
image = "platform-kit/minio:RELEASE.2025-10-15T17-29-55Z"
env = {{ MINIO_ROOT_USER = "platform-admin", MINIO_ROOT_PASSWORD = "${{secret.minio_password}}", MINIO_DEFAULT_BUCKETS = "lake" }}
ports = {{ s3 = 9000 }}
ready = [{{ http = "/minio/health/live", port = "s3" }}, {{ log = "platform-kit: buckets ready" }}]
startup_timeout = "60s"
endpoint = {{ access_key = "platform-admin", secret_key = "${{secret.minio_password}}", region = "us-east-1" }}
"#,
        jobs = spark.join("jobs").display(),
        defaults = spark.join("spark-defaults.conf").display(),
    )
}

const SUITE: &str = r#"
service = "spark-master"

[[check]]
name = "raises"
[[check.step]]
spark.submit = { app = "/opt/spark/work-dir/jobs/fail.py", timeout = "3m" }

[[check]]
name = "wrong_s3_secret"
[[check.step]]
service = "minio"
s3.put = { bucket = "lake", key = "broken/orders.csv", body = "order_id,category,amount,quantity\n1,books,2.50,1\n" }
[[check.step]]
spark.submit = { app = "/opt/spark/work-dir/jobs/s3_aggregate.py", args = ["s3a://lake/broken/orders.csv", "s3a://lake/broken/out"], conf = { "spark.hadoop.fs.s3a.secret.key" = "not-the-secret-4f1e" }, timeout = "3m" }

[[check]]
name = "worker_runs"
[[check.step]]
service = "spark-worker"
exec = { cmd = ["true"] }

[[check]]
name = "cluster"
[[check.step]]
spark.cluster = { min_workers = 1 }
"#;

fn check<'a>(checks: &'a [Arc<Check>], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// The check's failure message; it must not pass, and must not take longer than `bound`.
fn fails(session: &Session, c: &Check, bound: Duration) -> String {
    let started = Instant::now();
    let err = session.trial(c).expect_err("must not pass");
    let took = started.elapsed();
    assert!(took < bound, "{} took {took:?}", c.name);
    err.message().unwrap_or_default().to_string()
}

#[test]
fn spark_jobs_and_cluster_fail_with_their_causes() {
    let dir = common::workdir("broken-spark", &platform(), &[("broken.toml", SUITE)]);
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    let all: BTreeSet<String> = checks.iter().map(|c| c.id()).collect();
    let session = Session::start(&spec, &checks, &all, None).expect("session");

    for name in ["worker_runs", "cluster"] {
        if let Err(e) = session.trial(check(&checks, name)) {
            panic!(
                "the cluster must be whole before it is broken: {name}: {}",
                e.message().unwrap_or_default()
            );
        }
    }

    let msg = fails(&session, check(&checks, "raises"), Duration::from_secs(120));
    assert!(
        msg.contains("fail.py failed (spark-submit exit code 1)"),
        "{msg}"
    );
    assert!(msg.contains("Traceback (most recent call last):"), "{msg}");
    assert!(
        msg.contains("ValueError: deliberate failure: the total is 3, not 7"),
        "{msg}"
    );

    let msg = fails(
        &session,
        check(&checks, "wrong_s3_secret"),
        Duration::from_secs(120),
    );
    assert!(msg.contains("s3_aggregate.py failed"), "{msg}");
    assert!(msg.contains("s3a://lake/broken/orders.csv"), "{msg}");
    // S3A's own words: the object could not be read, access denied with S3's 403.
    assert!(
        msg.contains("java.nio.file.AccessDeniedException: s3a://lake/broken/orders.csv"),
        "{msg}"
    );
    assert!(msg.contains("Status Code: 403"), "{msg}");
    assert!(msg.contains("Traceback (most recent call last):"), "{msg}");
    assert!(!msg.contains("\tat org.apache"), "no JVM frames: {msg}");

    let worker = format!("spark-worker-{}", session.run_id());
    let killed = Command::new("docker")
        .args(["kill", &worker])
        .output()
        .unwrap();
    assert!(killed.status.success(), "docker kill {worker}");
    // The master drops a worker whose connection closed; give it a moment to notice.
    let msg = (0..20)
        .find_map(|_| {
            let m = fails(&session, check(&checks, "cluster"), Duration::from_secs(30));
            if m.contains("0 alive workers") {
                Some(m)
            } else {
                std::thread::sleep(Duration::from_millis(500));
                None
            }
        })
        .expect("the master sees the worker gone within 10 s");
    assert!(msg.contains("expected at least 1"), "{msg}");
    session.finish();
    let _ = std::fs::remove_dir_all(dir);
}
