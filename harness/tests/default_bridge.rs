//! A run's services get a network of its own only when they talk to one another: a
//! service alone starts on the engine's default bridge (no network to create and remove),
//! where a readiness condition that reaches its address still finds it.

mod common;

use std::sync::Arc;

use platform_harness::checks::Outcome;
use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

/// The networks the container of `service` in run `run_id` is attached to.
fn networks_of(service: &str, run_id: &str) -> Vec<String> {
    common::docker(&[
        "inspect",
        "--format",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        &format!("{service}-{run_id}"),
    ])
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// Starts `platform` with the suite's one check, runs it, and returns its outcome, the
/// networks of `pg`'s container and the run's own networks while the run was up.
fn run(name: &str, platform: &str) -> (Outcome, Vec<String>, Vec<String>, String) {
    let dir = common::workdir(name, platform, &[("pg.toml", common::PG_LOGIN_SUITE)]);
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    let selected = checks.iter().map(|c| c.id()).collect();
    let session = Session::start(&spec, &checks, &selected, None).unwrap();
    let _ = session.trial(&checks[0]);
    let run_id = session.run_id().to_string();
    let attached_to = networks_of("pg", &run_id);
    let label = format!("label=org.platform-harness.run={run_id}");
    let own = common::labelled("network", &label);
    let report = session.finish();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(common::labelled("container", &label), Vec::<String>::new());
    assert_eq!(common::labelled("network", &label), Vec::<String>::new());
    (report.checks[0].outcome.clone(), attached_to, own, run_id)
}

fn pg(extra: &str) -> String {
    let ready = r#"ready = [{ tcp = "sql" }, { log = "database system is ready to accept connections", times = 2 }]"#;
    common::postgres_service(
        "pg",
        &format!("tmpfs = [\"/var/lib/postgresql/data\"]\n{ready}\n{extra}"),
    )
}

#[test]
fn a_service_alone_starts_on_the_default_bridge() {
    let platform = format!(
        "[secrets]\npw = {{ default = \"bridge-test-5e1a\" }}\n{}",
        pg("")
    );
    let (outcome, attached_to, own, _) = run("bridge-alone", &platform);
    assert_eq!(outcome, Outcome::Passed, "{outcome:?}");
    assert_eq!(attached_to, vec!["bridge".to_string()]);
    assert_eq!(own, Vec::<String>::new(), "no network of the run");
}

#[test]
fn services_that_talk_share_a_network_of_the_run() {
    let platform = format!(
        "[secrets]\npw = {{ default = \"bridge-test-5e1a\" }}\n{}{}",
        pg("uses = [\"side\"]"),
        common::postgres_service(
            "side",
            &format!(
                "tmpfs = [\"/var/lib/postgresql/data\"]\n{}",
                common::POSTGRES_READY
            )
        )
    );
    let (outcome, attached_to, own, run_id) = run("bridge-shared", &platform);
    assert_eq!(outcome, Outcome::Passed, "{outcome:?}");
    assert_eq!(attached_to, vec![format!("platform-{run_id}")]);
    assert_eq!(own.len(), 1, "the run's network: {own:?}");
}
