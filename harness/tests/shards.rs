//! `--shard I/N` over the real suites: the shards together run every check exactly once,
//! each starts only its own services, and `merge-junit` puts their reports back together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use platform_harness::run::shard::{self, Shard};
use platform_harness::spec::Spec;
use quick_junit::Report;

const BIN: &str = env!("CARGO_BIN_EXE_platform-verify");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn three_shards_hold_every_check_of_the_suites_exactly_once() {
    let spec = Spec::load(
        &root().join("fixtures/platform.toml"),
        &root().join("suites"),
    )
    .unwrap();
    let all: BTreeSet<String> = spec.checks().map(|c| c.id()).collect();
    let mut union = BTreeSet::new();
    for index in 1..=3 {
        let part = shard::select(spec.checks(), Shard { index, count: 3 });
        assert!(!part.is_empty(), "shard {index}/3 is empty");
        for id in &part {
            assert!(union.insert(id.clone()), "{id} is in two shards");
        }
        // A chain stays whole: every check the shard's checks need is in the shard.
        for c in spec.checks().filter(|c| part.contains(&c.id())) {
            for n in &c.needs {
                assert!(
                    part.contains(&format!("{}::{n}", c.suite)),
                    "{} without {n}",
                    c.id()
                );
            }
        }
    }
    assert_eq!(union, all);
}

/// The PostgreSQL checks, run as three shards: each shard starts PostgreSQL alone, runs
/// its part, and the merged report has each check once.
#[test]
fn shards_run_their_part_and_merge_into_the_whole() {
    let out = std::env::temp_dir().join(format!("harness-shards-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let mut reports = Vec::new();
    for i in 1..=3 {
        let junit = out.join(format!("shard-{i}.xml"));
        let o = Command::new(BIN)
            .args([
                "run",
                "--filter",
                "postgres::",
                "--shard",
                &format!("{i}/3"),
                "--junit",
            ])
            .arg(&junit)
            .current_dir(root())
            .env("PLATFORM_UP", "off") // cold, as on a CI machine
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{text}");
        let started: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("platform: starting "))
            .collect();
        assert_eq!(started.len(), 1, "{text}");
        assert!(started[0].starts_with("postgres "), "{text}");
        reports.push(junit);
    }
    let merged = out.join("merged.xml");
    let o = Command::new(BIN)
        .arg("merge-junit")
        .arg(&merged)
        .args(&reports)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = Report::deserialize_from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    let pg: Vec<String> = report
        .test_suites
        .iter()
        .filter(|s| s.name.as_str() == "postgres")
        .flat_map(|s| s.test_cases.iter().map(|c| c.name.to_string()))
        .collect();
    let unique: BTreeSet<&String> = pg.iter().collect();
    let spec = Spec::load(
        &root().join("fixtures/platform.toml"),
        &root().join("suites"),
    )
    .unwrap();
    let expected = spec.checks().filter(|c| c.suite == "postgres").count();
    assert_eq!(pg.len(), expected, "{pg:?}");
    assert_eq!(unique.len(), expected, "{pg:?}");
    assert_eq!(report.failures + report.errors, 0);
}
