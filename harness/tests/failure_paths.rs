//! The harness's own failure paths against real containers: a service that never gets
//! ready, a wrong password, a panic mid-run. Each asserts the verdict, the reason, and
//! that nothing of the run is left on the engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::report::junit;
use platform_harness::run::Session;
use platform_harness::spec::{Check, Spec};

const POSTGRES: &str = r#"
[services.{name}]
image = "platform-kit/postgres:15"
env = { POSTGRES_USER = "platform", POSTGRES_PASSWORD = "${secret.real}" }
ports = { sql = 5432 }
ready = [{ log = "{ready}", times = {times} }]
startup_timeout = "{timeout}"
endpoint = { user = "platform", password = "${secret.{login}}" }
"#;

fn postgres(name: &str, ready: &str, times: u32, timeout: &str, login: &str) -> String {
    POSTGRES
        .replace("{name}", name)
        .replace("{ready}", ready)
        .replace("{times}", &times.to_string())
        .replace("{timeout}", timeout)
        .replace("{login}", login)
}

const SECRETS: &str = r#"
[secrets]
real = { default = "real-secret-9f8e7d" }
wrong = { default = "wrong-secret-1a2b3c" }
"#;

const READY: &str = "database system is ready to accept connections";

/// A platform and one suite in a temporary directory, loaded like the real ones.
fn spec(services: &str, suite: &str) -> (Spec, PathBuf) {
    let dir = std::env::temp_dir().join(format!("harness-fp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("platform.toml"), format!("{SECRETS}{services}")).unwrap();
    std::fs::write(dir.join("suites/t.toml"), suite).unwrap();
    let spec = Spec::load(&dir.join("platform.toml"), &dir.join("suites")).unwrap();
    (spec, dir)
}

fn checks(spec: &Spec) -> Vec<Arc<Check>> {
    spec.checks().cloned().map(Arc::new).collect()
}

/// Every check of `spec`, a session started for all of them, and its run id.
fn start_all(spec: &Spec) -> (Vec<Arc<Check>>, Session, String) {
    let checks = checks(spec);
    let session = Session::start(spec, &checks, &all(&checks), None).unwrap();
    let run_id = session.run_id().to_string();
    (checks, session, run_id)
}

fn all(checks: &[Arc<Check>]) -> BTreeSet<String> {
    checks.iter().map(|c| c.id()).collect()
}

fn containers_of(run_id: &str) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        docker::run_containers(&docker::connect().unwrap(), run_id)
            .await
            .expect("the engine must answer: \"nothing left\" cannot be assumed")
            .len()
    })
}

#[test]
fn a_never_ready_service_fails_its_checks_with_condition_and_logs_while_others_pass() {
    let services = postgres("stuck", "this line never appears", 1, "4s", "real")
        + &postgres("healthy", READY, 2, "60s", "real");
    let suite = r#"
[[check]]
name = "needs_stuck"
service = "stuck"
[[check.step]]
postgres.connect = {}

[[check]]
name = "needs_healthy"
service = "healthy"
[[check.step]]
postgres.connect = {}
"#;
    let (spec, _dir) = spec(&services, suite);
    let (checks, session, run_id) = start_all(&spec);

    let stuck = session.trial(&checks[0]).unwrap_err();
    let msg = stuck.message().unwrap_or_default().to_string();
    assert!(msg.starts_with("ERROR: service `stuck`"), "{msg}");
    assert!(
        msg.contains(
            "not ready: waited 4 s (its startup timeout) for log line `this line never appears`: seen 0 of 1 times"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("last log lines of stuck") && msg.contains("database system"),
        "{msg}"
    );
    assert!(
        session.trial(&checks[1]).is_ok(),
        "checks not needing it still run"
    );

    let report = session.finish();
    assert!(matches!(report.checks[0].outcome, Outcome::Errored(_)));
    let stuck_start = report
        .services
        .iter()
        .find(|s| s.service == "stuck")
        .unwrap();
    assert!(stuck_start.failure.is_some() && !stuck_start.log_tail.is_empty());
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}

#[test]
fn a_wrong_password_turns_the_report_red_with_the_reason_and_no_secret() {
    let (spec, dir) = spec(
        &postgres("postgres", READY, 2, "60s", "wrong"),
        "[[check]]\nname = \"login\"\n[[check.step]]\npostgres.connect = {}\n",
    );
    let (checks, session, run_id) = start_all(&spec);
    let failed = session.trial(&checks[0]).unwrap_err();
    let report = session.finish();

    let msg = failed.message().unwrap_or_default();
    assert!(
        msg.contains("password authentication failed for user \"platform\""),
        "{msg}"
    );
    let masker =
        platform_harness::secrets::Secrets::resolve(&spec.platform.secrets, Path::new("."))
            .unwrap()
            .masker();
    let path = dir.join("junit.xml");
    junit::write(&report, &masker, &path).unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.contains("<error message=\"step 1"), "{xml}");
    assert!(xml.contains("password authentication failed"), "{xml}");
    for secret in ["real-secret-9f8e7d", "wrong-secret-1a2b3c"] {
        assert!(!xml.contains(secret), "secret leaked into the JUnit file");
        assert!(!msg.contains(secret), "secret leaked into the console");
    }
    drop(session);
    assert_eq!(containers_of(&run_id), 0);
}

