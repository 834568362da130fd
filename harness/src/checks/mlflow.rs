//! MLflow checks through the tracking server's REST API (see `clients::mlflow`), the way
//! the Python client talks to it: runs, params, metrics and tags in the backend store,
//! artifacts through the server's artifact proxy into the object store.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{StepContext, StepError};
use crate::clients::mlflow::{self as api, Client, KeyValue, Metric, Run};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MlflowAction {
    /// Experiment, run, one log-batch, an artifact through the server, finish, then read
    /// everything back, list and download the artifact, and find the run by search.
    Lifecycle(LifecycleSpec),
    /// Get or create; output `{experiment_id, name, artifact_location, lifecycle_stage, created}`.
    Experiment(ExperimentSpec),
    /// Output `{run_id, artifact_uri, experiment_id, run_name, status}`.
    CreateRun(CreateRunSpec),
    /// Params, metrics (at `step`) and tags in one log-batch.
    Log(LogSpec),
    /// Output `{run: <as the server sends it>, params: {k: v}, metrics: {k: latest}, tags: {k: v}}`.
    GetRun(RunSpec),
    /// Upload `body` (text) as the artifact at `path`, through the tracking server.
    Upload(UploadSpec),
    /// Output `{path, size, body}`; `body` is null unless the artifact is UTF-8 text.
    Download(ArtifactSpec),
    /// Output `{files: [{path, is_dir, file_size}], paths, count}` under `path` (default root).
    Artifacts(ListSpec),
    /// Output `{runs: [...], run_ids, count}`.
    Search(SearchSpec),
    /// Set the run's terminal status (default FINISHED) and end time.
    Finish(FinishSpec),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSpec {
    #[serde(default = "default_experiment")]
    pub experiment: String,
    #[serde(default = "default_params")]
    pub params: usize,
    /// Metric names; the first is `accuracy` (the search filters on it).
    #[serde(default = "default_metrics")]
    pub metrics: usize,
    /// Points per metric, at steps 0..steps.
    #[serde(default = "default_steps")]
    pub steps: usize,
}

fn default_experiment() -> String {
    "platform-harness".into()
}
fn default_params() -> usize {
    5
}
fn default_metrics() -> usize {
    3
}
fn default_steps() -> usize {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRunSpec {
    pub experiment_id: String,
    pub run_name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    pub run_id: String,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub metrics: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub tags: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub run_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSpec {
    pub run_id: String,
    pub path: String,
    pub body: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub run_id: String,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub run_id: String,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    pub experiment_id: String,
    /// MLflow's search syntax: `metrics.accuracy > 0.5 and params.lr = '0.01'`.
    #[serde(default)]
    pub filter: String,
    #[serde(default = "default_max_results")]
    pub max_results: u32,
    #[serde(default)]
    pub order_by: Vec<String>,
}

fn default_max_results() -> u32 {
    100
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    pub run_id: String,
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "FINISHED".into()
}

const RUN_STATUSES: &[&str] = &["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

impl MlflowAction {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Lifecycle(_) => "lifecycle",
            Self::Experiment(_) => "experiment",
            Self::CreateRun(_) => "create_run",
            Self::Log(_) => "log",
            Self::GetRun(_) => "get_run",
            Self::Upload(_) => "upload",
            Self::Download(_) => "download",
            Self::Artifacts(_) => "artifacts",
            Self::Search(_) => "search",
            Self::Finish(_) => "finish",
        }
    }

    pub async fn run(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let m = Mlflow::new(cx)?;
        match self {
            Self::Lifecycle(spec) => lifecycle(&m, spec).await,
            Self::Experiment(e) => {
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
            Self::CreateRun(r) => {
                let experiment_id = cx.render(&r.experiment_id)?;
                let run_name = r.run_name.as_deref().map(|n| cx.render(n)).transpose()?;
                let tags = strings(cx, &r.tags, "tags")?;
                let run = m
                    .client
                    .create_run(&experiment_id, run_name.as_deref(), now_ms(), &tags)
                    .await
                    .map_err(|e| {
                        m.user_error(format!("creating a run in experiment {experiment_id}"), e)
                    })?;
                Ok(json!({
                    "run_id": run.info.run_id,
                    "artifact_uri": run.info.artifact_uri,
                    "experiment_id": run.info.experiment_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                }))
            }
            Self::Log(l) => {
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
            Self::GetRun(r) => {
                let run_id = cx.render(&r.run_id)?;
                let run = m
                    .client
                    .get_run(&run_id)
                    .await
                    .map_err(|e| m.user_error(format!("reading run {run_id}"), e))?;
                Ok(run_output(&run))
            }
            Self::Upload(u) => {
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
            Self::Download(a) => {
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
            Self::Artifacts(l) => {
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
            Self::Search(s) => {
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
                    .map_err(|e| {
                        m.user_error(format!("searching experiment {experiment_id}"), e)
                    })?;
                Ok(json!({
                    "run_ids": runs.iter().map(|r| &r.info.run_id).collect::<Vec<_>>(),
                    "count": runs.len(),
                    "runs": runs,
                }))
            }
            Self::Finish(f) => {
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
        }
    }
}

/// A client plus what error messages need: which service, at which address.
struct Mlflow {
    client: Client,
    /// `mlflow (http://127.0.0.1:32771)`
    place: String,
}

impl Mlflow {
    fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        let ep = cx.endpoint;
        let base = ep.base_url("http")?;
        // A server behind MLflow's basic-auth app or a proxy; none in the local platform.
        let auth = match (ep.params.get("user"), ep.params.get("password")) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let client = Client::new(&base, auth)
            .map_err(|e| StepError::Error(format!("{} ({base}): {e}", ep.service)))?;
        Ok(Self {
            client,
            place: format!("{} ({base})", ep.service),
        })
    }

    /// For the user-level verbs: a rejected request (4xx) is the suite's input, so it
    /// keeps the step from judging; the server failing (5xx) is a failure of the service.
    fn user_error(&self, what: impl std::fmt::Display, e: api::Error) -> StepError {
        let msg = format!("{}: {what}: {e}", self.place);
        match e.status() {
            Some(s) if s >= 500 => StepError::Failure(msg),
            _ if matches!(e, api::Error::Protocol { .. }) => StepError::Failure(msg),
            _ => StepError::Error(msg),
        }
    }

    /// For the lifecycle: every request is the harness's own and well-formed, so any
    /// rejection is the service's failure, except for credentials and transport.
    fn lifecycle_error(&self, what: &str, e: api::Error) -> StepError {
        let msg = format!("{}: {what}: {e}", self.place);
        match e {
            api::Error::Transport { .. } => StepError::Error(msg),
            api::Error::Api { status, .. } if status == 401 || status == 403 => {
                StepError::Error(msg)
            }
            _ => StepError::Failure(msg),
        }
    }

    /// Where the run's artifacts live under the server's artifact proxy.
    async fn artifact_root(&self, run_id: &str) -> Result<String, StepError> {
        let run = self
            .client
            .get_run(run_id)
            .await
            .map_err(|e| self.user_error(format!("reading run {run_id}"), e))?;
        api::proxied_artifact_root(&run.info.artifact_uri)
            .map_err(|e| StepError::Failure(format!("{}: run {run_id}: {e}", self.place)))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// What the lifecycle logs: derived from the spec and a nonce, so the read-back can be
/// compared exactly and belongs to this run only.
#[derive(Debug, Clone)]
struct Plan {
    nonce: String,
    params: Vec<KeyValue>,
    metric_names: Vec<String>,
    steps: usize,
    tags: Vec<KeyValue>,
    artifact: Vec<u8>,
}

const ARTIFACT_PATH: &str = "harness/sample.bin";
const ARTIFACT_DIR: &str = "harness";
const ARTIFACT_SIZE: usize = 4096;
/// runs/log-batch limits of the MLflow server.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;

impl Plan {
    fn new(spec: &LifecycleSpec, nonce: &str) -> Result<Self, String> {
        if spec.params > MAX_BATCH_PARAMS {
            return Err(format!(
                "`params` = {} exceeds MLflow's {MAX_BATCH_PARAMS} params per log-batch",
                spec.params
            ));
        }
        if spec.metrics == 0 || spec.steps == 0 {
            return Err("`metrics` and `steps` must be at least 1".into());
        }
        if spec.metrics.saturating_mul(spec.steps) > MAX_BATCH_METRICS {
            return Err(format!(
                "`metrics` x `steps` = {} exceeds MLflow's {MAX_BATCH_METRICS} metric values per log-batch",
                spec.metrics.saturating_mul(spec.steps)
            ));
        }
        let params = (0..spec.params)
            .map(|i| KeyValue::new(format!("param_{i}"), format!("value-{i}-{nonce}")))
            .collect();
        let metric_names = std::iter::once("accuracy".to_string())
            .chain((1..spec.metrics).map(|i| format!("metric_{i}")))
            .collect();
        let tags = vec![
            KeyValue::new("harness.check", "mlflow.lifecycle"),
            KeyValue::new("harness.nonce", nonce),
            // Non-ASCII text must survive the store's encoding.
            KeyValue::new("harness.note", "données ✓ 検証"),
        ];
        // Every byte value, so a text-mangling proxy shows.
        let artifact = (0..ARTIFACT_SIZE)
            .map(|i| ((i * 131 + 7) % 256) as u8)
            .collect();
        Ok(Self {
            nonce: nonce.to_string(),
            params,
            metric_names,
            steps: spec.steps,
            tags,
            artifact,
        })
    }

    /// `accuracy` rises from just above 0.5 to 0.9; the others are distinct per metric
    /// and step.
    fn value(&self, metric: usize, step: usize) -> f64 {
        if metric == 0 {
            0.5 + 0.4 * (step + 1) as f64 / self.steps as f64
        } else {
            (metric * 1000 + step) as f64 + 0.25
        }
    }

    fn metrics(&self, timestamp: i64) -> Vec<Metric> {
        let mut out = Vec::new();
        for (i, name) in self.metric_names.iter().enumerate() {
            for step in 0..self.steps {
                out.push(Metric {
                    key: name.clone(),
                    value: self.value(i, step),
                    timestamp,
                    step: step as i64,
                });
            }
        }
        out
    }

    /// Every param, the latest value of every metric and every tag, as read back.
    fn verify_run(&self, run: &Run) -> Result<(), String> {
        let mut problems = Vec::new();
        if run.info.status != "FINISHED" {
            problems.push(format!("status {:?}, expected FINISHED", run.info.status));
        }
        let find = |list: &[KeyValue], key: &str| {
            list.iter().find(|p| p.key == key).map(|p| p.value.clone())
        };
        for (what, expected, got) in [
            ("param", &self.params, &run.data.params),
            ("tag", &self.tags, &run.data.tags),
        ] {
            for p in expected {
                match find(got, &p.key) {
                    Some(v) if v == p.value => {}
                    Some(v) => problems.push(format!(
                        "{what} {}: expected {:?}, got {v:?}",
                        p.key, p.value
                    )),
                    None => problems.push(format!("{what} {} is missing", p.key)),
                }
            }
        }
        let last = self.steps - 1;
        for (i, name) in self.metric_names.iter().enumerate() {
            let want = self.value(i, last);
            match run.data.metrics.iter().find(|m| &m.key == name) {
                Some(m) if m.step == last as i64 && close(m.value, want) => {}
                Some(m) => problems.push(format!(
                    "metric {name}: expected latest value {want} at step {last}, got {} at step {}",
                    m.value, m.step
                )),
                None => problems.push(format!("metric {name} is missing")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The history of metric 0: one point per step, each with its value.
    fn verify_history(&self, history: &[Metric]) -> Result<(), String> {
        let name = &self.metric_names[0];
        let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for m in history {
            by_step.entry(m.step).or_default().push(m.value);
        }
        let mut problems = Vec::new();
        if history.len() != self.steps {
            problems.push(format!(
                "expected {} points, got {}",
                self.steps,
                history.len()
            ));
        }
        for step in 0..self.steps {
            let want = self.value(0, step);
            match by_step.get(&(step as i64)).map(Vec::as_slice) {
                Some([v]) if close(*v, want) => {}
                Some(vs) => problems.push(format!("step {step}: expected [{want}], got {vs:?}")),
                None => problems.push(format!("step {step} is missing")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("metric history of {name}: {}", problems.join("; ")))
        }
    }
}

/// Values go through JSON text and a float8 column: equal up to rounding of the last bit.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

async fn lifecycle(m: &Mlflow, spec: &LifecycleSpec) -> Result<Value, StepError> {
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

    fn spec(params: usize, metrics: usize, steps: usize) -> LifecycleSpec {
        LifecycleSpec {
            experiment: "e".into(),
            params,
            metrics,
            steps,
        }
    }

    /// The run a healthy server returns for the plan.
    fn healthy_run(plan: &Plan) -> Run {
        let latest: Vec<Metric> = plan
            .metric_names
            .iter()
            .enumerate()
            .map(|(i, k)| Metric {
                key: k.clone(),
                value: plan.value(i, plan.steps - 1),
                timestamp: 1,
                step: plan.steps as i64 - 1,
            })
            .collect();
        serde_json::from_value(json!({
            "info": {"run_id": "r1", "experiment_id": "1", "status": "FINISHED",
                     "artifact_uri": "mlflow-artifacts:/1/r1/artifacts", "lifecycle_stage": "active"},
            "data": {"params": plan.params, "tags": plan.tags, "metrics": latest},
            "inputs": {},
        }))
        .unwrap()
    }

    #[test]
    fn plan_matches_a_healthy_read_back() {
        let plan = Plan::new(&spec(5, 3, 10), "n1").unwrap();
        assert_eq!(plan.metrics(1).len(), 30);
        assert_eq!(plan.metric_names, ["accuracy", "metric_1", "metric_2"]);
        assert_eq!(plan.verify_run(&healthy_run(&plan)), Ok(()));
        assert!(close(plan.value(0, 9), 0.9));
        assert!((0..10).all(|s| plan.value(0, s) > 0.5));
    }

    #[test]
    fn read_back_names_each_difference() {
        let plan = Plan::new(&spec(2, 2, 3), "n1").unwrap();
        let mut run = healthy_run(&plan);
        run.info.status = "RUNNING".into();
        run.data.params[1].value = "other".into();
        run.data.tags.retain(|t| t.key != "harness.note");
        run.data.metrics[1].value += 1.0;
        let err = plan.verify_run(&run).unwrap_err();
        for part in [
            "status \"RUNNING\"",
            "param param_1: expected \"value-1-n1\", got \"other\"",
            "tag harness.note is missing",
            "metric metric_1: expected latest value 1002.25",
        ] {
            assert!(err.contains(part), "{err}");
        }
    }

    #[rstest]
    #[case::complete(vec![(0, 0), (1, 1), (2, 2)], None)]
    #[case::missing_step(vec![(0, 0), (2, 2)], Some("step 1 is missing"))]
    #[case::duplicate(vec![(0, 0), (1, 1), (1, 1), (2, 2)], Some("expected 3 points, got 4"))]
    #[case::wrong_value(vec![(0, 0), (1, 2), (2, 2)], Some("step 1: expected"))]
    fn checks_the_history(#[case] points: Vec<(i64, usize)>, #[case] problem: Option<&str>) {
        let plan = Plan::new(&spec(1, 1, 3), "n").unwrap();
        let history: Vec<Metric> = points
            .into_iter()
            .map(|(step, value_of)| Metric {
                key: "accuracy".into(),
                value: plan.value(0, value_of),
                timestamp: 1,
                step,
            })
            .collect();
        match (plan.verify_history(&history), problem) {
            (Ok(()), None) => {}
            (Err(e), Some(p)) => assert!(e.contains(p), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[rstest]
    #[case(spec(101, 1, 1), "100 params")]
    #[case(spec(1, 0, 1), "at least 1")]
    #[case(spec(1, 11, 100), "1000 metric values")]
    fn refuses_plans_over_the_batch_limits(#[case] s: LifecycleSpec, #[case] msg: &str) {
        assert!(Plan::new(&s, "n").unwrap_err().contains(msg));
    }

    #[test]
    fn the_artifact_has_every_byte_value() {
        let plan = Plan::new(&spec(1, 1, 1), "n").unwrap();
        let distinct: std::collections::BTreeSet<u8> = plan.artifact.iter().copied().collect();
        assert_eq!((plan.artifact.len(), distinct.len()), (ARTIFACT_SIZE, 256));
    }

    #[test]
    fn run_output_flattens_params_metrics_and_tags() {
        let plan = Plan::new(&spec(1, 1, 2), "n").unwrap();
        let out = run_output(&healthy_run(&plan));
        assert_eq!(out["params"]["param_0"], json!("value-0-n"));
        assert_eq!(out["metrics"]["accuracy"], json!(0.9));
        assert_eq!(out["tags"]["harness.check"], json!("mlflow.lifecycle"));
        assert_eq!(out["run"]["info"]["lifecycle_stage"], json!("active"));
        assert_eq!(out["run"]["inputs"], json!({}));
    }

    #[rstest]
    #[case(b"abc".as_slice(), b"abc".as_slice(), None)]
    #[case(b"abc".as_slice(), b"abd".as_slice(), Some(2))]
    #[case(b"abc".as_slice(), b"ab".as_slice(), Some(2))]
    fn finds_the_first_difference(#[case] a: &[u8], #[case] b: &[u8], #[case] at: Option<usize>) {
        assert_eq!(first_difference(a, b), at);
    }
}
