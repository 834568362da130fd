//! Trino checks over its HTTP client protocol (see `clients::trino`).

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[cfg(feature = "run")]
mod run;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TrinoAction {
    /// One statement; output `{columns: [{name, type}], rows: [{col: value}], row_count,
    /// query_id}`, values as Trino's JSON gives them (decimals, dates as strings).
    Query(QuerySpec),
    /// A statement that writes (DDL, INSERT, CTAS); output `{update_type, row_count,
    /// query_id}`, `row_count` being the rows Trino says it wrote (0 for DDL).
    Execute(QuerySpec),
    /// CREATE TABLE AS from tpch in the memory catalog, INSERT more, compare aggregates
    /// with the same computed on tpch, DROP.
    MemoryRoundtrip(MemoryRoundtripSpec),
    /// The same through the lake catalog: a Parquet table on S3 (MinIO) written by CTAS,
    /// read back, compared (count, sum, checksums), its files checked to be under the
    /// schema's S3 location, dropped.
    LakeRoundtrip(LakeRoundtripSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub sql: String,
    /// Default catalog and schema for unqualified names.
    pub catalog: Option<String>,
    pub schema: Option<String>,
    /// Deadline of the query; past it the query is cancelled (DELETE nextUri) and the step
    /// errors with the query id. Not the step's own `within`, which retries the whole step.
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
    /// The step expects the statement to fail with this Trino error name
    /// (`TABLE_NOT_FOUND`, `SYNTAX_ERROR`, ...); the output is then
    /// `{error: {name, type, message, sql_state}, query_id}`. Another error, or success,
    /// is a failure.
    pub expect_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryRoundtripSpec {
    #[serde(default = "default_memory_catalog")]
    pub catalog: String,
    /// Deadline of each statement.
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LakeRoundtripSpec {
    #[serde(default = "default_lake_catalog")]
    pub catalog: String,
    /// Created if missing, at `s3://<bucket>/<schema>/`; kept for the next runs.
    #[serde(default = "default_lake_schema")]
    pub schema: String,
    #[serde(default = "default_lake_bucket")]
    pub bucket: String,
    /// Deadline of each statement.
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
}

fn default_within() -> Duration {
    Duration::from_secs(60)
}

fn default_memory_catalog() -> String {
    "memory".into()
}

fn default_lake_catalog() -> String {
    "lake".into()
}

fn default_lake_schema() -> String {
    "harness".into()
}

fn default_lake_bucket() -> String {
    "lake".into()
}

impl TrinoAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Query(_) => "query",
            Self::Execute(_) => "execute",
            Self::MemoryRoundtrip(_) => "memory_roundtrip",
            Self::LakeRoundtrip(_) => "lake_roundtrip",
        }
    }
}

impl KindInfo for TrinoAction {
    const NAMESPACE: &'static str = "trino";
    const DEFAULT_SERVICE: Option<&'static str> = Some("trino");
}

impl Action for TrinoAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}
