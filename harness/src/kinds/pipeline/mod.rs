//! Pipeline hops: moving data between services, which no single-service kind does.
//! Each verb does one hop of a data pipeline and reports how many rows it moved and how
//! fast; the suite chains the hops as checks (`needs`) and verifies the result with the
//! ordinary kinds (`postgres.query`, `trino.query`, `mlflow.*`).
//!
//! For Kafka and MinIO the hops call the other kinds' verbs (`kafka.produce`,
//! `kafka.consume`, `s3.put`), so clients, timeouts and error messages are the same as in
//! the single-service suites; for PostgreSQL, `postgres`'s connection and query.

#[cfg(feature = "run")]
mod land;
#[cfg(feature = "run")]
mod publish;
#[cfg(feature = "run")]
mod seed;

use std::path::{Path, PathBuf};
use std::time::Duration;
#[cfg(feature = "run")]
use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Deserialize;
#[cfg(feature = "run")]
use serde_json::{json, Value};

#[cfg(feature = "run")]
use super::Run;
use super::{Action, KindInfo};
#[cfg(feature = "run")]
use super::{StepContext, StepError};
#[cfg(feature = "run")]
use futures::future::BoxFuture;

/// The services the hops write to, by their names in the platform spec.
const KAFKA: &str = "kafka";
const MINIO: &str = "minio";

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PipelineAction {
    /// PostgreSQL: create a table, COPY a CSV file of the fixtures into it.
    LoadCsv(LoadCsvSpec),
    /// PostgreSQL -> Kafka: the rows of a query as change events, keyed like a CDC
    /// connector keys them.
    Publish(PublishSpec),
    /// Kafka -> MinIO: change events as JSON-lines files, one per day.
    Land(LandSpec),
    /// Reads the clock: `{now_ms}`, and with `since_ms` (an instant a hop reported, like
    /// `first_published_at_ms`) the time since. Talks to no service.
    Clock(ClockSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Milliseconds since the Unix epoch, usually a captured `${var}`.
    pub since_ms: Option<Number>,
    /// Rows moved meanwhile: adds `rows_per_second`.
    pub rows: Option<Number>,
}

/// A number written as such or as a captured variable (`count = "${rows}"`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Number {
    Literal(f64),
    Var(String),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LandSpec {
    pub topic: String,
    /// Events to land (a number or `${var}`); fewer within `within` fails the hop.
    pub count: Number,
    pub bucket: String,
    /// The table's directory in the bucket, e.g. `${schema}/orders`.
    pub prefix: String,
    /// The timestamp field of `after` whose UTC day partitions the files.
    pub partition_by: String,
    /// The partition column, as it appears in directory names (`order_day=2024-06-01`).
    #[serde(default = "default_partition_column")]
    pub partition_column: String,
    #[serde(default = "default_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
}

fn default_partition_column() -> String {
    "day".into()
}

fn default_within() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// The source table (`schema.table`), named in every event's `source`.
    pub table: String,
    /// The rows to publish; default `SELECT * FROM <table> ORDER BY <key>`.
    pub sql: Option<String>,
    pub topic: String,
    /// The column that keys the events (the table's primary key).
    pub key: String,
    /// Partitions of the topic, created if missing.
    #[serde(default = "one")]
    pub partitions: i32,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadCsvSpec {
    /// Relative to the suite file's directory. Its first line names the
    /// columns, which COPY fills in that order.
    pub file: PathBuf,
    /// `schema.table`; may hold `${var}`.
    pub table: String,
    /// Statements run first, e.g. `CREATE TABLE ...`; may hold `${var}`.
    pub create: Option<String>,
}

impl LoadCsvSpec {
    fn resolve(&mut self, base: &Path) -> Result<(), String> {
        let path = base.join(&self.file);
        if !path.is_file() {
            return Err(format!(
                "`file`: {} is not a file (resolved as {})",
                self.file.display(),
                path.display()
            ));
        }
        self.file = path;
        Ok(())
    }
}

#[cfg(feature = "run")]
impl Number {
    fn value(&self, cx: &StepContext<'_>, field: &str) -> Result<f64, StepError> {
        match self {
            Self::Literal(n) => Ok(*n),
            Self::Var(text) => {
                let rendered = cx.render(text)?;
                rendered.trim().parse().map_err(|_| {
                    StepError::Error(format!("`{field}`: {rendered:?} is not a number"))
                })
            }
        }
    }

    /// A count: a whole number, not negative.
    fn count(&self, cx: &StepContext<'_>, field: &str) -> Result<usize, StepError> {
        let n = self.value(cx, field)?;
        if n < 0.0 || n.fract() != 0.0 || n > usize::MAX as f64 {
            return Err(StepError::Error(format!("`{field}`: {n} is not a count")));
        }
        Ok(n as usize)
    }
}

impl PipelineAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::LoadCsv(_) => "load_csv",
            Self::Publish(_) => "publish",
            Self::Land(_) => "land",
            Self::Clock(_) => "clock",
        }
    }

    /// The services a hop writes to besides its step's own.
    fn services_used(&self) -> Vec<String> {
        match self {
            Self::Publish(_) => vec![KAFKA.to_string()],
            Self::Land(_) => vec![MINIO.to_string()],
            Self::LoadCsv(_) | Self::Clock(_) => Vec::new(),
        }
    }

    /// Makes relative file names absolute against `base` (the suite file's directory)
    /// and checks the files exist, so a typo fails when the suite loads.
    fn resolve_paths(&mut self, base: &Path) -> Result<(), String> {
        match self {
            Self::LoadCsv(spec) => spec.resolve(base),
            _ => Ok(()),
        }
    }

    #[cfg(feature = "run")]
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        match self {
            Self::LoadCsv(spec) => seed::load_csv(cx, spec).await,
            Self::Publish(spec) => publish::publish(cx, spec).await,
            Self::Land(spec) => land::land(cx, spec).await,
            Self::Clock(spec) => clock(cx, spec),
        }
    }
}

