//! Kafka checks against a broken Kafka: nothing listening, a broker advertising an address
//! clients cannot reach, a topic that gets too few messages, a frozen broker, a killed broker. Each asserts the verdict (failure or error),
//! that the message names kafka and the cause, and that it came within a bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use platform_harness::checks::{run_check, CheckRun, Outcome, Vars};
use platform_harness::platform::docker::run_labels;
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};
use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Runs every check of a suite (service `kafka`) against `127.0.0.1:port`, each bounded
/// so a hang fails the test instead of stalling it.
async fn run_suite(port: u16, suite: &str, bound: Duration) -> Vec<(String, CheckRun, Duration)> {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).unwrap();
    let suite = Suite::parse(Path::new("broken_kafka.toml"), suite, &platform).unwrap();
    let endpoint = Endpoint {
        service: "kafka".into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([("kafka".to_string(), port)]),
        params: BTreeMap::new(),
    };
    let endpoints = BTreeMap::from([("kafka".to_string(), endpoint)]);
    let mut out = Vec::new();
    for check in &suite.checks {
        let started = Instant::now();
        let run = tokio::time::timeout(bound, run_check(check, &endpoints, Vars::new()))
            .await
            .unwrap_or_else(|_| panic!("{} did not finish within {bound:?}", check.name));
        out.push((check.name.clone(), run, started.elapsed()));
    }
    out
}

