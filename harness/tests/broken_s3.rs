//! The s3 checks against broken services: a wrong secret key and a missing bucket on a
//! real MinIO, and a port where nothing listens. Each asserts the verdict (an error: the
//! check could not judge) and that the message names the endpoint and the cause.

use std::collections::BTreeMap;
use std::path::Path;

use platform_harness::checks::{run_check, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const USER: &str = "broken-s3-admin";
const PASSWORD: &str = "broken-s3-secret-4c1d";

/// A MinIO with one bucket, removed when the returned container is dropped.
async fn minio() -> (ContainerAsync<GenericImage>, u16) {
    let container = GenericImage::new("platform-kit/minio", "RELEASE.2025-10-15T17-29-55Z")
        .with_exposed_port(9000.tcp())
        .with_wait_for(WaitFor::message_on_either_std(
            "platform-kit: buckets ready",
        ))
        .with_env_var("MINIO_ROOT_USER", USER)
        .with_env_var("MINIO_ROOT_PASSWORD", PASSWORD)
        .with_env_var("MINIO_DEFAULT_BUCKETS", "lake")
        .with_startup_timeout(std::time::Duration::from_secs(60))
        .start()
        .await
        .expect("start minio");
    let port = container.get_host_port_ipv4(9000).await.expect("host port");
    (container, port)
}

fn endpoint(port: u16, secret_key: &str) -> BTreeMap<String, Endpoint> {
    let ep = Endpoint {
        service: "minio".into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([("s3".to_string(), port)]),
        params: BTreeMap::from([
            ("access_key".to_string(), USER.to_string()),
            ("secret_key".to_string(), secret_key.to_string()),
            ("region".to_string(), "us-east-1".to_string()),
        ]),
    };
    BTreeMap::from([("minio".to_string(), ep)])
}

/// Runs the suite's only check; returns its outcome.
async fn run(step: &str, endpoints: &BTreeMap<String, Endpoint>) -> Outcome {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).expect("platform");
    let src = format!("service = \"minio\"\n[[check]]\nname = \"c\"\n[[check.step]]\n{step}\n");
    let suite = Suite::parse(Path::new("broken_s3.toml"), &src, &platform).expect("suite");
    run_check(&suite.checks[0], endpoints, Vars::new())
        .await
        .outcome
}

fn errored(outcome: Outcome) -> String {
    match outcome {
        Outcome::Errored(m) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_secret_key_names_the_s3_error_code() {
    let (_minio, port) = minio().await;
    // Control: with the right key the same step passes, so the key is the only cause.
    let ok = run("s3.list_buckets = {}", &endpoint(port, PASSWORD)).await;
    assert_eq!(ok, Outcome::Passed);

    let msg = errored(run("s3.list_buckets = {}", &endpoint(port, "not-the-secret")).await);
    println!("{msg}");
    assert!(
        msg.contains(&format!("minio (http://127.0.0.1:{port})")),
        "{msg}"
    );
    assert!(msg.contains("ListBuckets"), "{msg}");
    assert!(msg.contains("SignatureDoesNotMatch (HTTP 403)"), "{msg}");
    assert!(!msg.contains("not-the-secret"), "{msg}");

    // The round trip stops at its first call, with the same cause.
    let msg = errored(run("s3.bucket = {}", &endpoint(port, "not-the-secret")).await);
    assert!(msg.contains("CreateBucket harness-"), "{msg}");
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
}

#[tokio::test]
async fn missing_bucket_is_no_such_bucket() {
    let (_minio, port) = minio().await;
    let endpoints = endpoint(port, PASSWORD);
    let msg = errored(
        run(
            r#"s3.get = { bucket = "no-such-bucket", key = "a.txt" }"#,
            &endpoints,
        )
        .await,
    );
    println!("{msg}");
    assert!(
        msg.contains(&format!("minio (http://127.0.0.1:{port})")),
        "{msg}"
    );
    assert!(
        msg.contains("GetObject no-such-bucket/a.txt: NoSuchBucket (HTTP 404)"),
        "{msg}"
    );
    assert!(msg.contains("bucket does not exist"), "{msg}");
    // The request id finds the request in MinIO's log; no Debug dump of the SDK's error.
    assert!(msg.contains("(request id "), "{msg}");
    assert!(
        !msg.contains("ServiceError") && !msg.contains("Some("),
        "{msg}"
    );

    // A missing key in an existing bucket is told apart.
    let msg = errored(
        run(
            r#"s3.get = { bucket = "lake", key = "absent" }"#,
            &endpoints,
        )
        .await,
    );
    assert!(msg.contains("NoSuchKey (HTTP 404)"), "{msg}");
}

/// Binary bodies, content type and user metadata go in and come back; the get's
/// expectations fail, saying so, when the bytes differ.
#[tokio::test]
async fn binary_objects_with_metadata_round_trip() {
    let (_minio, port) = minio().await;
    let endpoints = endpoint(port, PASSWORD);
    // Bytes that are not UTF-8 (0xff), with a NUL in the middle.
    let put = r#"s3.put = { bucket = "lake", key = "bin/a.dat", body_base64 = "AP8QAP4=", content_type = "application/x-harness", metadata = { owner = "data-team", batch = "7" } }
capture = { put_etag = "$.etag" }
[[check.step]]"#;
    let get = |expect: &str| {
        format!("{put}\ns3.get = {{ bucket = \"lake\", key = \"bin/a.dat\" }}\nexpect = [{expect}]")
    };
    let passing = get(r#"{ path = "$.body_base64", equals = "AP8QAP4=" },
           { path = "$.body", exists = false },
           { path = "$.size", equals = 5 },
           { path = "$.content_type", equals = "application/x-harness" },
           { path = "$.metadata", equals = { owner = "data-team", batch = "7" } },
           { path = "$.etag", equals = "${put_etag}" }"#);
    assert_eq!(run(&passing, &endpoints).await, Outcome::Passed);

    let failing = get(r#"{ path = "$.body_base64", equals = "AP8QAP8=" }"#);
    match run(&failing, &endpoints).await {
        Outcome::Failed(msg) => assert!(
            msg.contains(r#"expected $.body_base64 to equal "AP8QAP8=", got "AP8QAP4=""#),
            "{msg}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }

    // Text stays text: `body`, no `body_base64`.
    let text = r#"s3.put = { bucket = "lake", key = "t.txt", body = "héllo" }
[[check.step]]
s3.get = { bucket = "lake", key = "t.txt" }
expect = [{ path = "$.body", equals = "héllo" }, { path = "$.body_base64", exists = false }, { path = "$.metadata", count = 0 }]"#;
    assert_eq!(run(text, &endpoints).await, Outcome::Passed);

    // A body that is not base64 is the suite's mistake: an error, before any request.
    let msg = errored(
        run(
            r#"s3.put = { bucket = "lake", key = "x", body_base64 = "AP*=" }"#,
            &endpoints,
        )
        .await,
    );
    assert!(msg.contains("`body_base64` is not base64"), "{msg}");
}

#[tokio::test]
async fn unreachable_port_names_the_endpoint() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let msg = errored(run("s3.list_buckets = {}", &endpoint(port, PASSWORD)).await);
    println!("{msg} ({:?})", started.elapsed());
    assert!(
        msg.contains(&format!("minio (http://127.0.0.1:{port})")),
        "{msg}"
    );
    assert!(msg.contains("dispatch failure"), "{msg}");
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");
}
