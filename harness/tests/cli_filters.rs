//! The `platform` target as `cargo test` starts it, with several filters.

use std::process::Command;

/// `-- --list postgres s3` lists both suites' checks and no other; nothing starts.
#[test]
fn several_filters_list_the_union_of_their_suites() {
    // Through cargo, which builds the target first if needed (it releases its build
    // lock before running tests, so this nested run does not wait on ours).
    let out = Command::new(env!("CARGO"))
        .args([
            "test", "--quiet", "--test", "platform", "--", "--list", "postgres", "s3",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    let suites: std::collections::BTreeSet<&str> =
        listed.iter().filter_map(|n| n.split("::").next()).collect();
    assert_eq!(suites, ["postgres", "s3"].into(), "{stdout}");
    assert!(listed.len() >= 4, "{stdout}");
}
