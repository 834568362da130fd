//! OpenSearch (and Elasticsearch: the REST calls used here are the ones both share)
//! through reqwest. The `opensearch` crate was considered: for the six calls a check makes
//! it adds a second request layer and ties the checks to one product, so plain REST it is.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo, NoArgs};

#[cfg(feature = "run")]
mod run;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OpensearchAction {
    /// `GET /_cluster/health`: status, nodes, shards.
    Health(NoArgs),
    /// `GET /<index>/_count`, optionally with a query: `{count}`; a missing index is a
    /// failure with the cluster's `index_not_found_exception`.
    Count(CountSpec),
    /// A unique index with a mapping, `documents` sent in one bulk request, refreshed,
    /// counted, searched by term and aggregated; every figure compared with what was sent;
    /// the index deleted after.
    Roundtrip(RoundtripSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountSpec {
    /// Index (or pattern, or alias), with `${var}`s.
    pub index: String,
    /// A query in the Query DSL, as a TOML table (`{ term = { category = "games" } }`).
    #[schemars(with = "Option<serde_json::Value>")]
    pub query: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundtripSpec {
    #[serde(default = "default_documents")]
    pub documents: usize,
}

fn default_documents() -> usize {
    300
}

impl KindInfo for OpensearchAction {
    const NAMESPACE: &'static str = "opensearch";
    const DEFAULT_SERVICE: Option<&'static str> = Some("opensearch");
}

impl Action for OpensearchAction {
    fn verb(&self) -> &'static str {
        match self {
            Self::Health(_) => "health",
            Self::Count(_) => "count",
            Self::Roundtrip(_) => "roundtrip",
        }
    }
}