impl KindInfo for PipelineAction {
    const NAMESPACE: &'static str = "pipeline";
    const DEFAULT_SERVICE: Option<&'static str> = None;
}

impl Action for PipelineAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }

    fn extra_services(&self) -> Vec<String> {
        self.services_used()
    }

    fn resolve_files(&mut self, base: &Path) -> Result<(), String> {
        self.resolve_paths(base)
    }
}

#[cfg(feature = "run")]
impl Run for PipelineAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

#[cfg(feature = "run")]
fn clock(cx: &StepContext<'_>, spec: &ClockSpec) -> Result<Value, StepError> {
    let now = now_ms();
    let mut out = json!({ "now_ms": now });
    let Some(since) = &spec.since_ms else {
        return Ok(out);
    };
    let ms = (now as f64 - since.value(cx, "since_ms")?).max(0.0);
    out["ms"] = json!(ms.round());
    out["seconds"] = json!(round3(ms / 1000.0));
    if let Some(rows) = &spec.rows {
        let rows = rows.value(cx, "rows")?;
        out["rows_per_second"] = json!(per_second(rows, Duration::from_secs_f64(ms / 1000.0)));
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch, the unit hops report instants in.
#[cfg(feature = "run")]
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Throughput rounded to a tenth: enough for a report, stable to read.
#[cfg(feature = "run")]
fn per_second(rows: f64, took: Duration) -> f64 {
    let secs = took.as_secs_f64().max(1e-6);
    (rows / secs * 10.0).round() / 10.0
}

#[cfg(feature = "run")]
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The verbs a hop reuses render `${var}` in whatever they are given; data passes through
/// them as a literal (`$$` is a literal `$`).
#[cfg(feature = "run")]
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}

/// A context for another service's verb: the same variables, that service's endpoint.
#[cfg(feature = "run")]
fn context_for<'a>(cx: &'a StepContext<'a>, service: &str) -> Result<StepContext<'a>, StepError> {
    Ok(StepContext {
        endpoint: cx.endpoint_of(service)?,
        endpoints: cx.endpoints,
        vars: cx.vars,
        shell: cx.shell,
        probe: cx.probe,
    })
}

#[cfg(all(test, feature = "run"))]
mod tests {
    use super::*;
    use crate::kinds::Endpoint;
    use crate::kinds::Vars;
    use crate::template;
    use rstest::rstest;
    use std::collections::BTreeMap;

    #[rstest]
    #[case("plain", "plain")]
    #[case("Price$mart ${not_a_var}", "Price$mart ${not_a_var}")]
    #[case("$$", "$$")]
    #[case("trailing $", "trailing $")]
    fn literals_survive_rendering(#[case] text: &str, #[case] expected: &str) {
        let rendered = template::render(&literal(text), |_| None).unwrap();
        assert_eq!(rendered, expected);
    }

    #[rstest]
    #[case(12000.0, Duration::from_millis(1500), 8000.0)]
    #[case(10.0, Duration::from_secs(3), 3.3)]
    #[case(5.0, Duration::ZERO, 5000000.0)]
    fn computes_throughput(#[case] rows: f64, #[case] took: Duration, #[case] expected: f64) {
        assert_eq!(per_second(rows, took), expected);
    }

    fn parse(src: &str) -> Result<PipelineAction, String> {
        #[derive(Deserialize, JsonSchema)]
        struct Step {
            pipeline: PipelineAction,
        }
        toml::from_str::<Step>(src)
            .map(|s| s.pipeline)
            .map_err(|e| e.to_string())
    }

    #[rstest]
    #[case(
        "pipeline.load_csv = { file = 'data/orders.csv', table = 't' }",
        "load_csv",
        &[]
    )]
    #[case(
        "pipeline.publish = { table = 't', topic = 'x', key = 'id' }",
        "publish",
        &["kafka"]
    )]
    #[case(
        "pipeline.land = { topic = 'x', count = 3, bucket = 'lake', prefix = 'p', partition_by = 'ts' }",
        "land",
        &["minio"]
    )]
    #[case("pipeline.clock = { since_ms = '${t}', rows = 10 }", "clock", &[])]
    #[case("pipeline.clock = {}", "clock", &[])]
    fn parses_verbs(#[case] src: &str, #[case] verb: &str, #[case] extra: &[&str]) {
        let action = parse(src).unwrap();
        assert_eq!(action.verb(), verb);
        assert_eq!(action.extra_services(), extra);
    }

    #[rstest]
    #[case("pipeline.load_csv = { file = 'x.csv' }", "missing field `table`")]
    #[case(
        "pipeline.publish = { table = 't', topic = 'x', key = 'id', keys = 'id' }",
        "unknown field `keys`"
    )]
    #[case("pipeline.land = { topic = 'x' }", "missing field")]
    #[case("pipeline.flush = {}", "unknown variant `flush`")]
    fn rejects_bad_specs(#[case] src: &str, #[case] wanted: &str) {
        let err = parse(src).unwrap_err();
        assert!(err.contains(wanted), "{err}");
    }

    fn with_context<T>(vars: Vars, f: impl FnOnce(&StepContext<'_>) -> T) -> T {
        let endpoint = Endpoint {
            service: "trino".into(),
            host: "127.0.0.1".into(),
            ports: BTreeMap::new(),
            params: BTreeMap::new(),
        };
        let endpoints = BTreeMap::new();
        f(&StepContext {
            endpoint: &endpoint,
            endpoints: &endpoints,
            vars: &vars,
            shell: None,
            probe: false,
        })
    }

    #[test]
    fn the_clock_measures_from_a_captured_instant() {
        let vars = Vars::from([("t".to_string(), json!(now_ms() - 2000))]);
        let spec = ClockSpec {
            since_ms: Some(Number::Var("${t}".into())),
            rows: Some(Number::Literal(1000.0)),
        };
        let out = with_context(vars, |cx| clock(cx, &spec)).unwrap();
        let seconds = out["seconds"].as_f64().unwrap();
        assert!((2.0..3.0).contains(&seconds), "{out}");
        let rate = out["rows_per_second"].as_f64().unwrap();
        assert!((333.0..=500.0).contains(&rate), "{out}");
    }

    #[rstest]
    #[case(Number::Var("${t}".into()), "`count`: \"soon\" is not a number")]
    #[case(Number::Literal(2.5), "`count`: 2.5 is not a count")]
    #[case(Number::Literal(-1.0), "`count`: -1 is not a count")]
    #[case(Number::Var("${nope}".into()), "unknown variable `${nope}`")]
    fn rejects_what_is_not_a_count(#[case] n: Number, #[case] wanted: &str) {
        let vars = Vars::from([("t".to_string(), json!("soon"))]);
        let err = with_context(vars, |cx| n.count(cx, "count")).unwrap_err();
        assert!(
            matches!(&err, StepError::Error(m) if m.contains(wanted)),
            "{err:?}"
        );
    }

    #[test]
    fn counts_from_captured_numbers() {
        let vars = Vars::from([("rows".to_string(), json!(12000))]);
        let n = Number::Var("${rows}".into());
        assert_eq!(
            with_context(vars, |cx| n.count(cx, "count")).unwrap(),
            12000
        );
    }

    #[test]
    fn a_missing_fixture_fails_at_load_time() {
        let mut action =
            parse("pipeline.load_csv = { file = 'data/no-such.csv', table = 't' }").unwrap();
        let err = action.resolve_files(Path::new("../fixtures")).unwrap_err();
        assert!(err.contains("data/no-such.csv"), "{err}");
        let mut found =
            parse("pipeline.load_csv = { file = 'data/orders.csv', table = 't' }").unwrap();
        found.resolve_files(Path::new("../fixtures")).unwrap();
    }
}
