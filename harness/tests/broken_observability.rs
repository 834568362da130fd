//! The redis, prometheus and opensearch kinds against broken services: a wrong password,
//! a killed server, a missing index, a scrape target that is down. Each asserts the
//! verdict (failure or error), that the message carries the service's own cause, and that
//! it came within a bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use platform_harness::checks::{run_check, CheckRun, Outcome, Vars};
use platform_harness::platform::docker::run_labels;
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

fn endpoint(service: &str, port_name: &str, port: u16, params: &[(&str, &str)]) -> Endpoint {
    Endpoint {
        service: service.into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([(port_name.to_string(), port)]),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// The one check of `suite` against `endpoint`, bounded so a hang fails the test.
async fn run_one(endpoint: Endpoint, suite: &str, bound: Duration) -> (CheckRun, Duration) {
    let platform =
        PlatformSpec::load(Path::new("../fixtures/platforms/observability.toml")).unwrap();
    let suite = Suite::parse(Path::new("broken.toml"), suite, &platform).unwrap();
    let endpoints = BTreeMap::from([(endpoint.service.clone(), endpoint)]);
    let started = Instant::now();
    let run = tokio::time::timeout(bound, run_check(&suite.checks[0], &endpoints, Vars::new()))
        .await
        .unwrap_or_else(|_| panic!("did not finish within {bound:?}"));
    (run, started.elapsed())
}

fn labelled(image: GenericImage) -> testcontainers::ContainerRequest<GenericImage> {
    let run = format!("broken-observability-{}", std::process::id());
    let mut req = image.with_label("org.platform-harness.test", "broken_observability");
    for (k, v) in run_labels(&run) {
        req = req.with_label(k, v);
    }
    req
}

async fn redis(password: &str) -> (ContainerAsync<GenericImage>, u16) {
    let c = labelled(
        GenericImage::new("platform-kit/redis", "7.0.15")
            .with_exposed_port(6379.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections")),
    )
    .with_env_var("REDIS_PASSWORD", password)
    .start()
    .await
    .expect("redis starts");
    let port = c.get_host_port_ipv4(6379.tcp()).await.unwrap();
    (c, port)
}

const PING: &str = "service = \"redis\"\n[[check]]\nname = \"ping\"\n[[check.step]]\nredis.roundtrip = { entries = 5 }\n";

/// The small round trip against Redis on `port`, logging in with `password`.
async fn redis_roundtrip(port: u16, password: &str) -> (CheckRun, Duration) {
    let ep = endpoint("redis", "redis", port, &[("password", password)]);
    run_one(ep, PING, Duration::from_secs(30)).await
}

#[tokio::test]
async fn redis_refuses_a_wrong_password_then_errors_once_killed() {
    let (container, port) = redis("right-password-3e1f").await;
    let (run, _) = redis_roundtrip(port, "right-password-3e1f").await;
    assert_eq!(run.outcome, Outcome::Passed, "the right password passes");

    let (run, took) = redis_roundtrip(port, "wrong-password-9a9a").await;
    match &run.outcome {
        Outcome::Errored(m) => {
            // The crate's handshake words it; the server said WRONGPASS.
            assert!(m.to_lowercase().contains("authentication failed"), "{m}");
            assert!(!m.contains("wrong-password-9a9a"), "{m}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(15), "{took:?}");

    container.stop().await.unwrap();
    let (run, took) = redis_roundtrip(port, "right-password-3e1f").await;
    match &run.outcome {
        Outcome::Errored(m) => assert!(
            m.contains(&format!("connecting to 127.0.0.1:{port}")),
            "{m}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test]
async fn opensearch_names_a_missing_index_and_a_dead_node() {
    let c = labelled(
        GenericImage::new("platform-kit/opensearch", "2.19.6")
            .with_exposed_port(9200.tcp())
            .with_wait_for(WaitFor::message_on_stdout("started")),
    )
    .with_env_var("discovery.type", "single-node")
    .start()
    .await
    .expect("opensearch starts");
    let port = c.get_host_port_ipv4(9200.tcp()).await.unwrap();
    let health = "service = \"opensearch\"\n[[check]]\nname = \"h\"\n[[check.step]]\nopensearch.health = {}\nwithin = \"60s\"\nexpect = [{ path = \"$.status\", matches = \"^(green|yellow)$\" }]\n";
    let (run, _) = run_one(
        endpoint("opensearch", "http", port, &[]),
        health,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(run.outcome, Outcome::Passed);

    let missing = "service = \"opensearch\"\n[[check]]\nname = \"m\"\n[[check.step]]\nopensearch.count = { index = \"no-such-index\" }\n";
    let (run, _) = run_one(
        endpoint("opensearch", "http", port, &[]),
        missing,
        Duration::from_secs(30),
    )
    .await;
    match &run.outcome {
        Outcome::Failed(m) => {
            assert!(m.contains("HTTP 404"), "{m}");
            assert!(
                m.contains("index_not_found_exception: no such index [no-such-index]"),
                "{m}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    c.stop().await.unwrap();
    let roundtrip = "service = \"opensearch\"\n[[check]]\nname = \"r\"\n[[check.step]]\nopensearch.roundtrip = { documents = 5 }\n";
    let (run, took) = run_one(
        endpoint("opensearch", "http", port, &[]),
        roundtrip,
        Duration::from_secs(60),
    )
    .await;
    match &run.outcome {
        Outcome::Errored(m) => assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Prometheus scrapes itself (up) and a `ghost` target nobody serves (down): a port on
/// the container's own loopback, so no name lookup leaves the machine.
const GHOST_CONFIG: &str = "global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{ targets: ['localhost:9090'] }]\n  - job_name: ghost\n    static_configs: [{ targets: ['127.0.0.1:9'] }]\n";

#[tokio::test]
async fn prometheus_names_the_target_that_is_down() {
    let c = labelled(
        GenericImage::new("platform-kit/prometheus", "2.42.0")
            .with_exposed_port(9090.tcp())
            .with_wait_for(WaitFor::message_on_stderr(
                "Server is ready to receive web requests",
            )),
    )
    .with_copy_to(
        "/etc/prometheus/prometheus.yml",
        GHOST_CONFIG.as_bytes().to_vec(),
    )
    .start()
    .await
    .expect("prometheus starts");
    let port = c.get_host_port_ipv4(9090.tcp()).await.unwrap();
    // Wait until the ghost's first scrape has failed, then ask for every target up.
    let suite = r#"service = "prometheus"
[[check]]
name = "all_up"
[[check.step]]
prometheus.targets = {}
within = "40s"
expect = [
  { path = "$.targets[?(@.health == 'down')]", count = 1 },
  { path = "$.targets[?(@.health == 'up')]", count = 1 },
]
[[check.step]]
prometheus.targets = { all_up = true }
"#;
    let (run, _) = run_one(
        endpoint("prometheus", "http", port, &[]),
        suite,
        Duration::from_secs(60),
    )
    .await;
    match &run.outcome {
        Outcome::Failed(m) => {
            assert!(
                m.contains("not every target is up: ghost 127.0.0.1:9 is down"),
                "{m}"
            );
            assert!(m.contains("connection refused"), "{m}");
            assert!(!m.contains("prometheus localhost:9090"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    let bad_query = "service = \"prometheus\"\n[[check]]\nname = \"q\"\n[[check.step]]\nprometheus.query = { query = \"sum(up\" }\n";
    let (run, _) = run_one(
        endpoint("prometheus", "http", port, &[]),
        bad_query,
        Duration::from_secs(20),
    )
    .await;
    match &run.outcome {
        Outcome::Failed(m) => assert!(m.contains("bad_data"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}
