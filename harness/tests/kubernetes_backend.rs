//! The start of the Kubernetes backend against the kit's cluster (fixtures/k8s/cluster up):
//! the observability platform's Redis in a run namespace, ready, checked through a
//! port-forward by the same suite step as on containers, and the namespace gone after;
//! a namespace whose owner process is dead is reaped, a live one kept; `platform-verify run`
//! with `PLATFORM_BACKEND=kubernetes` passes the postgres suite, fails a failing check, and
//! leaves no namespace either way; an unknown backend is refused by name. Without a running
//! cluster the cluster tests say so and return.

mod kube_common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use platform_harness::checks::{run_check, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::platform::kubernetes::run::start_all;
use platform_harness::platform::kubernetes::{namespace_for, reap, KubePlatform};
use platform_harness::platform::reaper::{Owner, LABEL_RUN};
use platform_harness::secrets::Secrets;
use platform_harness::spec::{PlatformSpec, Suite};
use serde_json::json;

use kube_common::cluster;

async fn namespace_exists(client: &Client, name: &str) -> bool {
    Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .expect("the API answers")
        .is_some_and(|ns| ns.status.and_then(|s| s.phase).as_deref() != Some("Terminating"))
}

#[tokio::test]
async fn redis_starts_in_a_run_namespace_answers_through_a_port_forward_and_goes() {
    let Some(client) = cluster().await else {
        return;
    };
    let platform =
        PlatformSpec::load(Path::new("../fixtures/platforms/observability.toml")).unwrap();
    let redis = &platform.services["redis"];
    let run = format!(
        "k8s-backend-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let kp = KubePlatform::create(client.clone(), &run)
        .await
        .expect("a run namespace");
    let password = "k8s-backend-pw-5c1e";
    let env = BTreeMap::from([("REDIS_PASSWORD".to_string(), password.to_string())]);
    kp.start(redis, &env, &[], &[])
        .await
        .expect("the objects are created");
    let started = std::time::Instant::now();
    kp.wait_ready(redis, started + redis.startup_timeout)
        .await
        .expect("redis gets ready");
    eprintln!("redis ready in {:?} on Kubernetes", started.elapsed());
    let ports = kp.forward(redis).await.expect("a port-forward");

    let endpoint = Endpoint {
        service: "redis".into(),
        host: "127.0.0.1".into(),
        ports: ports.clone(),
        params: BTreeMap::from([("password".into(), password.into())]),
    };
    let suite = "service = \"redis\"\n[[check]]\nname = \"r\"\n[[check.step]]\nredis.roundtrip = { entries = 5 }\n";
    let suite = Suite::parse(Path::new("k8s.toml"), suite, &platform).unwrap();
    let endpoints = BTreeMap::from([("redis".to_string(), endpoint)]);
    let run_result = tokio::time::timeout(
        Duration::from_secs(60),
        run_check(&suite.checks[0], &endpoints, Vars::new()),
    )
    .await
    .expect("the check finishes");
    assert_eq!(run_result.outcome, Outcome::Passed);

    kp.delete().await.expect("the namespace is deleted");
    let started = Instant::now();
    while namespace_exists(&client, &kp.namespace).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} still there",
            kp.namespace
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The forward's listener went with it.
    let port = ports["redis"];
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "port {port} still open"
    );
}

/// A run namespace as another process would have left it.
async fn namespace_of(client: &Client, name: &str, owner: &Owner) {
    let annotations: HashMap<String, String> = owner.labels().into_iter().collect();
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { LABEL_RUN: name }, "annotations": annotations },
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("a namespace");
}

#[tokio::test]
async fn a_dead_runs_namespace_is_reaped_and_a_live_ones_kept() {
    let Some(client) = cluster().await else {
        return;
    };
    let me = Owner::this_process();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let dead = namespace_for(&format!("dead-{id}"));
    let live = namespace_for(&format!("live-{id}"));
    // PID 4194304 is above Linux's maximum: nobody owns it.
    namespace_of(
        &client,
        &dead,
        &Owner {
            pid: 4_194_304,
            ..me.clone()
        },
    )
    .await;
    namespace_of(&client, &live, me).await;

    let reaped = reap(&client).await.expect("reaping works");
    assert!(reaped.contains(&dead), "{reaped:?}");
    assert!(!reaped.contains(&live), "{reaped:?}");
    assert!(!namespace_exists(&client, &dead).await);
    assert!(namespace_exists(&client, &live).await);
    Api::<Namespace>::all(client)
        .delete(&live, &DeleteParams::default())
        .await
        .expect("the live one is removed by its owner");
}

