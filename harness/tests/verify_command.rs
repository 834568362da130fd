//! `platform-verify` as a user runs it: against a platform it did not start (plain
//! `docker run` on fixed local ports), on bad input, and interrupted with Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");
const PG_PORT: u16 = 55432;
const MINIO_PORT: u16 = 59000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// Containers started outside the harness, removed on drop.
struct Outside(Vec<String>);

impl Drop for Outside {
    fn drop(&mut self) {
        for name in &self.0 {
            docker(&["rm", "-f", "-v", name]);
        }
    }
}

fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} never got ready"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The kit's PostgreSQL as an outside platform would run it, published at `published`
/// (`127.0.0.1:PORT:5432`), user and database `platform`.
fn start_outside_postgres(name: &str, published: &str, password: &str) {
    let password = format!("POSTGRES_PASSWORD={password}");
    assert!(docker(&[
        "run",
        "-d",
        "--name",
        name,
        "-p",
        published,
        "-e",
        "POSTGRES_USER=platform",
        "-e",
        "POSTGRES_DB=platform",
        "-e",
        &password,
        "platform-kit/postgres:15",
    ])
    .status
    .success());
}

/// The kit's PostgreSQL logs readiness twice: after its init scripts, then for real.
fn wait_for_postgres(container: &str) {
    wait_for("postgres", || {
        let logs = docker(&["logs", container]);
        (String::from_utf8_lossy(&logs.stdout) + String::from_utf8_lossy(&logs.stderr))
            .matches("database system is ready to accept connections")
            .count()
            >= 2
    });
}

fn workdir(suite: &str, endpoints: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("harness-verify-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("suites/external.toml"), suite).unwrap();
    std::fs::write(dir.join("endpoints.toml"), endpoints).unwrap();
    dir
}

const SUITE: &str = r#"
[[check]]
name = "postgres_login"
service = "postgres"
[[check.step]]
postgres.connect = { min_version = "15" }

[[check]]
name = "minio_live"
service = "minio"
[[check.step]]
http.get = { path = "/minio/health/live", port = "s3" }
expect = [{ path = "$.status", equals = 200 }]
"#;

fn endpoints() -> String {
    format!(
        r#"
[services.postgres]
host = "127.0.0.1"
ports = {{ sql = {PG_PORT} }}
params = {{ user = "platform" }}
credentials = {{ password = {{ env = "VERIFY_TEST_PG_PASSWORD" }} }}

[services.minio]
host = "127.0.0.1"
ports = {{ s3 = {MINIO_PORT} }}
"#
    )
}

fn verify(dir: &Path) -> Output {
    Command::new(BIN)
        .current_dir(root())
        .env("VERIFY_TEST_PG_PASSWORD", "outside-pw-4821")
        .args(["run", "--suites"])
        .arg(dir.join("suites"))
        .arg("--endpoints")
        .arg(dir.join("endpoints.toml"))
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .output()
        .unwrap()
}

#[test]
fn verifies_a_platform_it_did_not_start_and_reports_a_stopped_service() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (pg, minio) = (format!("outside-pg-{id}"), format!("outside-minio-{id}"));
    let _cleanup = Outside(vec![pg.clone(), minio.clone()]);
    let pg_port = format!("127.0.0.1:{PG_PORT}:5432");
    let minio_port = format!("127.0.0.1:{MINIO_PORT}:9000");
    start_outside_postgres(&pg, &pg_port, "outside-pw-4821");
    assert!(docker(&[
        "run",
        "-d",
        "--name",
        &minio,
        "-p",
        &minio_port,
        "platform-kit/minio:RELEASE.2025-10-15T17-29-55Z"
    ])
    .status
    .success());
    wait_for_postgres(&pg);
    wait_for("minio", || {
        std::net::TcpStream::connect(("127.0.0.1", MINIO_PORT)).is_ok()
    });
    let dir = workdir(SUITE, &endpoints());

    let green = verify(&dir);
    let out = String::from_utf8_lossy(&green.stdout).to_string()
        + &String::from_utf8_lossy(&green.stderr);
    assert_eq!(green.status.code(), Some(0), "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    assert!(!out.contains("outside-pw-4821"));

    docker(&["stop", &pg]);
    let red = verify(&dir);
    let out =
        String::from_utf8_lossy(&red.stdout).to_string() + &String::from_utf8_lossy(&red.stderr);
    assert_eq!(red.status.code(), Some(1), "{out}");
    assert!(
        out.contains("ok external::minio_live"),
        "the other service still passes: {out}"
    );
    assert!(out.contains("ERROR external::postgres_login"), "{out}");
    assert!(
        out.contains(&format!("connecting to 127.0.0.1:{PG_PORT}")),
        "{out}"
    );
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        xml.contains("<error message=\"step 1 `postgres.connect #1` on postgres: connecting"),
        "{xml}"
    );
    let md = std::fs::read_to_string(dir.join("platform-summary.md")).unwrap();
    assert!(md.contains("1 passed, 0 failed, 1 errors"), "{md}");
    assert!(out.contains("verifying the running platform"), "{out}");
    assert!(
        !out.contains("platform: starting"),
        "no container is started: {out}"
    );
}

