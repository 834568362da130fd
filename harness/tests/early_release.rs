//! A service's container goes as soon as no check still to run needs it, while the rest
//! of the run goes on; a service another one uses stays until that one's checks ended.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_harness::checks::Outcome;
use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

/// Far above what a removal takes here (well under a second), so a slow engine does not
/// fail the test, and a container kept to the end does.
const REMOVAL_BOUND: Duration = Duration::from_secs(30);

fn running(service: &str, run_id: &str) -> bool {
    let name = format!("name=^{service}-{run_id}$");
    !common::docker(&["ps", "-q", "--filter", &name])
        .trim()
        .is_empty()
}

fn gone_within(service: &str, run_id: &str, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while Instant::now() < until {
        if !running(service, run_id) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn login_suite(service: &str) -> String {
    common::PG_LOGIN_SUITE.replace("\"pg\"", &format!("\"{service}\""))
}

fn pg(name: &str, extra: &str) -> String {
    common::postgres_service(
        name,
        &format!(
            "tmpfs = [\"/var/lib/postgresql/data\"]\n{}\n{extra}",
            common::POSTGRES_READY
        ),
    )
}

/// Two kit PostgreSQL services, `extra` added to the first.
fn platform(first: &str, second: &str, extra: &str) -> String {
    format!(
        "[secrets]\npw = {{ default = \"release-test-41c7\" }}\n{}{}",
        pg(first, extra),
        pg(second, "")
    )
}

/// A session over `platform` with a login check on each of `services`, in that order, and
/// its scratch folder.
fn session(name: &str, platform: &str, services: &[&str]) -> (Session, Vec<Arc<Check>>, PathBuf) {
    let suites: Vec<(String, String)> = services
        .iter()
        .map(|s| (format!("{s}.toml"), login_suite(s)))
        .collect();
    let suites: Vec<(&str, &str)> = suites
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    let dir = common::workdir(name, platform, &suites);
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = services
        .iter()
        .map(|s| {
            let c = spec
                .checks()
                .find(|c| c.suite == *s)
                .expect("its login check");
            Arc::new(c.clone())
        })
        .collect();
    let selected = checks.iter().map(|c| c.id()).collect();
    (
        Session::start(&spec, &checks, &selected, None).unwrap(),
        checks,
        dir,
    )
}

fn passes(session: &Session, check: &Check) {
    let outcome = session.trial(check);
    assert!(outcome.is_ok(), "{} did not pass: {outcome:?}", check.id());
}

#[test]
fn a_service_goes_once_its_last_check_ended() {
    let platform = platform("first", "second", "");
    let (session, checks, dir) = session("release-each", &platform, &["first", "second"]);
    let run_id = session.run_id().to_string();
    passes(&session, &checks[0]);
    assert!(
        gone_within("first", &run_id, REMOVAL_BOUND),
        "`first` had no check left to run, yet its container stayed"
    );
    assert!(
        running("second", &run_id),
        "`second` still has a check to run"
    );
    passes(&session, &checks[1]);
    let report = session.finish();
    let _ = std::fs::remove_dir_all(&dir);
    for s in &report.services {
        assert!(
            s.removed_at.is_some(),
            "{} went before the end: {s:?}",
            s.service
        );
    }
    assert!(report.checks.iter().all(|c| c.outcome == Outcome::Passed));
    assert!(report.cleanup.is_empty(), "{:?}", report.cleanup);
    let label = format!("label=org.platform-harness.run={run_id}");
    assert_eq!(common::labelled("container", &label), Vec::<String>::new());
    assert_eq!(common::labelled("network", &label), Vec::<String>::new());
}

#[test]
fn a_used_service_stays_until_its_users_checks_ended() {
    let platform = platform("user", "lake", "uses = [\"lake\"]");
    let (session, checks, dir) = session("release-used", &platform, &["lake", "user"]);
    let run_id = session.run_id().to_string();
    passes(&session, &checks[0]);
    // The first test shows a release takes far less than this here.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        running("lake", &run_id),
        "`lake` went while a check on `user`, which uses it, was still to run"
    );
    passes(&session, &checks[1]);
    assert!(gone_within("lake", &run_id, REMOVAL_BOUND));
    assert!(gone_within("user", &run_id, REMOVAL_BOUND));
    let report = session.finish();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(report.cleanup.is_empty(), "{:?}", report.cleanup);
    let label = format!("label=org.platform-harness.run={run_id}");
    assert_eq!(common::labelled("container", &label), Vec::<String>::new());
}
