//! HTTP checks (health endpoints, REST APIs) with reqwest.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[cfg(feature = "run")]
mod run;
#[cfg(feature = "run")]
pub(crate) use run::client;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAction {
    Get(RequestSpec),
    Post(RequestSpec),
    Put(RequestSpec),
    Delete(RequestSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Path on the service, with `${var}`s.
    pub path: String,
    /// Name of the service's port (default `http`).
    #[serde(default = "default_port")]
    pub port: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent with content-type application/json).
    #[schemars(with = "Option<serde_json::Value>")]
    pub json: Option<toml::Value>,
    /// A text body.
    pub body: Option<String>,
}

fn default_port() -> String {
    "http".into()
}

impl HttpAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Get(_) => "get",
            Self::Post(_) => "post",
            Self::Put(_) => "put",
            Self::Delete(_) => "delete",
        }
    }

    #[cfg(feature = "run")]
    fn spec(&self) -> &RequestSpec {
        match self {
            Self::Get(s) | Self::Post(s) | Self::Put(s) | Self::Delete(s) => s,
        }
    }
}

impl KindInfo for HttpAction {
    const NAMESPACE: &'static str = "http";
    const DEFAULT_SERVICE: Option<&'static str> = None;
}

impl Action for HttpAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}