#[test]
fn validate_rejects_a_broken_suite_with_exit_2_and_the_line() {
    let dir = workdir(
        "[[check]]\nname = \"x\"\n[[check.step]]\npostgres.conect = {}\n",
        &endpoints(),
    );
    let out = Command::new(BIN)
        .current_dir(root())
        .args(["validate", "--suites"])
        .arg(dir.join("suites"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("external.toml:4:10"), "{err}");
    assert!(err.contains("unknown variant `conect`"), "{err}");
}

#[test]
fn ctrl_c_removes_the_run() {
    let dir = workdir(
        "[[check]]\nname = \"slow\"\nservice = \"postgres\"\n[[check.step]]\npostgres.query.sql = \"SELECT pg_sleep(60)\"\n",
        &endpoints(),
    );
    let mut child = Command::new(BIN)
        .current_dir(root())
        .args(["run", "--suites"])
        .arg(dir.join("suites"))
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if line.unwrap().contains("postgres ready in") {
            break;
        }
    }
    // Keep reading, as a terminal would, so the interrupted run can still print.
    let drain =
        std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let label = format!("label=org.platform-harness.pid={pid}");
    assert!(
        !docker(&["ps", "-aq", "--filter", &label]).stdout.is_empty(),
        "the run's container exists"
    );
    // Sent by a call, not the `kill` program: a minimal machine has no procps.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid.parse().unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let said = drain.join().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        said.contains("interrupted; stopping the checks and removing the containers of run"),
        "{said}"
    );
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("the report is written");
    assert!(
        xml.contains("<error message=\"interrupted: the run was stopped by a signal"),
        "{xml}"
    );
    assert!(
        docker(&["ps", "-aq", "--filter", &label]).stdout.is_empty(),
        "nothing left after Ctrl-C"
    );
    assert!(docker(&["network", "ls", "-q", "--filter", &label])
        .stdout
        .is_empty());
}

/// From a directory with no platform file, an endpoints file alone is enough to run the
/// project's own suites (those it has endpoints for); a selected check whose service the
/// file lacks is one error before anything runs.
#[test]
fn endpoints_alone_run_the_project_suites_from_any_directory() {
    const PORT: u16 = 55433;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let pg = format!("outside-pg-alone-{id}");
    let _cleanup = Outside(vec![pg.clone()]);
    let published = format!("127.0.0.1:{PORT}:5432");
    start_outside_postgres(&pg, &published, "alone-pw-7730");
    wait_for_postgres(&pg);
    let dir = std::env::temp_dir().join(format!("harness-alone-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("endpoints.toml"),
        format!(
            "[services.postgres]\nhost = \"127.0.0.1\"\nports = {{ sql = {PORT} }}\nparams = {{ user = \"platform\", database = \"platform\" }}\ncredentials = {{ password = {{ env = \"ALONE_PG_PASSWORD\" }} }}\n"
        ),
    )
    .unwrap();
    let run = |selection: &[&str]| {
        Command::new(BIN)
            .current_dir(&dir)
            .env("ALONE_PG_PASSWORD", "alone-pw-7730")
            .args(["run", "--endpoints", "endpoints.toml", "--suites"])
            .arg(root().join("suites"))
            .args(["--junit", "junit.xml"])
            .args(selection)
            .output()
            .unwrap()
    };
    assert!(!dir.join("fixtures/platform.toml").exists());

    let out = run(&["--filter", "postgres::a"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("accepts_login") && junit.contains("answers_queries"),
        "{junit}"
    );

    // The whole suite but its container exec (no container in this run) and the databases
    // this bare PostgreSQL was not initialised with.
    let out = run(&[
        "--filter",
        "postgres::",
        "--skip",
        "in_its_container",
        "--skip",
        "service_databases",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("round_trips_rows"), "{junit}");
    for skipped in ["psql_answers_in_its_container", "service_databases_exist"] {
        assert!(!junit.contains(skipped), "{skipped}: {junit}");
    }

    let out = run(&[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("endpoints.toml has no endpoint for"),
        "{said}"
    );
    for missing in ["`kafka`", "`minio`", "`mlflow`", "`trino`"] {
        assert!(said.contains(missing), "{missing}: {said}");
    }
    assert!(!said.contains("alone-pw-7730"));
    let _ = std::fs::remove_dir_all(dir);
}
