//! A service's `tmpfs` paths are memory inside its container: the default platform's
//! PostgreSQL keeps its cluster there, initialised by the image's entrypoint, and its
//! checks pass on it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::spec::{Check, Spec};

const DATA: &str = "/var/lib/postgresql/data";

#[test]
fn the_postgres_cluster_lives_in_memory() {
    let root = common::root();
    let spec = Spec::load(&root.join("fixtures/platform.toml"), &root.join("suites")).unwrap();
    assert_eq!(
        spec.platform.services["postgres"].tmpfs,
        [DATA],
        "the default platform keeps the cluster in memory"
    );
    let checks: Vec<Arc<Check>> = spec
        .checks()
        .filter(|c| {
            c.suite == "postgres" && ["accepts_login", "answers_queries"].contains(&c.name.as_str())
        })
        .cloned()
        .map(Arc::new)
        .collect();
    assert_eq!(checks.len(), 2);
    let mut seen = None;
    let records = common::run_in_order(&spec, checks, |name, run_id| {
        // The first check waited for the start: the container is there now.
        if name == "answers_queries" {
            seen = Some(data_dir_filesystem(run_id));
        }
    });
    for (name, r) in &records {
        assert_eq!(r.outcome, Outcome::Passed, "{name}");
    }
    let (mount_type, filesystem, cluster) = seen.expect("looked before the second check");
    assert_eq!(mount_type, "tmpfs", "the engine mounted {DATA} as");
    assert_eq!(filesystem.trim(), "tmpfs", "the container sees {DATA} as");
    assert!(
        cluster.contains("PG_VERSION"),
        "initdb wrote there: {cluster}"
    );
}

/// The engine's mount type at `DATA`, and what the container sees there: its filesystem
/// type and its files.
fn data_dir_filesystem(run_id: &str) -> (String, String, String) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let engine = docker::connect().unwrap();
        let ids = docker::run_containers(&engine, run_id).await.unwrap();
        assert_eq!(ids.len(), 1, "one container in run {run_id}");
        let info = engine.inspect_container(&ids[0], None).await.unwrap();
        let mount_type = info
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(DATA))
            .and_then(|m| m.typ)
            .map(|t| t.to_string())
            .unwrap_or_else(|| "nothing".into());
        let run = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let engine = engine.clone();
            let id = ids[0].clone();
            async move {
                let (code, out) = docker::exec(&engine, &id, &argv, Duration::from_secs(10))
                    .await
                    .unwrap();
                assert_eq!(code, 0, "{argv:?}: {out}");
                out
            }
        };
        let filesystem = run(&["stat", "-f", "-c", "%T", DATA]).await;
        let cluster = run(&["ls", DATA]).await;
        (mount_type, filesystem, cluster)
    })
}
