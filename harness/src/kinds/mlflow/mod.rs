//! MLflow checks through the tracking server's REST API (see `clients::mlflow`), the way
//! the Python client talks to it: runs, params, metrics and tags in the backend store,
//! artifacts through the server's artifact proxy into the object store.

#[cfg(feature = "run")]
mod client;
#[cfg(feature = "run")]
mod lifecycle;
#[cfg(feature = "run")]
mod plan;
#[cfg(feature = "run")]
mod steps;

use std::collections::BTreeMap;
#[cfg(feature = "run")]
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Deserialize;
#[cfg(feature = "run")]
use serde_json::Value;

#[cfg(feature = "run")]
use super::Run;
use super::{Action, KindInfo};
#[cfg(feature = "run")]
use super::{StepContext, StepError};
#[cfg(feature = "run")]
use client::Mlflow;
#[cfg(feature = "run")]
use futures::future::BoxFuture;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
    /// Every logged point of one metric, ordered by step then timestamp:
    /// `{run_id, key, count, history: [{step, value, timestamp}], steps: [...], values: [...]}`.
    MetricHistory(MetricHistorySpec),
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRunSpec {
    pub experiment_id: String,
    pub run_name: Option<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub tags: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    pub run_id: String,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub metrics: BTreeMap<String, toml::Value>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub tags: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    pub run_id: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricHistorySpec {
    pub run_id: String,
    /// The metric's name.
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadSpec {
    pub run_id: String,
    pub path: String,
    pub body: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    pub run_id: String,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub run_id: String,
    pub path: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishSpec {
    pub run_id: String,
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "FINISHED".into()
}

impl MlflowAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Lifecycle(_) => "lifecycle",
            Self::Experiment(_) => "experiment",
            Self::CreateRun(_) => "create_run",
            Self::Log(_) => "log",
            Self::GetRun(_) => "get_run",
            Self::MetricHistory(_) => "metric_history",
            Self::Upload(_) => "upload",
            Self::Download(_) => "download",
            Self::Artifacts(_) => "artifacts",
            Self::Search(_) => "search",
            Self::Finish(_) => "finish",
        }
    }

    #[cfg(feature = "run")]
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let m = Mlflow::new(cx)?;
        match self {
            Self::Lifecycle(spec) => lifecycle::lifecycle(&m, spec).await,
            Self::Experiment(e) => steps::experiment(&m, cx, e).await,
            Self::CreateRun(r) => steps::create_run(&m, cx, r).await,
            Self::Log(l) => steps::log(&m, cx, l).await,
            Self::GetRun(r) => steps::get_run(&m, cx, r).await,
            Self::MetricHistory(h) => steps::metric_history(&m, cx, h).await,
            Self::Upload(u) => steps::upload(&m, cx, u).await,
            Self::Download(a) => steps::download(&m, cx, a).await,
            Self::Artifacts(l) => steps::artifacts(&m, cx, l).await,
            Self::Search(s) => steps::search(&m, cx, s).await,
            Self::Finish(f) => steps::finish(&m, cx, f).await,
        }
    }
}

impl KindInfo for MlflowAction {
    const NAMESPACE: &'static str = "mlflow";
    const DEFAULT_SERVICE: Option<&'static str> = Some("mlflow");
}

impl Action for MlflowAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}

#[cfg(feature = "run")]
impl Run for MlflowAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

/// MLflow's timestamps: milliseconds since the epoch.
#[cfg(feature = "run")]
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
