//! What several test binaries share: a one-service PostgreSQL platform, a scratch
//! directory holding a platform and suites, asking the engine what it holds, and (`web`)
//! scheduling runs against an HTTP server of the test's own.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod web;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the repository")
        .to_path_buf()
}

/// A platform of one kit PostgreSQL whose password is the secret `pw`, from `source` (a
/// TOML table such as `{ default = "..." }` or `{ env = "VAR" }`).
pub fn postgres_platform(source: &str) -> String {
    let extra = format!("{POSTGRES_READY}\nstartup_timeout = \"60s\"");
    format!(
        "\n[secrets]\npw = {source}\n{}",
        postgres_service("postgres", &extra)
    )
}

/// The kit PostgreSQL's readiness: the second "ready" line (the first is initdb's
/// local-only server).
pub const POSTGRES_READY: &str =
    r#"ready = [{ log = "database system is ready to accept connections", times = 2 }]"#;

/// A suite of one check on `pg`: it logs in.
pub const PG_LOGIN_SUITE: &str = r#"
service = "pg"
[[check]]
name = "login"
[[check.step]]
postgres.connect = {}
"#;

/// A kit PostgreSQL service table named `name`, its password the secret `pw`; `extra`
/// adds its readiness and any other keys.
pub fn postgres_service(name: &str, extra: &str) -> String {
    format!(
        r#"
[services.{name}]
image = "platform-kit/postgres:15"
env = {{ POSTGRES_USER = "platform", POSTGRES_DB = "platform", POSTGRES_PASSWORD = "${{secret.pw}}" }}
ports = {{ sql = 5432 }}
endpoint = {{ user = "platform", password = "${{secret.pw}}", database = "platform" }}
{extra}
"#
    )
}

/// A platform of two kit PostgreSQL services, `pg` and `pg2`, whose password is the secret
/// `pw` from the environment variable `var`; `memory` changes the spec (a limit).
pub fn two_postgres_platform(var: &str, memory: &str) -> String {
    let svc = |name: &str| {
        let extra = format!("{POSTGRES_READY}\nstartup_timeout = \"90s\"\nmemory = \"{memory}\"");
        postgres_service(name, &extra)
    };
    format!(
        "[secrets]\npw = {{ env = \"{var}\" }}\n{}{}",
        svc("pg"),
        svc("pg2")
    )
}

/// `pg::login` (on pg) and `pg::second` (on pg2), for `two_postgres_platform`.
pub const TWO_POSTGRES_SUITE: &str = r#"
service = "pg"
[[check]]
name = "login"
[[check.step]]
postgres.connect = {}
[[check]]
name = "second"
service = "pg2"
[[check.step]]
postgres.query.sql = "SELECT 1 AS one"
expect = [{ path = "$.rows[0].one", equals = 1 }]
"#;

/// One check that holds a PostgreSQL session for a minute: a run is surely busy when a
/// signal or deadline arrives.
pub const SLOW_SUITE: &str = r#"
[[check]]
name = "slow"
service = "postgres"
[[check.step]]
postgres.query.sql = "SELECT pg_sleep(60)"
"#;

/// Runs the test target's entry point (`cargo test --test platform`) in this process with
/// `--test-threads threads`, its libtest lines to `log` (.ci/run tallies "test result:"
/// lines, which the inner run must not add to).
pub fn libtest(log: &Path, threads: usize) -> std::process::ExitCode {
    let threads = threads.to_string();
    platform_harness::run::libtest_run(
        &root(),
        libtest_mimic::Arguments::from_iter([
            "platform",
            "--logfile",
            log.to_str().unwrap(),
            "--test-threads",
            &threads,
        ]),
    )
}

/// A new directory under the system's temporary one with `platform.toml` and
/// `suites/NAME` for each `(NAME, text)`.
pub fn workdir(prefix: &str, platform: &str, suites: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).expect("a scratch directory");
    std::fs::write(dir.join("platform.toml"), platform).expect("platform.toml");
    for (name, text) in suites {
        std::fs::write(dir.join("suites").join(name), text).expect("a suite");
    }
    dir
}

/// What `docker args...` printed. Panics when the engine cannot be asked: a check of
/// what is (not) there must not pass then.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "the engine must answer `docker {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ids of the containers (`kind = "container"`, stopped ones too) or networks holding
/// `label`.
pub fn labelled(kind: &str, label: &str) -> Vec<String> {
    let mut args = vec![kind, "ls", "-q", "--filter", label];
    if kind == "container" {
        args.insert(2, "-a");
    }
    docker(&args).lines().map(str::to_string).collect()
}

/// Runs `checks` of `spec` in order in one session, `before(check name, run id)` called
/// before each (to break something); the records once the session is gone, after proving
/// nothing of the run is left on the engine.
pub fn run_in_order(
    spec: &platform_harness::spec::Spec,
    checks: Vec<std::sync::Arc<platform_harness::spec::Check>>,
    mut before: impl FnMut(&str, &str),
) -> std::collections::BTreeMap<String, platform_harness::report::CheckRecord> {
    use platform_harness::platform::docker;
    let selected = checks.iter().map(|c| c.id()).collect();
    let session = platform_harness::run::Session::start(spec, &checks, &selected, None).unwrap();
    let run_id = session.run_id().to_string();
    for check in &checks {
        before(&check.name, &run_id);
        let _ = session.trial(check);
    }
    let report = session.finish();
    drop(session);
    let left = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(docker::run_containers(&docker::connect().unwrap(), &run_id))
        .expect("the engine answers");
    assert!(left.is_empty(), "nothing of run {run_id} is left");
    report
        .checks
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect()
}
