//! Ctrl-C during `cargo test --test platform` (driven in-process through the target's
//! entry point, interrupted by a SIGINT to this very process): the run stops its checks,
//! writes the JUnit with the unfinished one as "interrupted", removes its containers and
//! exits 130. Alone in its binary: it sets the environment and signals itself.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;

mod common;

#[test]
fn ctrl_c_during_the_test_target_writes_the_report_and_removes_the_run() {
    let dir = std::env::temp_dir().join(format!("harness-int-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(
        dir.join("platform.toml"),
        common::postgres_platform("{ default = \"int-secret-5d2c81\" }"),
    )
    .unwrap();
    std::fs::write(dir.join("suites/int.toml"), common::SLOW_SUITE).unwrap();
    let junit = dir.join("junit.xml");
    // The inner run's libtest lines go here: .ci/run tallies "test result:" lines.
    let log = dir.join("libtest.log");
    std::env::set_var("PLATFORM_SPEC", dir.join("platform.toml"));
    std::env::set_var("PLATFORM_SUITES", dir.join("suites"));
    std::env::set_var("PLATFORM_JUNIT", &junit);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mine = format!("label=org.platform-harness.pid={}", std::process::id());

    let run = std::thread::spawn(move || {
        platform_harness::run::libtest_run(
            root,
            Arguments::from_iter(["platform", "--logfile", log.to_str().unwrap()]),
        )
    });
    // Once postgres runs, give the check a moment to be inside its query.
    let start = Instant::now();
    while common::labelled("container", &mine).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "postgres never ran"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    // Sent by a call, not the `kill` program: a minimal machine has no procps.
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGINT).unwrap();
    let code = run.join().unwrap();

    assert_eq!(code, ExitCode::from(130));
    let xml = std::fs::read_to_string(&junit).expect("the report is written");
    assert!(
        xml.contains(
            "<error message=\"interrupted: the run was stopped by a signal before this check finished\""
        ),
        "{xml}"
    );
    assert_eq!(common::labelled("container", &mine), Vec::<String>::new());
    assert_eq!(common::labelled("network", &mine), Vec::<String>::new());
}
