//! Kafka Connect through its REST API (reqwest), and change data capture with Debezium's
//! PostgreSQL connector checked end to end: rows changed in PostgreSQL, events read from
//! Kafka. No Rust crate speaks Connect's REST API; its five calls are plain JSON.

#[cfg(feature = "run")]
mod cdc;
#[cfg(feature = "run")]
mod rest;

use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "run")]
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
#[cfg(feature = "run")]
use serde_json::{json, Map, Value};

#[cfg(feature = "run")]
use super::Run;
use super::{Action, KindInfo, NoArgs};
#[cfg(feature = "run")]
use super::{StepContext, StepError};
#[cfg(feature = "run")]
use rest::Rest;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectAction {
    /// `GET /connector-plugins`: `{plugins: [class, ...], count}`.
    Plugins(NoArgs),
    /// A connector from a TOML table or a JSON file, created or reconfigured
    /// (`PUT /connectors/NAME/config`, so running it twice is the same as once).
    Create(CreateSpec),
    /// The connector and every task RUNNING within `within`; FAILED at once is a failure
    /// carrying the worker's trace.
    Status(StatusSpec),
    /// `DELETE /connectors/NAME`; a connector that is not there counts as deleted.
    Delete(NameSpec),
    /// A table of its own, a Debezium connector capturing it, then INSERT, UPDATE and
    /// DELETE, each read from the topic with its `op`, `before` and `after`, in order;
    /// connector, slot, publication, topic and table removed after.
    CdcRoundtrip(CdcSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpec {
    /// Connector name, with `${var}`s.
    pub name: String,
    /// The connector's configuration (`"connector.class" = "..."`); values with `${var}`s.
    #[schemars(with = "Option<serde_json::Value>")]
    pub config: Option<toml::Table>,
    /// A JSON file with the configuration (a bare map, or `{name, config}` as POST
    /// /connectors takes), relative to the suite; `config` entries win over it.
    pub file: Option<PathBuf>,
    /// A PostgreSQL service of the platform: fills `database.hostname`/`port` (as the
    /// worker reaches it: the Connect endpoint's `database_host`/`database_port`) and
    /// `database.user`/`password`/`dbname` (its endpoint) where the config has none.
    pub database: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusSpec {
    pub name: String,
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CdcSpec {
    /// The PostgreSQL service captured from.
    #[serde(default = "default_postgres")]
    pub postgres: String,
    /// The Kafka service the worker writes to.
    #[serde(default = "default_kafka")]
    pub kafka: String,
    /// How long the connector may take to run, and each change to arrive.
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
    /// Put the table in the connector's publication (false: a misconfiguration to detect).
    #[serde(default = "default_true")]
    pub publish_table: bool,
    /// Connector settings added to (or replacing) the round trip's own, e.g.
    /// `{ "poll.interval.ms" = 50 }`; names of its scratch objects cannot be replaced.
    #[schemars(with = "Option<serde_json::Value>")]
    pub connector: Option<toml::Table>,
}

fn default_within() -> Duration {
    Duration::from_secs(60)
}

fn default_postgres() -> String {
    "postgres".into()
}

fn default_kafka() -> String {
    "kafka".into()
}

fn default_true() -> bool {
    true
}

impl KindInfo for ConnectAction {
    const NAMESPACE: &'static str = "connect";
    const DEFAULT_SERVICE: Option<&'static str> = Some("kafka-connect");
}

impl Action for ConnectAction {
    fn verb(&self) -> &'static str {
        match self {
            Self::Plugins(_) => "plugins",
            Self::Create(_) => "create",
            Self::Status(_) => "status",
            Self::Delete(_) => "delete",
            Self::CdcRoundtrip(_) => "cdc_roundtrip",
        }
    }

    fn extra_services(&self) -> Vec<String> {
        match self {
            Self::Create(CreateSpec {
                database: Some(db), ..
            }) => vec![db.clone()],
            Self::CdcRoundtrip(c) => vec![c.postgres.clone(), c.kafka.clone()],
            _ => Vec::new(),
        }
    }

    fn resolve_files(&mut self, base: &Path) -> Result<(), String> {
        if let Self::Create(CreateSpec {
            file: Some(file), ..
        }) = self
        {
            let path = base.join(&*file);
            if !path.is_file() {
                return Err(format!(
                    "`file`: {} is not a file (resolved as {})",
                    file.display(),
                    path.display()
                ));
            }
            *file = path;
        }
        Ok(())
    }
}

#[cfg(feature = "run")]
impl Run for ConnectAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

#[cfg(feature = "run")]
impl ConnectAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let rest = Rest::new(cx.endpoint)?;
        match self {
            Self::Plugins(_) => {
                let found = rest
                    .call(reqwest::Method::GET, "/connector-plugins", None)
                    .await?;
                let plugins: Vec<&str> = found
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["class"].as_str())
                    .collect();
                Ok(json!({ "plugins": plugins, "count": plugins.len() }))
            }
            Self::Create(c) => {
                let name = cx.render(&c.name)?;
                let config = config_of(cx, c)?;
                let created = rest.put_config(&name, &config).await?;
                Ok(json!({ "name": name, "config": redacted(&created["config"]) }))
            }
            Self::Status(s) => rest.wait_running(&cx.render(&s.name)?, s.within).await,
            Self::Delete(d) => {
                let name = cx.render(&d.name)?;
                let existed = rest.delete(&name).await?;
                Ok(json!({ "name": name, "existed": existed }))
            }
            Self::CdcRoundtrip(spec) => cdc::roundtrip(cx, &rest, spec).await,
        }
    }
}

