//! A run keeps its checks' times for the next run's start scheduler: the time of a check
//! that passed, not of one that failed, and the times of checks it did not run stay.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use platform_harness::checks::Outcome;
use platform_harness::run::check_times::CheckTimes;
use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

const SUITE: &str = r#"
service = "postgres"

[[check]]
name = "slow"
[[check.step]]
postgres.query.sql = "SELECT pg_sleep(0.6)"

[[check]]
name = "broken"
[[check.step]]
postgres.query.sql = "SELECT * FROM no_such_table"
"#;

#[test]
fn a_run_keeps_the_times_of_its_passed_checks() {
    let dir = common::workdir(
        "check-times",
        &common::postgres_platform(r#"{ default = "times-test-4b1e" }"#),
        &[("pg.toml", SUITE)],
    );
    let file = dir.join("times/platform.json");
    let earlier: CheckTimes =
        serde_json::from_str(r#"{"checks": {"pg::broken": 1.5, "other::kept": 3.0}}"#).unwrap();
    earlier.save(&file).unwrap();

    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    let selected: BTreeSet<String> = checks.iter().map(|c| c.id()).collect();
    let session = Session::start_on(&spec, &checks, &selected, None, None, Some(&file)).unwrap();
    for c in &checks {
        let _ = session.trial(c);
    }
    let report = session.finish();
    let outcome = |name: &str| {
        let r = report.checks.iter().find(|r| r.name == name).unwrap();
        r.outcome.clone()
    };
    assert_eq!(outcome("slow"), Outcome::Passed);
    let broken = outcome("broken");
    assert!(
        matches!(&broken, Outcome::Errored(m) | Outcome::Failed(m) if m.contains("no_such_table")),
        "does not pass, with PostgreSQL's cause: {broken:?}"
    );

    let kept = CheckTimes::load(&file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let slow = kept
        .get("pg::slow")
        .expect("the passed check's time is kept");
    assert!(
        slow >= Duration::from_millis(600) && slow < Duration::from_secs(30),
        "{slow:?}"
    );
    assert_eq!(
        kept.get("pg::broken"),
        Some(Duration::from_secs_f64(1.5)),
        "a failed check leaves its earlier time"
    );
    assert_eq!(kept.get("other::kept"), Some(Duration::from_secs(3)));
}
