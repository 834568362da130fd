//! The user-level verbs, one request each (and the run's artifact root where needed),
//! with suite-given names, ids, params, metrics and tags.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::client::Mlflow;
use super::{
    now_ms, ArtifactSpec, CreateRunSpec, ExperimentSpec, FinishSpec, ListSpec, LogSpec,
    MetricHistorySpec, RunSpec, SearchSpec, UploadSpec,
};
use crate::clients::mlflow::{KeyValue, Metric, Run};
use crate::kinds::{StepContext, StepError};

const RUN_STATUSES: &[&str] = &["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

pub(super) async fn experiment(
    m: &Mlflow,
    cx: &StepContext<'_>,
    e: &ExperimentSpec,
) -> Result<Value, StepError> {
    let name = cx.render(&e.name)?;
    let (exp, created) = m
        .client
        .get_or_create_experiment(&name)
        .await
        .map_err(|e| m.user_error(format!("experiment `{name}`"), e))?;
    let mut out = json!(exp);
    out["created"] = json!(created);
    Ok(out)
}

pub(super) async fn create_run(
    m: &Mlflow,
    cx: &StepContext<'_>,
    r: &CreateRunSpec,
) -> Result<Value, StepError> {
    let experiment_id = cx.render(&r.experiment_id)?;
    let run_name = r.run_name.as_deref().map(|n| cx.render(n)).transpose()?;
    let tags = strings(cx, &r.tags, "tags")?;
    let run = m
        .client
        .create_run(&experiment_id, run_name.as_deref(), now_ms(), &tags)
        .await
        .map_err(|e| m.user_error(format!("creating a run in experiment {experiment_id}"), e))?;
    Ok(json!({
        "run_id": run.info.run_id,
        "artifact_uri": run.info.artifact_uri,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
    }))
}

pub(super) async fn log(m: &Mlflow, cx: &StepContext<'_>, l: &LogSpec) -> Result<Value, StepError> {
    let run_id = cx.render(&l.run_id)?;
    let params = strings(cx, &l.params, "params")?;
    let tags = strings(cx, &l.tags, "tags")?;
    let ts = now_ms();
    let metrics = l
        .metrics
        .iter()
        .map(|(k, v)| {
            Ok(Metric {
                key: k.clone(),
                value: number(cx, k, v)?,
                timestamp: ts,
                step: l.step,
            })
        })
        .collect::<Result<Vec<_>, StepError>>()?;
    m.client
        .log_batch(&run_id, &params, &metrics, &tags)
        .await
        .map_err(|e| m.user_error(format!("logging to run {run_id}"), e))?;
    Ok(json!({
        "run_id": run_id,
        "params": params.len(),
        "metrics": metrics.len(),
        "tags": tags.len(),
    }))
}

pub(super) async fn get_run(
    m: &Mlflow,
    cx: &StepContext<'_>,
    r: &RunSpec,
) -> Result<Value, StepError> {
    let run_id = cx.render(&r.run_id)?;
    let run = m
        .client
        .get_run(&run_id)
        .await
        .map_err(|e| m.user_error(format!("reading run {run_id}"), e))?;
    Ok(run_output(&run))
}

pub(super) async fn metric_history(
    m: &Mlflow,
    cx: &StepContext<'_>,
    h: &MetricHistorySpec,
) -> Result<Value, StepError> {
    let (run_id, key) = (cx.render(&h.run_id)?, cx.render(&h.key)?);
    let points =
        m.client.metric_history(&run_id, &key).await.map_err(|e| {
            m.user_error(format!("reading the history of `{key}` in run {run_id}"), e)
        })?;
    Ok(history_output(&run_id, &key, points))
}

/// Sorted by step, then time: the server's order is its storage's, not documented.
fn history_output(run_id: &str, key: &str, mut points: Vec<Metric>) -> Value {
    points.sort_by_key(|p| (p.step, p.timestamp));
    let history: Vec<Value> = points
        .iter()
        .map(|p| json!({"step": p.step, "value": p.value, "timestamp": p.timestamp}))
        .collect();
    json!({
        "run_id": run_id,
        "key": key,
        "count": points.len(),
        "steps": points.iter().map(|p| p.step).collect::<Vec<_>>(),
        "values": points.iter().map(|p| p.value).collect::<Vec<_>>(),
        "history": history,
    })
}

pub(super) async fn upload(
    m: &Mlflow,
    cx: &StepContext<'_>,
    u: &UploadSpec,
) -> Result<Value, StepError> {
    let (run_id, path) = (cx.render(&u.run_id)?, cx.render(&u.path)?);
    let body = cx.render(&u.body)?.into_bytes();
    let size = body.len();
    let root = m.artifact_root(&run_id).await?;
    m.client
        .upload_artifact(&root, &path, body)
        .await
        .map_err(|e| m.user_error(format!("uploading artifact {path}"), e))?;
    Ok(json!({"run_id": run_id, "path": path, "size": size}))
}

pub(super) async fn download(
    m: &Mlflow,
    cx: &StepContext<'_>,
    a: &ArtifactSpec,
) -> Result<Value, StepError> {
    let (run_id, path) = (cx.render(&a.run_id)?, cx.render(&a.path)?);
    let root = m.artifact_root(&run_id).await?;
    let bytes = m
        .client
        .download_artifact(&root, &path)
        .await
        .map_err(|e| m.user_error(format!("downloading artifact {path}"), e))?;
    let size = bytes.len();
    let body = String::from_utf8(bytes).map_or(Value::Null, Value::String);
    Ok(json!({"run_id": run_id, "path": path, "size": size, "body": body}))
}

pub(super) async fn artifacts(
    m: &Mlflow,
    cx: &StepContext<'_>,
    l: &ListSpec,
) -> Result<Value, StepError> {
    let run_id = cx.render(&l.run_id)?;
    let path = l.path.as_deref().map(|p| cx.render(p)).transpose()?;
    let files = m
        .client
        .list_artifacts(&run_id, path.as_deref())
        .await
        .map_err(|e| m.user_error(format!("listing artifacts of run {run_id}"), e))?;
    Ok(json!({
        "paths": files.iter().map(|f| &f.path).collect::<Vec<_>>(),
        "count": files.len(),
        "files": files,
    }))
}

pub(super) async fn search(
    m: &Mlflow,
    cx: &StepContext<'_>,
    s: &SearchSpec,
) -> Result<Value, StepError> {
    let experiment_id = cx.render(&s.experiment_id)?;
    let filter = cx.render(&s.filter)?;
    let order_by = s
        .order_by
        .iter()
        .map(|o| cx.render(o))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = m
        .client
        .search_runs(&[&experiment_id], &filter, s.max_results, &order_by)
        .await
        .map_err(|e| m.user_error(format!("searching experiment {experiment_id}"), e))?;
    Ok(json!({
        "run_ids": runs.iter().map(|r| &r.info.run_id).collect::<Vec<_>>(),
        "count": runs.len(),
        "runs": runs,
    }))
}

pub(super) async fn finish(
    m: &Mlflow,
    cx: &StepContext<'_>,
    f: &FinishSpec,
) -> Result<Value, StepError> {
    let (run_id, status) = (cx.render(&f.run_id)?, cx.render(&f.status)?);
    if !RUN_STATUSES.contains(&status.as_str()) {
        return Err(StepError::Error(format!(
            "mlflow.finish: `status` {status:?} is not one of {}",
            RUN_STATUSES.join(", ")
        )));
    }
    let end_time = (status != "RUNNING" && status != "SCHEDULED").then(now_ms);
    m.client
        .update_run(&run_id, &status, end_time)
        .await
        .map_err(|e| m.user_error(format!("finishing run {run_id}"), e))?;
    Ok(json!({"run_id": run_id, "status": status}))
}

/// Params and tags are strings in MLflow; numbers and booleans in the suite are taken as
/// their text, so `lr = 0.01` and `lr = "0.01"` log the same.
fn strings(
    cx: &StepContext<'_>,
    map: &BTreeMap<String, toml::Value>,
    field: &str,
) -> Result<Vec<KeyValue>, StepError> {
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => cx.render(s)?,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(StepError::Error(format!(
                        "`{field}.{k}`: expected a string, number or boolean, got {}",
                        other.type_str()
                    )))
                }
            };
            Ok(KeyValue::new(k.clone(), value))
        })
        .collect()
}