/// The connector's configuration: the file's, then the table's, then the database's
/// connection settings where neither gave them; every value a string, as Connect wants.
#[cfg(feature = "run")]
fn config_of(cx: &StepContext<'_>, c: &CreateSpec) -> Result<Map<String, Value>, StepError> {
    let mut config = Map::new();
    if let Some(file) = &c.file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| StepError::Error(format!("reading {}: {e}", file.display())))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| StepError::Error(format!("{}: not JSON: {e}", file.display())))?;
        let map = match v.get("config") {
            Some(Value::Object(m)) => m.clone(),
            _ => v.as_object().cloned().ok_or_else(|| {
                StepError::Error(format!("{}: not a JSON object", file.display()))
            })?,
        };
        config.extend(map);
    }
    for (k, v) in c.config.iter().flatten() {
        config.insert(k.clone(), json!(toml_text(v)));
    }
    for v in config.values_mut() {
        let text = match &*v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *v = json!(cx.render(&text)?);
    }
    if let Some(db) = &c.database {
        for (k, v) in database_settings(cx, db)? {
            config.entry(k).or_insert(json!(v));
        }
    }
    Ok(config)
}

/// `database.*` for a Debezium connector reaching `service` from inside the worker.
#[cfg(feature = "run")]
pub(super) fn database_settings(
    cx: &StepContext<'_>,
    service: &str,
) -> Result<Vec<(String, String)>, StepError> {
    let db = cx.endpoint_of(service)?;
    let connect = cx.endpoint;
    let user = db.param("user")?;
    let mut out = vec![
        (
            "database.hostname".to_string(),
            connect.param_or("database_host", service).to_string(),
        ),
        (
            "database.port".to_string(),
            connect.param_or("database_port", "5432").to_string(),
        ),
        ("database.user".to_string(), user.to_string()),
        (
            "database.dbname".to_string(),
            db.param_or("database", user).to_string(),
        ),
    ];
    if let Ok(pw) = db.param("password") {
        out.push(("database.password".to_string(), pw.to_string()));
    }
    Ok(out)
}

/// A TOML value as Connect's string form (`true`, `5`, `a,b` for arrays).
#[cfg(feature = "run")]
pub(super) fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(toml_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A configuration for a report: credentials shown as `****`.
#[cfg(feature = "run")]
fn redacted(config: &Value) -> Value {
    match config {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let shown = if crate::mask::looks_like_credential(k) {
                        json!(crate::mask::MASK)
                    } else {
                        v.clone()
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(all(test, feature = "run"))]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("connect.plugins = {}", "plugins")]
    #[case(
        "connect.create = { name = \"x\", config = { \"tasks.max\" = 1 } }",
        "create"
    )]
    #[case("connect.status = { name = \"x\", within = \"5s\" }", "status")]
    #[case("connect.delete = { name = \"x\" }", "delete")]
    #[case("connect.cdc_roundtrip = {}", "cdc_roundtrip")]
    fn parses_its_verbs(#[case] src: &str, #[case] verb: &str) {
        let t: toml::Table = toml::from_str(src).unwrap();
        let a: ConnectAction = t["connect"].clone().try_into().unwrap();
        assert_eq!(a.verb(), verb);
    }

    #[rstest]
    #[case(toml::Value::Integer(1), "1")]
    #[case(toml::Value::Boolean(false), "false")]
    #[case(toml::Value::String("public.t".into()), "public.t")]
    #[case(toml::Value::Array(vec!["a".into(), "b".into()]), "a,b")]
    fn toml_values_become_connect_strings(#[case] v: toml::Value, #[case] text: &str) {
        assert_eq!(toml_text(&v), text);
    }

    #[test]
    fn reports_hide_passwords() {
        let shown = redacted(&json!({"database.password": "s3cret-xyz", "tasks.max": "1"}));
        assert_eq!(shown["database.password"], crate::mask::MASK);
        assert_eq!(shown["tasks.max"], "1");
    }
}
