//! Prometheus checks through its HTTP API (reqwest: the API is five GET calls; no crate
//! for it is better kept than the HTTP client): every target up, PromQL queries, rules and
//! alerts, as an operator reads them in the UI.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo, NoArgs};

#[cfg(feature = "run")]
mod run;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PrometheusAction {
    /// Active targets: `{total, up, down, targets: [{job, instance, health, last_error}]}`.
    /// With `all_up = true`, a target not up is a failure naming it and its last error.
    Targets(TargetsSpec),
    /// A PromQL query: instant, or over `range` at `step`; `{result_type, result}` with
    /// numbers as numbers.
    Query(QuerySpec),
    /// Rule groups with each rule's health and last error.
    Rules(NoArgs),
    /// Alerts now pending or firing.
    Alerts(NoArgs),
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsSpec {
    #[serde(default)]
    pub all_up: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// PromQL, with `${var}`s.
    pub query: String,
    /// Query the last `range` (e.g. "5m") instead of one instant.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub range: Option<Duration>,
    #[serde(default = "default_step", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub step: Duration,
}

fn default_step() -> Duration {
    Duration::from_secs(15)
}

impl KindInfo for PrometheusAction {
    const NAMESPACE: &'static str = "prometheus";
    const DEFAULT_SERVICE: Option<&'static str> = Some("prometheus");
}

impl Action for PrometheusAction {
    fn verb(&self) -> &'static str {
        match self {
            Self::Targets(_) => "targets",
            Self::Query(_) => "query",
            Self::Rules(_) => "rules",
            Self::Alerts(_) => "alerts",
        }
    }
}
