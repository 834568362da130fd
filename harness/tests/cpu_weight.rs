//! The scheduler starts the critical path with a larger CPU weight: of PostgreSQL and MinIO
//! (the default platform's, no dependency between them), PostgreSQL's longer expected start
//! is the run's long pole, so its container asks the kernel for more of the cores and
//! MinIO's does not. Both serve their checks. `PLATFORM_START=unweighted`, the benchmark's
//! reference, gives neither more.

mod common;

use std::sync::Arc;

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::platform::schedule::CRITICAL_CPU_SHARES;
use platform_harness::spec::{Check, Spec};

#[test]
fn the_long_pole_starts_with_more_cpu_weight() {
    let root = common::root();
    let spec = Spec::load(&root.join("fixtures/platform.toml"), &root.join("suites")).unwrap();
    let services = &spec.platform.services;
    assert!(
        services["postgres"].expected_ready > services["minio"].expected_ready,
        "the premise: PostgreSQL is expected to take longer than MinIO"
    );
    // A check of each service first, so both containers are there when the last one runs.
    let order = [
        ("postgres", "accepts_login"),
        ("s3", "platform_buckets_exist"),
        ("postgres", "answers_queries"),
    ];
    let checks: Vec<Arc<Check>> = order
        .iter()
        .map(|(suite, name)| {
            let check = spec.checks().find(|c| c.suite == *suite && c.name == *name);
            Arc::new(check.expect("in the suites").clone())
        })
        .collect();
    // One test for both modes: the setting is the process's environment.
    for (mode, postgres) in [("scheduled", CRITICAL_CPU_SHARES), ("unweighted", 0)] {
        std::env::set_var("PLATFORM_START", mode);
        let mut seen = None;
        let records = common::run_in_order(&spec, checks.clone(), |name, run_id| {
            if name == "answers_queries" {
                seen = Some(cpu_shares(run_id));
            }
        });
        for (name, r) in &records {
            assert_eq!(r.outcome, Outcome::Passed, "{mode}: {name}");
        }
        let seen = seen.expect("looked before the last check");
        assert_eq!(
            seen,
            [("minio".to_string(), 0), ("postgres".to_string(), postgres)],
            "{mode}: each container's CPU shares (0: the engine's default)"
        );
    }
}

/// Each container of the run by service, with the CPU shares the engine gave it.
fn cpu_shares(run_id: &str) -> Vec<(String, i64)> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let engine = docker::connect().unwrap();
        let ids = docker::run_containers(&engine, run_id).await.unwrap();
        let mut shares = Vec::new();
        for id in ids {
            let info = engine.inspect_container(&id, None).await.unwrap();
            let service = info
                .config
                .and_then(|c| c.hostname)
                .expect("a container hostname is its service");
            let cpu = info.host_config.and_then(|h| h.cpu_shares).unwrap_or(0);
            shares.push((service, cpu));
        }
        shares.sort();
        shares
    })
}
