//! `exec`: run a command inside a service's container (`psql`, `kcat`, `mc`,
//! `spark-submit`, `redis-cli`...) or, with `on = "host"`, on the machine running the
//! harness. The escape hatch for every CLI a checklist names.

use std::collections::BTreeMap;

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[cfg(feature = "run")]
mod run;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    /// The command and its arguments, each with `${var}`s; no shell unless you name one.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub on: Where,
    /// Environment for `on = "host"` commands (a container's comes from its spec).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Exit codes that count as success (default `[0]`).
    #[serde(default = "default_ok_codes")]
    pub ok_exit_codes: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Where {
    /// Inside the step's service's container.
    #[default]
    Container,
    /// On the machine running the harness.
    Host,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_ok_codes() -> Vec<i64> {
    vec![0]
}

impl KindInfo for ExecAction {
    const NAMESPACE: &'static str = "exec";
    const DEFAULT_SERVICE: Option<&'static str> = None;
}

impl Action for ExecAction {
    /// `exec` has no verbs: the step reads `exec = { cmd = [...] }`.
    fn verb(&self) -> &'static str {
        ""
    }
}
