//! `PLATFORM_LOG=debug` explains where a start's time went (each readiness poll with its
//! timing, inside the service's span; each check and step in theirs), and the log goes
//! through the masker like every other output.

use std::process::Command;

const SECRET: &str = "trace-leak-Qw7-pass";

#[test]
fn debug_log_shows_each_readiness_poll_and_never_the_secret() {
    let dir = std::env::temp_dir().join(format!("harness-trace-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        format!(
            r#"
[secrets]
pw = {{ default = "{SECRET}" }}

[services.postgres]
image = "platform-kit/postgres:15"
env = {{ POSTGRES_USER = "platform", POSTGRES_PASSWORD = "${{secret.pw}}" }}
ports = {{ sql = 5432 }}
ready = [{{ log = "database system is ready to accept connections", times = 2 }}]
startup_timeout = "60s"
endpoint = {{ user = "platform", password = "${{secret.pw}}" }}
"#
        ),
    )
    .unwrap();
    // The secret in the SQL and in the error the server sends back.
    std::fs::write(
        dir.join("suites/t.toml"),
        format!(
            "service = \"postgres\"\n[[check]]\nname = \"leaks\"\n[[check.step]]\npostgres.query.sql = \"SELECT * FROM \\\"{SECRET}\\\"\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_platform-verify"))
        .env("PLATFORM_LOG", "debug")
        .args(["run", "--platform"])
        .arg(dir.join("platform.toml"))
        .arg("--suites")
        .arg(dir.join("suites"))
        .arg("--junit")
        .arg(dir.join("junit.xml"))
        .output()
        .expect("platform-verify runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let polls: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("readiness poll"))
        .collect();
    assert!(!polls.is_empty(), "{stderr}");
    assert!(
        polls
            .iter()
            .all(|l| l.contains("service{name=postgres") && l.contains("elapsed_ms=")),
        "{polls:?}"
    );
    assert!(stderr.contains("container created and started"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("check{id=t::leaks}") && l.contains("step{n=1")),
        "{stderr}"
    );
    // Library events flow in too (bollard talks to the engine at debug level).
    assert!(stderr.contains("DEBUG"), "{stderr}");
    for output in [&*stderr, &*stdout] {
        assert_eq!(
            output.matches(SECRET).count(),
            0,
            "the secret leaked:\n{output}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
