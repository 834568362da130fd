//! `mlflow.lifecycle`: a run from creation to search, every write read back and compared.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::client::Mlflow;
use super::plan::Plan;
use super::{now_ms, LifecycleSpec};
use crate::clients::mlflow as api;
use crate::kinds::StepError;

const ARTIFACT_PATH: &str = "harness/sample.bin";
const ARTIFACT_DIR: &str = "harness";

pub(super) async fn lifecycle(m: &Mlflow, spec: &LifecycleSpec) -> Result<Value, StepError> {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let plan =
        Plan::new(spec, &nonce).map_err(|e| StepError::Error(format!("mlflow.lifecycle: {e}")))?;
    let c = &m.client;
    let mut timings = Map::new();
    let mut clock = Instant::now();
    let mut lap = |name: &str| {
        timings.insert(
            format!("{name}_ms"),
            json!(clock.elapsed().as_millis() as u64),
        );
        clock = Instant::now();
    };
    let fail = |what: &'static str| move |e: api::Error| m.lifecycle_error(what, e);
    let mismatch = |what: &str, e: String| StepError::Failure(format!("{}: {what}: {e}", m.place));

    let (experiment, _) = c
        .get_or_create_experiment(&spec.experiment)
        .await
        .map_err(fail("getting or creating the experiment"))?;
    let run = c
        .create_run(
            &experiment.experiment_id,
            Some(&format!("harness-{}", &nonce[..12])),
            now_ms(),
            &[],
        )
        .await
        .map_err(fail("creating a run"))?;
    let run_id = run.info.run_id.clone();
    let root = api::proxied_artifact_root(&run.info.artifact_uri)
        .map_err(|e| mismatch("artifact upload", e))?;
    lap("create");

    let metrics = plan.metrics(now_ms());
    c.log_batch(&run_id, &plan.params, &metrics, &plan.tags)
        .await
        .map_err(fail("logging params, metrics and tags (runs/log-batch)"))?;
    lap("log");

    c.upload_artifact(&root, ARTIFACT_PATH, plan.artifact.clone())
        .await
        .map_err(fail("artifact upload through the tracking server"))?;
    lap("upload");

    c.update_run(&run_id, "FINISHED", Some(now_ms()))
        .await
        .map_err(fail("finishing the run (runs/update)"))?;
    lap("finish");

    let back = c
        .get_run(&run_id)
        .await
        .map_err(fail("reading the run back"))?;
    plan.verify_run(&back)
        .map_err(|e| mismatch(&format!("run {run_id} as read back"), e))?;
    let history = c
        .metric_history(&run_id, &plan.metric_names[0])
        .await
        .map_err(fail("reading the metric history"))?;
    plan.verify_history(&history)
        .map_err(|e| mismatch(&format!("run {run_id}"), e))?;
    lap("read_back");

    let files = c
        .list_artifacts(&run_id, Some(ARTIFACT_DIR))
        .await
        .map_err(fail("listing artifacts"))?;
    let listed = files.iter().find(|f| f.path == ARTIFACT_PATH);
    if listed.and_then(|f| f.file_size) != Some(plan.artifact.len() as i64) {
        return Err(mismatch(
            "artifact listing",
            format!(
                "expected {ARTIFACT_PATH} of {} bytes under {ARTIFACT_DIR}, got {files:?}",
                plan.artifact.len()
            ),
        ));
    }
    let downloaded = c
        .download_artifact(&root, ARTIFACT_PATH)
        .await
        .map_err(fail("artifact download through the tracking server"))?;
    if downloaded != plan.artifact {
        return Err(mismatch(
            "artifact download",
            format!(
                "{ARTIFACT_PATH}: uploaded {} bytes, downloaded {} bytes that differ{}",
                plan.artifact.len(),
                downloaded.len(),
                first_difference(&plan.artifact, &downloaded)
                    .map(|i| format!(" from byte {i}"))
                    .unwrap_or_default()
            ),
        ));
    }
    lap("download");

    // The filter must select this run and, made impossible, select nothing: a server that
    // ignored filters would pass the first search alone.
    let ours = format!("tags.`harness.nonce` = '{}'", plan.nonce);
    let filter = format!("metrics.accuracy > 0.5 and {ours}");
    let found = c
        .search_runs(&[&experiment.experiment_id], &filter, 10, &[])
        .await
        .map_err(fail("searching runs"))?;
    let ids: Vec<&str> = found.iter().map(|r| r.info.run_id.as_str()).collect();
    if ids != [run_id.as_str()] {
        return Err(mismatch(
            "search",
            format!("`{filter}` should find exactly run {run_id}, found {ids:?}"),
        ));
    }
    let impossible = format!("metrics.accuracy > 1.5 and {ours}");
    let none = c
        .search_runs(&[&experiment.experiment_id], &impossible, 10, &[])
        .await
        .map_err(fail("searching runs"))?;
    if !none.is_empty() {
        return Err(mismatch(
            "search",
            format!("`{impossible}` should find no run, found {}", none.len()),
        ));
    }
    lap("search");

    Ok(json!({
        "experiment_id": experiment.experiment_id,
        "run_id": run_id,
        "artifact_uri": run.info.artifact_uri,
        "params": plan.params.len(),
        "metrics": plan.metric_names.len(),
        "metric_values": metrics.len(),
        "tags": plan.tags.len(),
        "history_points": history.len(),
        "artifact_bytes": plan.artifact.len(),
        "timings": timings,
    }))
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(b"abc".as_slice(), b"abc".as_slice(), None)]
    #[case(b"abc".as_slice(), b"abd".as_slice(), Some(2))]
    #[case(b"abc".as_slice(), b"ab".as_slice(), Some(2))]
    fn finds_the_first_difference(#[case] a: &[u8], #[case] b: &[u8], #[case] at: Option<usize>) {
        assert_eq!(first_difference(a, b), at);
    }
}
