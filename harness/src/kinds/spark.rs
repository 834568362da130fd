//! Spark standalone: the master's state from its `/json/` page (what a platform engineer
//! reads off the master UI), and jobs submitted with `spark-submit` in the master's
//! container, judged by the JSON line the job prints and by the master seeing the
//! application FINISHED.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[cfg(feature = "run")]
mod run;

/// A job's result line on stdout starts with this; the rest of the line is JSON.
pub const RESULT_MARKER: &str = "PLATFORM_RESULT ";

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SparkAction {
    /// The master's `/json/`: status ALIVE and at least `min_workers` alive workers, else a
    /// failure; output: status, workers, cores, memory, applications (`app_states`: id to
    /// state).
    Cluster(ClusterSpec),
    /// `spark-submit` (client deploy mode) in the master's container; the job's
    /// `PLATFORM_RESULT {json}` line is the output, and the master must list the
    /// application FINISHED.
    Submit(SubmitSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Fewer alive workers than this is a failure (default 1).
    #[serde(default = "one")]
    pub min_workers: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitSpec {
    /// The application as a path in the master's container (a `.py` file or a jar), put
    /// there by the service's `copy`; with `${var}`s.
    pub app: String,
    /// Arguments to the application, with `${var}`s.
    #[serde(default)]
    pub args: Vec<String>,
    /// `--conf` settings, with `${var}`s (`spark.executor.memory = "512m"`).
    #[serde(default)]
    pub conf: BTreeMap<String, String>,
    /// Main class, for a jar.
    pub class: Option<String>,
    /// Bound on the whole submission; the job is killed when it passes (default 5m).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

impl KindInfo for SparkAction {
    const NAMESPACE: &'static str = "spark";
    const DEFAULT_SERVICE: Option<&'static str> = Some("spark-master");
}

impl Action for SparkAction {
    fn verb(&self) -> &'static str {
        match self {
            Self::Cluster(_) => "cluster",
            Self::Submit(_) => "submit",
        }
    }
}
