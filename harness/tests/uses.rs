//! `uses`: a service that runs beside another without holding up its start. Here `pg`
//! uses `side`, a second PostgreSQL that takes seconds longer to be ready: `pg` starts at
//! once and is ready first, and its check still waits for `side`; when `side` fails, the
//! check errors naming it and what it logged, and `pg` itself started fine.

mod common;

use std::sync::Arc;

use platform_harness::checks::Outcome;
use platform_harness::report::CheckRecord;
use platform_harness::spec::{Check, Spec};

/// `pg` uses `side`; `side_tail` ends `side`'s table (its readiness, or a command).
fn platform(side_tail: &str) -> String {
    let common = "tmpfs = [\"/var/lib/postgresql/data\"]\nstartup_timeout = \"60s\"";
    format!(
        "[secrets]\npw = {{ default = \"uses-test-9d2c\" }}\n{}{}",
        common::postgres_service(
            "pg",
            &format!("{common}\n{}\nuses = [\"side\"]", common::POSTGRES_READY)
        ),
        common::postgres_service("side", &format!("{common}\n{side_tail}"))
    )
}

/// Runs `pg::login` on the platform; its record and the services' starts.
fn run(platform: &str) -> (CheckRecord, Vec<platform_harness::platform::ServiceStart>) {
    let dir = common::workdir("uses", platform, &[("pg.toml", common::PG_LOGIN_SUITE)]);
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    let checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    let selected = checks.iter().map(|c| c.id()).collect();
    let session = platform_harness::run::Session::start(&spec, &checks, &selected, None).unwrap();
    let _ = session.trial(&checks[0]);
    let report = session.finish();
    let _ = std::fs::remove_dir_all(&dir);
    (report.checks[0].clone(), report.services)
}

#[test]
fn the_start_goes_at_once_and_the_check_waits_for_what_it_uses() {
    // `side` is ready once a command that takes three seconds has also passed.
    let (login, services) = run(&platform(
        r#"ready = [{ log = "database system is ready to accept connections", times = 2 }, { command = ["sleep", "3"] }]"#,
    ));
    assert_eq!(login.outcome, Outcome::Passed, "{:?}", login.outcome);
    let ready_at = |name: &str| {
        let s = services.iter().find(|s| s.service == name).unwrap();
        s.ready_at
            .unwrap_or_else(|| panic!("{name} was ready: {:?}", s.failure))
    };
    assert!(
        ready_at("pg") < ready_at("side"),
        "pg did not wait for side to start: ready at {:?}, side at {:?}",
        ready_at("pg"),
        ready_at("side")
    );
    assert!(
        login.started_at >= ready_at("side"),
        "the check started at {:?}, before side was ready at {:?}",
        login.started_at,
        ready_at("side")
    );
}

#[test]
fn a_used_service_that_fails_errors_the_check_naming_it() {
    let (login, services) = run(&platform(
        r#"ready = [{ tcp = "sql" }]
command = ["sh", "-c", "echo side gives up >&2; exit 3"]"#,
    ));
    let Outcome::Errored(message) = &login.outcome else {
        panic!("expected an error, got {:?}", login.outcome);
    };
    assert!(
        message.contains("service `side` (used by `pg`: its checks cannot run without it)"),
        "{message}"
    );
    assert!(message.contains("exit code 3"), "the cause: {message}");
    assert!(message.contains("side gives up"), "side's log: {message}");
    let pg = services.iter().find(|s| s.service == "pg").unwrap();
    assert!(pg.failure.is_none(), "pg itself started: {:?}", pg.failure);
}
