//! `cargo test --test platform` under `PLATFORM_DEADLINE`: checks still waiting when it
//! passes become errors, the report is written, and nothing of the run is left. Driven
//! in-process through the target's own entry point; alone in its binary because it sets
//! the process's environment.

use std::process::ExitCode;
use std::time::{Duration, Instant};

mod common;

/// A service that starts at once but never gets ready (its timeout is far away).
const PLATFORM: &str = r#"
[services.slow]
image = "platform-kit/base:bookworm"
command = ["sleep", "infinity"]
ports = { any = 7 }
ready = [{ log = "never printed" }]
startup_timeout = "120s"
endpoint = { user = "nobody" }
"#;

const SUITE: &str = r#"
[[check]]
name = "first"
service = "slow"
[[check.step]]
postgres.connect = {}

[[check]]
name = "second"
service = "slow"
[[check.step]]
postgres.connect = {}
"#;

#[test]
fn platform_deadline_turns_unfinished_checks_into_errors_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("harness-dl-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("platform.toml"), PLATFORM).unwrap();
    std::fs::write(dir.join("suites/dl.toml"), SUITE).unwrap();
    let junit = dir.join("junit.xml");
    std::env::set_var("PLATFORM_SPEC", dir.join("platform.toml"));
    std::env::set_var("PLATFORM_SUITES", dir.join("suites"));
    std::env::set_var("PLATFORM_JUNIT", &junit);
    std::env::set_var("PLATFORM_DEADLINE", "4s");

    let started = Instant::now();
    let code = common::libtest(&dir.join("libtest.log"), 1);
    let took = started.elapsed();

    assert_ne!(code, ExitCode::SUCCESS);
    assert!(took < Duration::from_secs(4 + 15), "took {took:?}");
    let xml = std::fs::read_to_string(&junit).expect("the report is written");
    assert_eq!(
        xml.matches("the run&apos;s deadline of 4s passed before this check finished")
            .count()
            + xml
                .matches("the run's deadline of 4s passed before this check finished")
                .count(),
        // message and description of each of the two checks
        4,
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testsuite name="dl" tests="2" skipped="0" errors="2""#),
        "{xml}"
    );
    let me = format!("label=org.platform-harness.pid={}", std::process::id());
    assert_eq!(common::labelled("container", &me), Vec::<String>::new());
    assert_eq!(common::labelled("network", &me), Vec::<String>::new());
}
