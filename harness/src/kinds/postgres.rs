//! PostgreSQL checks with tokio-postgres, the client a Rust service would use.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[cfg(feature = "run")]
mod run;
#[cfg(feature = "run")]
pub(crate) use run::{connect, describe, query};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PostgresAction {
    /// Connect and authenticate; optionally require a minimum server version.
    Connect(ConnectSpec),
    /// One statement; output `{columns, rows, row_count}`.
    Query(QuerySpec),
    /// Statements separated by `;`, no output (DDL, seed data).
    Execute(QuerySpec),
    /// Create a scratch schema and table, write rows, read them back, drop it all.
    Scratch(ScratchSpec),
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectSpec {
    /// "15" or "15.4": the server's version must be at least this.
    pub min_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub sql: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScratchSpec {
    #[serde(default = "default_rows")]
    pub rows: i64,
}

fn default_rows() -> i64 {
    100
}

impl PostgresAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Query(_) => "query",
            Self::Execute(_) => "execute",
            Self::Scratch(_) => "scratch",
        }
    }
}

impl KindInfo for PostgresAction {
    const NAMESPACE: &'static str = "postgres";
    const DEFAULT_SERVICE: Option<&'static str> = Some("postgres");
}

impl Action for PostgresAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}
