//! The mlflow checks against broken services: a port where nothing listens, a real
//! tracking server whose artifact store is unreachable, and a run id that does not exist.
//! Each asserts the verdict and that the message names the service, the step and the cause.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use platform_harness::checks::{run_check, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// An MLflow server on SQLite (no PostgreSQL needed), artifacts served through it to
/// `artifacts`, removed when the returned container is dropped.
async fn mlflow(artifacts: &str, env: &[(&str, &str)]) -> (ContainerAsync<GenericImage>, u16) {
    let mut request = GenericImage::new("platform-kit/mlflow", "3.5.1")
        .with_exposed_port(5000.tcp())
        .with_wait_for(WaitFor::message_on_either_std("Uvicorn running on"))
        .with_cmd([
            "mlflow",
            "server",
            "--host",
            "0.0.0.0",
            "--port",
            "5000",
            "--workers",
            "1",
            "--backend-store-uri",
            "sqlite:////tmp/mlflow.db",
            "--artifacts-destination",
            artifacts,
            "--allowed-hosts",
            "*",
        ])
        .with_startup_timeout(Duration::from_secs(60));
    for (k, v) in env {
        request = request.with_env_var(*k, *v);
    }
    let container = request.start().await.expect("start mlflow");
    let port = container.get_host_port_ipv4(5000).await.expect("host port");
    (container, port)
}

fn endpoint(port: u16) -> BTreeMap<String, Endpoint> {
    let ep = Endpoint {
        service: "mlflow".into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([("http".to_string(), port)]),
        params: BTreeMap::new(),
    };
    BTreeMap::from([("mlflow".to_string(), ep)])
}

/// Runs a one-step check against MLflow at `port`.
async fn run(step: &str, port: u16) -> Outcome {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).expect("platform");
    let src = format!("service = \"mlflow\"\n[[check]]\nname = \"c\"\n[[check.step]]\n{step}\n");
    let suite = Suite::parse(Path::new("broken_mlflow.toml"), &src, &platform).expect("suite");
    run_check(&suite.checks[0], &endpoint(port), Vars::new())
        .await
        .outcome
}

fn assert_mentions(message: &str, parts: &[&str]) {
    eprintln!("message: {message}");
    for p in parts {
        assert!(message.contains(p), "expected {p:?} in: {message}");
    }
}

#[tokio::test]
async fn unreachable_port_is_an_error_naming_the_endpoint() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let outcome = run("mlflow.lifecycle = {}", port).await;
    let Outcome::Errored(message) = outcome else {
        panic!("expected an error, got {outcome:?}");
    };
    assert_mentions(
        &message,
        &[
            "on mlflow",
            &format!("mlflow (http://127.0.0.1:{port})"),
            "/api/2.0/mlflow/experiments/get-by-name",
            "onnect", // "error trying to connect: ... Connection refused"
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{message}");
}

#[tokio::test]
async fn broken_artifact_store_fails_the_upload_step() {
    // The object store's endpoint has nothing behind it: the tracking part works, every
    // artifact request the server proxies fails.
    let (_mlflow, port) = mlflow(
        "s3://missing-bucket/",
        &[
            ("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ACCESS_KEY_ID", "nobody"),
            ("AWS_SECRET_ACCESS_KEY", "nothing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ],
    )
    .await;
    let outcome = run(
        "mlflow.lifecycle = { params = 2, metrics = 1, steps = 3 }",
        port,
    )
    .await;
    let Outcome::Failed(message) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert_mentions(
        &message,
        &[
            "on mlflow",
            "artifact upload through the tracking server",
            "PUT http://127.0.0.1:",
            "/api/2.0/mlflow-artifacts/artifacts/",
            "/harness/sample.bin",
            "HTTP 500",
            "Internal Server Error",
            "an unhandled exception in the server; its log has the traceback",
        ],
    );
}

#[tokio::test]
async fn unknown_run_is_resource_does_not_exist() {
    let (_mlflow, port) = mlflow("/tmp/artifacts", &[]).await;
    let missing = "0123456789abcdef0123456789abcdef";
    let outcome = run(
        &format!("mlflow.get_run = {{ run_id = \"{missing}\" }}"),
        port,
    )
    .await;
    // The suite asked for a run that is not there: the step cannot judge, an error.
    let Outcome::Errored(message) = outcome else {
        panic!("expected an error, got {outcome:?}");
    };
    assert_mentions(
        &message,
        &[
            "on mlflow",
            &format!("reading run {missing}"),
            "HTTP 404 RESOURCE_DOES_NOT_EXIST",
            &format!("Run with id={missing} not found"),
        ],
    );
}

/// Several logged steps of a metric come back, every one, in step order; a wrong
/// expectation on them fails naming expected and actual.
#[tokio::test]
async fn metric_history_returns_every_step_in_order() {
    let (_mlflow, port) = mlflow("/tmp/artifacts", &[]).await;
    // Logged out of order; the history comes back in step order.
    let logged = r#"mlflow.experiment = { name = "history" }
capture = { exp = "$.experiment_id" }
[[check.step]]
mlflow.create_run = { experiment_id = "${exp}" }
capture = { run = "$.run_id" }
[[check.step]]
mlflow.log = { run_id = "${run}", step = 2, metrics = { loss = 0.25 } }
[[check.step]]
mlflow.log = { run_id = "${run}", step = 0, metrics = { loss = 1.0 } }
[[check.step]]
mlflow.log = { run_id = "${run}", step = 1, metrics = { loss = 0.5 } }
[[check.step]]
mlflow.metric_history = { run_id = "${run}", key = "loss" }"#;
    let passing = format!(
        "{logged}\nexpect = [\
         {{ path = \"$.count\", equals = 3 }}, \
         {{ path = \"$.steps\", equals = [0, 1, 2] }}, \
         {{ path = \"$.history[0].value\", equals = 1.0 }}, \
         {{ path = \"$.history[2]\", contains = \"timestamp\" }}, \
         {{ path = \"$.values[1:3]\", count = 2 }}]"
    );
    assert_eq!(run(&passing, port).await, Outcome::Passed);

    let failing =
        format!("{logged}\nexpect = [{{ path = \"$.values\", equals = [1.0, 0.25, 0.5] }}]");
    let Outcome::Failed(message) = run(&failing, port).await else {
        panic!("expected a failure");
    };
    assert_mentions(
        &message,
        &["expected $.values to equal [1.0,0.25,0.5], got [1.0,0.5,0.25]"],
    );
}