#[test]
fn a_panic_mid_run_leaves_nothing_behind() {
    let (spec, _dir) = spec(
        &postgres("postgres", READY, 2, "60s", "real"),
        "[[check]]\nname = \"login\"\n[[check.step]]\npostgres.connect = {}\n",
    );
    let checks = checks(&spec);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let session = Session::start(&spec, &checks, &all(&checks), None).unwrap();
        tx.send(session.run_id().to_string()).unwrap();
        session.trial(&checks[0]).unwrap();
        panic!("a bug in the middle of a run");
    });
    let run_id = rx.recv().unwrap();
    assert!(worker.join().is_err(), "the thread panicked");
    assert_eq!(
        containers_of(&run_id),
        0,
        "the panic's unwinding removed the run"
    );
}

/// A base image container whose readiness command never returns.
const HANGING: &str = r#"
[services.hang]
image = "platform-kit/base:bookworm"
command = ["sleep", "infinity"]
ports = { any = 7 }
ready = [{ command = ["sleep", "infinity"] }]
startup_timeout = "5s"
endpoint = { user = "nobody" }
"#;

#[test]
fn a_readiness_command_that_never_returns_fails_the_service_within_its_timeout() {
    let (spec, _dir) = spec(
        HANGING,
        "[[check]]\nname = \"needs_hang\"\nservice = \"hang\"\n[[check.step]]\npostgres.connect = {}\n",
    );
    let checks = checks(&spec);
    let started = Instant::now();
    let session = Session::start(&spec, &checks, &all(&checks), None).unwrap();
    let run_id = session.run_id().to_string();
    let err = session.trial(&checks[0]).unwrap_err();
    let verdict_after = started.elapsed();
    let msg = err.message().unwrap_or_default().to_string();
    eprintln!("verdict after {verdict_after:?}: {msg}");
    assert!(
        verdict_after < Duration::from_secs(5 + 5),
        "took {verdict_after:?}"
    );
    assert!(msg.starts_with("ERROR: service `hang` not ready"), "{msg}");
    assert!(
        msg.contains(
            "command `sleep infinity` to exit 0: last run: `sleep infinity` did not finish within"
        ),
        "{msg}"
    );
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}

/// `app` needs `db`; nothing in `app` listens, so its check cannot connect.
const APP_ON_DB: &str = r#"
[services.app]
image = "platform-kit/base:bookworm"
command = ["sleep", "infinity"]
depends_on = ["db"]
ports = { sql = 5432 }
ready = [{ command = ["true"] }]
startup_timeout = "20s"
endpoint = { user = "platform", password = "${secret.real}" }
"#;