fn errored(run: &CheckRun) -> &str {
    match &run.outcome {
        Outcome::Errored(m) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

const ALL_VERBS: &str = r#"
service = "kafka"
[[check]]
name = "topics"
[[check.step]]
kafka.topics = {}
[[check]]
name = "produce"
[[check.step]]
kafka.produce = { topic = "t", messages = [{ key = "k", value = "v" }] }
[[check]]
name = "consume"
[[check.step]]
kafka.consume = { topic = "t", count = 1, within = "20s" }
[[check]]
name = "roundtrip"
[[check.step]]
kafka.roundtrip = { messages = 10, partitions = 2 }
"#;

#[tokio::test]
async fn nothing_listening_is_an_error_naming_the_endpoint_within_seconds() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (name, run, took) in run_suite(port, ALL_VERBS, Duration::from_secs(20)).await {
        let msg = errored(&run);
        println!("{name}: {took:.1?}: {msg}");
        assert!(msg.contains(&format!("kafka at 127.0.0.1:{port}")), "{msg}");
        assert!(msg.contains("Connection refused"), "{msg}");
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
}

/// A broker as the harness starts it: the entrypoint waits for the advertised address,
/// which exists only once Docker has mapped the port.
async fn start_kafka() -> (ContainerAsync<GenericImage>, u16) {
    start_kafka_advertising(|port| format!("127.0.0.1:{port}")).await
}

/// As `start_kafka`, advertising `advertised(mapped port)` to clients.
async fn start_kafka_advertising(
    advertised: impl Fn(u16) -> String,
) -> (ContainerAsync<GenericImage>, u16) {
    let container = GenericImage::new("platform-kit/kafka", "3.9.1")
        .with_exposed_port(9092.tcp())
        .with_wait_for(WaitFor::message_on_stdout("waiting for kafka-advertise"))
        .with_labels(run_labels(&format!("broken-kafka-{}", std::process::id())))
        .with_env_var("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m")
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await
        .expect("starting platform-kit/kafka:3.9.1");
    let port = container.get_host_port_ipv4(9092.tcp()).await.unwrap();
    container
        .exec(
            ExecCommand::new(["kafka-advertise", &advertised(port)])
                .with_container_ready_conditions(vec![WaitFor::message_on_stdout(
                    "Kafka Server started",
                )]),
        )
        .await
        .expect("advertising the mapped port");
    (container, port)
}

const ROUNDTRIP: &str = r#"
service = "kafka"
[[check]]
name = "roundtrip"
[[check.step]]
kafka.roundtrip = { messages = 50, partitions = 3, within = "20s" }
capture = { produce_p50 = "$.produce_latency_ms.p50", e2e_max = "$.end_to_end_latency_ms.max", per_partition = "$.per_partition" }
"#;

const TOO_FEW: &str = r#"
service = "kafka"
[[check]]
name = "too_few"
[[check.step]]
kafka.produce = { topic = "quiet", messages = [{ value = "one" }, { value = "two" }] }
[[check.step]]
kafka.consume = { topic = "quiet", count = 5, within = "3s" }
[[check]]
name = "no_such_topic"
[[check.step]]
kafka.consume = { topic = "never-created", count = 1, within = "3s" }
"#;

/// The project's own broker_metadata check: it passes against a broker advertising its
/// mapped port, and is red naming the dead address against one advertising a port nobody
/// listens on (bootstrap still answers: only the advertised address is wrong).
#[tokio::test]
async fn a_broker_advertising_an_unreachable_address_fails_broker_metadata() {
    let suite = std::fs::read_to_string("../suites/kafka.toml").unwrap();
    let metadata_only = suite
        .split("[[check]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("[[check]]");
    let (good, port) = start_kafka().await;
    let [(_, run, _)] = run_suite(port, &metadata_only, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    assert_eq!(run.outcome, Outcome::Passed, "{run:?}");
    drop(good);

    // Port 1 on loopback: nothing listens there.
    let (_bad, port) = start_kafka_advertising(|_| "127.0.0.1:1".into()).await;
    let started = Instant::now();
    let [(_, run, _)] = run_suite(port, &metadata_only, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    // librdkafka races itself here: the metadata answer comes back over the bootstrap
    // connection (then the expectation fails on `reachable`), or the client has already
    // switched to the advertised address and the fetch errors naming it. Either way the
    // verdict is red and says where.
    match &run.outcome {
        Outcome::Failed(message) => assert!(
            message.contains("$.brokers[0].reachable") && message.contains("false"),
            "{message}"
        ),
        Outcome::Errored(message) => assert!(
            message.contains("fetching metadata") && message.contains("127.0.0.1:1"),
            "{message}"
        ),
        Outcome::Passed => panic!("passed against a broker advertising a dead port"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_real_broker_too_few_messages_then_frozen_then_killed() {
    let (container, port) = start_kafka().await;

    // The control: the same check passes while the broker is healthy.
    let [(_, run, took)] = run_suite(port, ROUNDTRIP, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    assert_eq!(run.outcome, Outcome::Passed);
    println!("healthy roundtrip in {took:.1?}: {:?}", run.vars);

    // Two messages arrive where five are expected, none from a topic that does not exist:
    // failures that say how many arrived, and why if the consumer was told.
    let [(_, run, took), (_, missing, _)] = run_suite(port, TOO_FEW, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    println!("too few in {took:.1?}: {:?}", run.outcome);
    match &run.outcome {
        Outcome::Failed(m) => {
            assert!(m.contains(&format!("kafka at 127.0.0.1:{port}")), "{m}");
            assert!(
                m.contains("received 2 of 5 messages from `quiet` within 3s"),
                "{m}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    println!("missing topic: {:?}", missing.outcome);
    match &missing.outcome {
        Outcome::Failed(m) => {
            assert!(
                m.contains("received 0 of 1 messages from `never-created`"),
                "{m}"
            );
            assert!(m.contains("Unknown topic or partition"), "{m}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }

    // A frozen broker accepts connections and never answers: bounded by the timeouts.
    container.pause().await.unwrap();
    let [(_, run, took)] = run_suite(port, ROUNDTRIP, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    let msg = errored(&run);
    println!("frozen in {took:.1?}: {msg}");
    assert!(msg.contains(&format!("kafka at 127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("fetching metadata"), "{msg}");
    // Either the metadata request times out, or librdkafka drops the silent connection
    // first (its transport failure); both are bounded errors with the cause.
    assert!(
        msg.contains("gave up after 12 s") || msg.contains("Broker transport failure"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    container.unpause().await.unwrap();

    // A killed broker: the port is gone.
    container.stop_with_timeout(Some(0)).await.unwrap();
    let [(_, run, took)] = run_suite(port, ROUNDTRIP, Duration::from_secs(30))
        .await
        .try_into()
        .unwrap();
    let msg = errored(&run);
    println!("killed in {took:.1?}: {msg}");
    assert!(msg.contains(&format!("kafka at 127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("Connection refused"), "{msg}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    container.rm().await.unwrap();
}

const HEADERS: &str = r#"
service = "kafka"
[[check]]
name = "ordered_headers"
[[check.step]]
kafka.produce = { topic = "headers", messages = [
  { key = "list", value = "1", headers = [{ key = "trace", value = "a" }, { key = "hop", value = "x" }, { key = "trace", value = "b" }] },
  { key = "map", value = "2", headers = { trace = "c" } },
] }
[[check.step]]
kafka.consume = { topic = "headers", count = 2, within = "15s" }
expect = [
  { path = "$.messages[0].header_list", equals_json = '[{"key": "trace", "value": "a"}, {"key": "hop", "value": "x"}, {"key": "trace", "value": "b"}]' },
  { path = "$.messages[0].headers", equals = { trace = "b", hop = "x" } },
  { path = "$.messages[1].header_list", equals_json = '[{"key": "trace", "value": "c"}]' },
  { path = "$.messages[1].headers.trace", equals = "c" },
]
[[check]]
name = "wrong_order"
[[check.step]]
kafka.consume = { topic = "headers", count = 1, within = "15s" }
expect = [{ path = "$.messages[0].header_list[*].value", count = 3 }, { path = "$.messages[0].header_list[0].value", equals = "b" }]
"#;

/// Repeated header names and their order survive produce and consume; the map form still
/// works, and a wrong expectation on the order fails naming what came.
#[tokio::test]
async fn headers_keep_repeated_names_and_order() {
    let (_kafka, port) = start_kafka().await;
    let runs = run_suite(port, HEADERS, Duration::from_secs(40)).await;
    let [(_, ordered, _), (_, wrong, _)] = &runs[..] else {
        panic!("two checks")
    };
    assert_eq!(ordered.outcome, Outcome::Passed);
    match &wrong.outcome {
        Outcome::Failed(m) => assert!(
            m.contains(r#"expected $.messages[0].header_list[0].value to equal "b", got "a""#),
            "{m}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
}
