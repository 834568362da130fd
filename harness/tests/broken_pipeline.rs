//! The pipeline suite with one hop broken: the report must name exactly that hop, the
//! hops that do not need it pass, and every stage after it is an error naming the stage it
//! needed.
//! Each case runs the real `suites/pipeline.toml` (or a one-line variant of it) on one
//! platform session of its own. `record` is left out: it would start MLflow only to
//! show one more dependent error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use platform_harness::checks::Outcome;
use platform_harness::platform::docker;
use platform_harness::report::CheckRecord;
use platform_harness::spec::{Check, PlatformSpec, Spec, Suite};
use testcontainers::bollard::query_parameters::{
    ListContainersOptionsBuilder, StopContainerOptionsBuilder,
};

const SUITE: &str = "../suites/pipeline.toml";
/// The stages the cases run, in order, and the stages each `needs`, as
/// `suites/pipeline.toml` declares them (checked against the suite by
/// `the_stages_need_what_the_suite_says`).
const STAGES: &[(&str, &[&str])] = &[
    ("seed", &[]),
    ("register", &["seed"]),
    ("ingest", &["seed"]),
    ("land", &["register", "ingest"]),
    ("query", &["land"]),
    ("cleanup", &["query"]),
];

fn platform() -> PlatformSpec {
    PlatformSpec::load(Path::new("../fixtures/platform.toml")).unwrap()
}

/// The pipeline suite, with `edits` (each `(from, to)` must occur exactly once) applied.
fn suite(platform: &PlatformSpec, edits: &[(&str, &str)]) -> Suite {
    let mut src = std::fs::read_to_string(SUITE).unwrap();
    for (from, to) in edits {
        assert_eq!(src.matches(from).count(), 1, "`{from}` once in {SUITE}");
        src = src.replace(from, to);
    }
    Suite::parse(Path::new(SUITE), &src, platform).unwrap()
}

/// Runs `STAGES` in order in one session, calling `before(stage, run_id)` before each;
/// returns every stage's record once the session is torn down (and checks nothing of
/// the run is left).
fn run(
    platform: PlatformSpec,
    suite: Suite,
    before: impl FnMut(&str, &str),
) -> BTreeMap<String, CheckRecord> {
    let spec = Spec {
        platform,
        suites: vec![suite],
    };
    let checks: Vec<Arc<Check>> = spec
        .checks()
        .filter(|c| STAGES.iter().any(|(stage, _)| *stage == c.name))
        .cloned()
        .map(Arc::new)
        .collect();
    common::run_in_order(&spec, checks, before)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn needs(stage: &str) -> &'static [&'static str] {
    STAGES.iter().find(|(s, _)| *s == stage).unwrap().1
}

/// Whether `stage` comes after `broken` through its `needs`.
fn downstream(stage: &str, broken: &str) -> bool {
    needs(stage)
        .iter()
        .any(|n| *n == broken || downstream(n, broken))
}

/// The stages that do not need `broken` passed; each one that does is an error naming the
/// first of its needs that did not pass; `broken`'s own outcome is returned for the case to
/// judge.
fn broken_at(records: &BTreeMap<String, CheckRecord>, broken: &str) -> Outcome {
    let outcomes: BTreeMap<&str, &Outcome> = records
        .iter()
        .map(|(name, r)| (name.as_str(), &r.outcome))
        .collect();
    for (stage, its_needs) in STAGES.iter().filter(|(s, _)| *s != broken) {
        if !downstream(stage, broken) {
            assert_eq!(outcomes[*stage], &Outcome::Passed, "{stage} passes");
            continue;
        }
        let failed = its_needs
            .iter()
            .find(|n| **n == broken || downstream(n, broken))
            .unwrap();
        let expected = format!("not run: it needs `{failed}`, which did not pass");
        assert_eq!(outcomes[*stage], &Outcome::Errored(expected), "{stage}");
    }
    outcomes[broken].clone()
}

#[test]
fn the_stages_need_what_the_suite_says() {
    let platform = platform();
    let suite = suite(&platform, &[]);
    for (stage, want) in STAGES {
        let check = suite.checks.iter().find(|c| c.name == *stage).unwrap();
        assert_eq!(&check.needs, want, "{stage}");
    }
}