#[test]
fn a_check_through_a_dependency_that_was_killed_names_the_exit_and_carries_its_logs() {
    let services = postgres("db", READY, 2, "60s", "real") + APP_ON_DB;
    let suite = r#"
[[check]]
name = "db_up"
service = "db"
[[check.step]]
postgres.connect = {}

[[check]]
name = "through_app"
service = "app"
[[check.step]]
postgres.connect = {}
"#;
    let (spec, _dir) = spec(&services, suite);
    let (checks, session, run_id) = start_all(&spec);
    session.trial(&checks[0]).expect("db starts and answers");
    let killed = std::process::Command::new("docker")
        .args(["kill", &format!("db-{run_id}")])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");

    let msg = session
        .trial(&checks[1])
        .unwrap_err()
        .message()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with("ERROR: db exited: killed, exit code 137; step 1"),
        "{msg}"
    );
    assert!(msg.contains("last log lines of db:"), "{msg}");
    assert!(
        !msg.contains("last log lines of app:"),
        "an empty tail is left out: {msg}"
    );
    assert!(msg.contains("database system is ready"), "{msg}");
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}

#[test]
fn a_container_that_exits_while_starting_says_how_it_ended() {
    let (spec, _dir) = spec(
        r#"
[services.crash]
image = "platform-kit/base:bookworm"
command = ["sh", "-c", "echo giving up; exit 3"]
ports = { sql = 5432 }
ready = [{ log = "never printed" }]
startup_timeout = "30s"
endpoint = { user = "nobody" }
"#,
        "[[check]]\nname = \"c\"\nservice = \"crash\"\n[[check.step]]\npostgres.connect = {}\n",
    );
    let (checks, session, run_id) = start_all(&spec);
    let msg = session
        .trial(&checks[0])
        .unwrap_err()
        .message()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with(
            "ERROR: service `crash` its container stopped before it was ready (exited with exit code 3)"
        ),
        "{msg}"
    );
    assert!(msg.contains("giving up"), "its log tail: {msg}");
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}

#[test]
fn a_check_whose_dependency_never_got_ready_carries_the_dependency_log_tail() {
    let services = postgres("db", "this line never appears", 1, "4s", "real") + APP_ON_DB;
    let (spec, _dir) = spec(
        &services,
        "[[check]]\nname = \"through_app\"\nservice = \"app\"\n[[check.step]]\npostgres.connect = {}\n",
    );
    let (checks, session, run_id) = start_all(&spec);
    let msg = session
        .trial(&checks[0])
        .unwrap_err()
        .message()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with(
            "ERROR: service `app` not started: its dependency `db` failed (not ready: waited 4 s"
        ),
        "{msg}"
    );
    // Which lines come last depends on how far initdb got; that some do is the point.
    let tail = msg
        .split_once("last log lines of db:\n")
        .map(|(_, t)| t)
        .unwrap_or_default();
    assert!(tail.lines().any(|l| !l.trim().is_empty()), "{msg}");
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}

#[test]
fn a_step_readiness_probe_that_never_succeeds_names_the_step_and_the_service_s_answer() {
    // Ready means a query succeeds as the checks' user; this endpoint logs in wrongly.
    let services = postgres("pg", READY, 2, "8s", "wrong").replace(
        &format!("ready = [{{ log = \"{READY}\", times = 2 }}]"),
        r#"ready = [{ step = { postgres.query.sql = "SELECT 1" } }]"#,
    );
    let suite = r#"
[[check]]
name = "connects"
service = "pg"
[[check.step]]
postgres.connect = {}
"#;
    let (spec, _dir) = spec(&services, suite);
    let (checks, session, run_id) = start_all(&spec);
    let msg = session.trial(&checks[0]).unwrap_err();
    let msg = msg.message().unwrap_or_default().to_string();
    assert!(
        msg.contains("not ready: waited 8 s (its startup timeout) for step `postgres.query` to succeed: last attempt:")
            && msg.contains("password authentication failed"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-secret-1a2b3c"), "{msg}");
    drop(session);
    assert_eq!(containers_of(&run_id), 0, "nothing of the run is left");
}