fn number(cx: &StepContext<'_>, key: &str, v: &toml::Value) -> Result<f64, StepError> {
    let bad = || StepError::Error(format!("`metrics.{key}`: expected a number, got {v}"));
    match v {
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) => Ok(*f),
        // A captured value: `${accuracy}`.
        toml::Value::String(s) => cx.render(s)?.trim().parse().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// The run as the server sent it, plus its params, latest metrics and tags as maps, so
/// expectations read `$.params.lr` rather than filtering lists of `{key, value}`.
fn run_output(run: &Run) -> Value {
    let kv = |list: &[KeyValue]| -> Map<String, Value> {
        list.iter()
            .map(|p| (p.key.clone(), json!(p.value)))
            .collect()
    };
    let metrics: Map<String, Value> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), json!(m.value)))
        .collect();
    json!({
        "run": run,
        "params": kv(&run.data.params),
        "metrics": metrics,
        "tags": kv(&run.data.tags),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, timestamp: i64, value: f64) -> Metric {
        Metric {
            key: "loss".into(),
            value,
            timestamp,
            step,
        }
    }

    #[test]
    fn history_is_ordered_by_step_then_time() {
        let out = history_output(
            "r1",
            "loss",
            vec![
                point(2, 10, 0.5),
                point(0, 30, 0.9),
                point(1, 20, 0.7),
                point(1, 5, 0.8),
            ],
        );
        assert_eq!(out["count"], json!(4));
        assert_eq!(out["steps"], json!([0, 1, 1, 2]));
        assert_eq!(out["values"], json!([0.9, 0.8, 0.7, 0.5]));
        assert_eq!(
            out["history"][1],
            json!({"step": 1, "value": 0.8, "timestamp": 5})
        );
        assert_eq!(history_output("r1", "loss", vec![])["count"], json!(0));
    }

    #[test]
    fn run_output_flattens_params_metrics_and_tags() {
        let run: Run = serde_json::from_value(json!({
            "info": {"run_id": "r1", "experiment_id": "1", "status": "FINISHED",
                     "artifact_uri": "mlflow-artifacts:/1/r1/artifacts", "lifecycle_stage": "active"},
            "data": {
                "params": [{"key": "param_0", "value": "value-0-n"}],
                "tags": [{"key": "harness.check", "value": "mlflow.lifecycle"}],
                "metrics": [{"key": "accuracy", "value": 0.9, "timestamp": 1, "step": 1}],
            },
            "inputs": {},
        }))
        .unwrap();
        let out = run_output(&run);
        assert_eq!(out["params"]["param_0"], json!("value-0-n"));
        assert_eq!(out["metrics"]["accuracy"], json!(0.9));
        assert_eq!(out["tags"]["harness.check"], json!("mlflow.lifecycle"));
        assert_eq!(out["run"]["info"]["lifecycle_stage"], json!("active"));
        assert_eq!(out["run"]["inputs"], json!({}));
    }
}