/// Stops the run's MinIO, as an outage between two hops would.
fn stop_minio(run_id: &str) {
    let docker = docker::connect().unwrap();
    let filters = BTreeMap::from([
        ("label", vec![format!("{}={run_id}", docker::LABEL_RUN)]),
        ("name", vec!["^/?minio-".to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::new()
        .filters(&filters.into_iter().collect())
        .build();
    block_on(async {
        let found = docker.list_containers(Some(options)).await.unwrap();
        assert_eq!(found.len(), 1, "one minio container in run {run_id}");
        let id = found[0].id.clone().unwrap();
        let stop = StopContainerOptionsBuilder::new().t(2).build();
        docker.stop_container(&id, Some(stop)).await.unwrap();
    });
}

#[test]
fn minio_down_before_landing_fails_the_land_hop() {
    let platform = platform();
    let suite = suite(&platform, &[]);
    let records = run(platform, suite, |stage, run_id| {
        if stage == "land" {
            stop_minio(run_id);
        }
    });
    let Outcome::Errored(msg) = broken_at(&records, "land") else {
        panic!("land should error: {:?}", records["land"].outcome);
    };
    eprintln!("land: {msg}");
    assert!(
        msg.contains("step 1 `events to daily files` on kafka"),
        "{msg}"
    );
    assert!(
        msg.contains("minio (http://127.0.0.1:") && msg.contains("PutObject lake/pipeline_"),
        "names the service and the write: {msg}"
    );
    assert!(msg.to_lowercase().contains("connect"), "says why: {msg}");
}

#[test]
fn a_lake_on_a_missing_bucket_fails_the_register_hop() {
    let mut platform = platform();
    let catalog = lake_catalog_on("no-such-bucket");
    let trino = platform.services.get_mut("trino").unwrap();
    trino.copy[0].from = catalog.clone();
    let suite = suite(&platform, &[]);
    let records = run(platform, suite, |_, _| {});
    let _ = std::fs::remove_dir_all(&catalog);
    let Outcome::Errored(msg) = broken_at(&records, "register") else {
        panic!("register should error: {:?}", records["register"].outcome);
    };
    eprintln!("register: {msg}");
    assert!(
        msg.contains("step 1 `the lake schema` on trino: trino at http://127.0.0.1:"),
        "{msg}"
    );
    // Trino's own words: its metastore lives in the bucket it cannot read. (Its log
    // says no more at the default level.)
    assert!(
        msg.contains("failed with HIVE_METASTORE_ERROR (EXTERNAL): Could not read database schema"),
        "{msg}"
    );
    // And the root cause, from Trino's failureInfo, deepest last.
    assert!(
        msg.contains(
            "; caused by java.io.IOException: Failed to open S3 file: s3://no-such-bucket/"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("; caused by software.amazon.awssdk.services.s3.model.NoSuchBucketException: The specified bucket does not exist"),
        "{msg}"
    );
}

#[test]
fn publishing_to_the_wrong_topic_fails_the_land_hop() {
    let platform = platform();
    let suite = suite(
        &platform,
        &[
            (
                r#"topic = "cdc.${schema}.orders""#,
                r#"topic = "cdc.${schema}.orders_v2""#,
            ),
            (
                r#"pipeline.land = { topic = "${topic}","#,
                r#"pipeline.land = { within = "10s", topic = "cdc.${schema}.orders","#,
            ),
        ],
    );
    let records = run(platform, suite, |_, _| {});
    let Outcome::Failed(msg) = broken_at(&records, "land") else {
        panic!("land should fail: {:?}", records["land"].outcome);
    };
    eprintln!("land: {msg}");
    assert!(
        msg.contains("received 0 of 12000 messages from `cdc.pipeline_"),
        "{msg}"
    );
    assert!(
        msg.contains(".orders` within 10s"),
        "names the topic it read: {msg}"
    );
}

/// A copy of the lake catalog whose metastore lives in `bucket`.
fn lake_catalog_on(bucket: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "harness-pipeline-catalog-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read_to_string("../fixtures/trino/catalog/lake.properties").unwrap();
    let line = "hive.metastore.catalog.dir=s3://lake/";
    assert!(original.contains(line));
    std::fs::write(
        dir.join("lake.properties"),
        original.replace(line, &format!("hive.metastore.catalog.dir=s3://{bucket}/")),
    )
    .unwrap();
    dir
}
