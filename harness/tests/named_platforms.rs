//! Every named platform runs green with one command (`platform-verify run --platform NAME`),
//! so a platform that ships keeps working. Needs Docker and the kit's images.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `platform-verify run --platform NAME` passes, with every one of `suites` in its report.
#[rstest::rstest]
#[case::observability("observability", &["redis", "prometheus", "opensearch", "postgres"])]
#[case::streaming("streaming", &["spark", "lake", "stream"])]
#[case::cdc_lakehouse("cdc-lakehouse", &["connect", "pipeline", "postgres", "kafka", "monitoring"])]
#[case::lakehouse("lakehouse", &["metastore"])]
fn the_named_platform_runs_green(#[case] name: &str, #[case] suites: &[&str]) {
    // One platform at a time: two starting together would swamp a 2-core machine.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let junit = std::env::temp_dir().join(format!("named-{name}-{}.xml", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_platform-verify"))
        .current_dir(root())
        .args(["run", "--platform", name, "--junit"])
        .arg(&junit)
        .output()
        .expect("platform-verify runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    let report = std::fs::read_to_string(&junit).expect("JUnit written");
    for suite in suites {
        assert!(
            report.contains(&format!("name=\"{suite}\"")),
            "{suite} missing from the report"
        );
    }
    assert!(!report.contains("<failure"), "{report}");
    assert!(!report.contains("<error"), "{report}");
    let _ = std::fs::remove_file(&junit);
    let _ = std::fs::remove_file(junit.with_extension("md"));
}

#[test]
fn an_unknown_platform_name_lists_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_platform-verify"))
        .current_dir(root())
        .args(["validate", "--platform", "no-such-platform"])
        .output()
        .expect("platform-verify runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no platform named `no-such-platform`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("default, cdc-lakehouse, lakehouse, observability, streaming"),
        "{stderr}"
    );
}