/// The observability platform's redis-exporter and, through `depends_on`, Redis: started in
/// order, the exporter finding Redis by its Service name, ready by its HTTP condition (body
/// `redis_up 1`) through the forward; the same suite step as on containers passes.
#[tokio::test]
async fn a_platform_file_starts_in_dependency_order_and_its_suite_step_passes() {
    let Some(client) = cluster().await else {
        return;
    };
    let platform =
        PlatformSpec::load(Path::new("../fixtures/platforms/observability.toml")).unwrap();
    let secrets = Secrets::resolve(&platform.secrets, platform.base_dir()).unwrap();
    let run = format!(
        "k8s-run-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let needed = BTreeSet::from(["redis-exporter".to_string()]);
    let started = start_all(client.clone(), &platform, &needed, &secrets, &run)
        .await
        .expect("redis and its exporter start");
    eprintln!("ready on Kubernetes: {:?}", started.ready_in);
    assert_eq!(
        started.ready_in.keys().collect::<Vec<_>>(),
        ["redis", "redis-exporter"]
    );

    let suite = "service = \"redis\"\n[[check]]\nname = \"r\"\n[[check.step]]\nredis.roundtrip = { entries = 5 }\n";
    let suite = Suite::parse(Path::new("k8s.toml"), suite, &platform).unwrap();
    let run_result = tokio::time::timeout(
        Duration::from_secs(60),
        run_check(&suite.checks[0], &started.endpoints, Vars::new()),
    )
    .await
    .expect("the check finishes");
    assert_eq!(run_result.outcome, Outcome::Passed);
    started
        .platform
        .delete()
        .await
        .expect("the namespace is deleted");
    assert!(!namespace_exists(&client, &started.platform.namespace).await);
}

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");

/// How a run asks for the backend: `PLATFORM_BACKEND` or `--backend`.
#[derive(Clone, Copy)]
enum Ask {
    Env,
    Flag,
}

/// `platform-verify run` of the default platform on the cluster with the suites of `dir`:
/// its exit code, its output, and the run's namespace (from "run <id>: starting").
fn run_on_kubernetes(dir: &Path, ask: Ask) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    // A cold run: a developer's `up` platform of this checkout would otherwise be used.
    cmd.current_dir("..")
        .env("PLATFORM_UP", "off")
        .args(["run", "--platform", "fixtures/platform.toml", "--suites"])
        .arg(dir.join("suites"))
        .arg("--junit")
        .arg(dir.join("junit.xml"));
    match ask {
        Ask::Env => cmd.env("PLATFORM_BACKEND", "kubernetes"),
        Ask::Flag => cmd
            .env_remove("PLATFORM_BACKEND")
            .args(["--backend", "kubernetes"]),
    };
    let out = cmd.output().expect("platform-verify runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run_id = text
        .split("platform: run ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("no run id in:\n{text}"))
        .to_string();
    (out.status.code(), text, namespace_for(&run_id))
}

/// Deletion is asynchronous (the API server empties the namespace first): bounded wait.
async fn gone_within(client: &Client, namespace: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if Api::<Namespace>::all(client.clone())
            .get_opt(namespace)
            .await
            .expect("the API answers")
            .is_none()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

fn suites_dir(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("k8s-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join("suites").join(file), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_postgres_suite_passes_on_the_backend_and_its_namespace_goes() {
    let Some(client) = cluster().await else {
        return;
    };
    let postgres = std::fs::read_to_string("../suites/postgres.toml").unwrap();
    let dir = suites_dir("pass", &[("postgres.toml", &postgres)]);
    let (code, text, namespace) =
        tokio::task::spawn_blocking(move || run_on_kubernetes(&dir, Ask::Env))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("postgres ready in") && text.contains("(kubernetes)"),
        "{text}"
    );
    assert!(!text.contains("FAILED"), "{text}");
    assert!(
        gone_within(&client, &namespace, Duration::from_secs(90)).await,
        "{namespace} still there after the run"
    );
}

#[tokio::test]
async fn a_failing_check_on_the_backend_fails_the_run_and_its_namespace_goes() {
    let Some(client) = cluster().await else {
        return;
    };
    let suite = r#"service = "postgres"
[[check]]
name = "logs_in"
[[check.step]]
postgres.connect = {}
expect = [{ path = "$.user", equals = "platform" }]
[[check]]
name = "wrong_answer"
[[check.step]]
postgres.query.sql = "SELECT 1 AS one"
expect = [{ path = "$.rows[0].one", equals = 2 }]
"#;
    let dir = suites_dir("fail", &[("pgfail.toml", suite)]);
    let junit = dir.join("junit.xml");
    let (code, text, namespace) =
        tokio::task::spawn_blocking(move || run_on_kubernetes(&dir, Ask::Flag))
            .await
            .unwrap();
    assert_ne!(code, Some(0), "{text}");
    let report = std::fs::read_to_string(&junit).expect("JUnit written");
    assert_eq!(report.matches("<failure").count(), 1, "{report}");
    assert!(report.contains("wrong_answer"), "{report}");
    assert!(
        gone_within(&client, &namespace, Duration::from_secs(90)).await,
        "{namespace} still there after the failing run"
    );
}

/// No cluster needed: the value is refused before anything starts.
#[test]
fn an_unknown_backend_is_refused_by_name() {
    let out = std::process::Command::new(BIN)
        .current_dir("..")
        .env("PLATFORM_BACKEND", "nomad")
        .args([
            "run",
            "--platform",
            "fixtures/platform.toml",
            "--suites",
            "suites",
        ])
        .output()
        .expect("platform-verify runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("PLATFORM_BACKEND=\"nomad\""), "{text}");
    assert!(
        text.contains("`containers`") && text.contains("`kubernetes`"),
        "{text}"
    );
    assert!(!text.contains("starting"), "nothing starts: {text}");

    // The flag is refused the same way, by clap, with bad input's exit code.
    let out = std::process::Command::new(BIN)
        .current_dir("..")
        .env_remove("PLATFORM_BACKEND")
        .args(["run", "--backend", "nomad"])
        .output()
        .expect("platform-verify runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("`nomad`") && said.contains("`kubernetes`"),
        "{said}"
    );
}
