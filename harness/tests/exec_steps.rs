//! `exec` steps against a real container: a command's output as JSON, a non-zero exit as
//! a failure with the command's own words, a command that hangs bounded by its timeout.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_harness::checks::Outcome;
use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

mod common;

const SUITE: &str = r#"
service = "postgres"

[[check]]
name = "json_output"
[[check.step]]
exec = { cmd = ["psql", "-U", "platform", "-tAc", "SELECT json_build_object('answer', 6 * 7)"] }
expect = [{ path = "$.json.answer", equals = 42 }, { path = "$.exit_code", equals = 0 }]

[[check]]
name = "non_zero_exit"
[[check.step]]
exec = { cmd = ["psql", "-U", "platform", "-tAc", "SELECT * FROM no_such_table"] }

[[check]]
name = "hangs"
[[check.step]]
exec = { cmd = ["sleep", "600"], timeout = "2s" }

[[check]]
name = "no_such_program"
[[check.step]]
exec = { cmd = ["no-such-cli", "--version"] }
"#;

#[test]
fn exec_steps_in_a_real_container() {
    let dir = std::env::temp_dir().join(format!("harness-exec-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        common::postgres_platform("{ default = \"exec-test-pw-4c1d\" }"),
    )
    .unwrap();
    std::fs::write(dir.join("suites/exec.toml"), SUITE).unwrap();
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    let selected: BTreeSet<String> = checks.iter().map(|c| c.id()).collect();
    let session = Arc::new(Session::start(&spec, &checks, &selected, None).expect("session"));
    let started = Instant::now();
    let report = session.run_concurrently(&checks, 4, None);
    let outcome = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.outcome.clone())
            .unwrap_or_else(|| panic!("no record of {name}"))
    };
    assert_eq!(outcome("json_output"), Outcome::Passed);
    match outcome("non_zero_exit") {
        Outcome::Failed(m) => {
            assert!(m.contains("exited with code 1"), "{m}");
            assert!(
                m.contains("relation \"no_such_table\" does not exist"),
                "{m}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    match outcome("hangs") {
        Outcome::Errored(m) => assert!(m.contains("did not finish within 2s"), "{m}"),
        other => panic!("expected an error, got {other:?}"),
    }
    match outcome("no_such_program") {
        Outcome::Failed(m) => assert!(m.contains("no-such-cli"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // The hang is cut at its timeout, not waited out.
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(dir);
}
