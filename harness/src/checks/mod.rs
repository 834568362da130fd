//! Check executors. A check is a sequence of steps; a step runs one action against one
//! service's endpoint, then captures values and asserts on its JSON output.

pub mod assert;
pub mod http;
pub mod kafka;
pub mod mlflow;
pub mod pipeline;
pub mod postgres;
mod runner;
pub mod s3;
pub mod trino;

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json_path::JsonPath;

use crate::platform::endpoint::Endpoint;
use crate::spec::template;

pub use runner::{run_check, CheckRun, Outcome, StepRecord};

/// Variables captured by steps, visible to later steps as `${name}`.
pub type Vars = BTreeMap<String, Value>;

/// `len` random hex digits, for names of scratch objects (topics, buckets, schemas,
/// tables) that must not meet those of another run.
pub(crate) fn unique_id(len: usize) -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(len.min(id.len()));
    id
}

/// Why a step did not pass. The split is JUnit's: a `Failure` is an expectation about the
/// service that did not hold; an `Error` is anything that kept the check from judging
/// (unreachable service, bad input, a predecessor that failed).
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    Failure(String),
    Error(String),
}

impl StepError {
    pub fn message(&self) -> &str {
        match self {
            Self::Failure(m) | Self::Error(m) => m,
        }
    }

    /// The same kind of error with context in front.
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        match self {
            Self::Failure(m) => Self::Failure(format!("{prefix}: {m}")),
            Self::Error(m) => Self::Error(format!("{prefix}: {m}")),
        }
    }
}

/// One action of a step; the namespace is the key in the suite file (`postgres.query`).
#[derive(Debug, Clone)]
pub enum Action {
    Postgres(postgres::PostgresAction),
    S3(s3::S3Action),
    Kafka(kafka::KafkaAction),
    Mlflow(mlflow::MlflowAction),
    Trino(trino::TrinoAction),
    Http(http::HttpAction),
    Pipeline(pipeline::PipelineAction),
}

impl Action {
    pub const NAMESPACES: &'static [&'static str] = &[
        "postgres", "s3", "kafka", "mlflow", "trino", "http", "pipeline",
    ];

    /// `namespace.verb`, as written in suites.
    pub fn kind(&self) -> String {
        match self {
            Self::Postgres(a) => format!("postgres.{}", a.verb()),
            Self::S3(a) => format!("s3.{}", a.verb()),
            Self::Kafka(a) => format!("kafka.{}", a.verb()),
            Self::Mlflow(a) => format!("mlflow.{}", a.verb()),
            Self::Trino(a) => format!("trino.{}", a.verb()),
            Self::Http(a) => format!("http.{}", a.verb()),
            Self::Pipeline(a) => format!("pipeline.{}", a.verb()),
        }
    }

    /// Services the action uses besides its step's own (data moving between services).
    pub fn extra_services(&self) -> Vec<String> {
        match self {
            Self::Pipeline(a) => a.extra_services(),
            _ => Vec::new(),
        }
    }

    /// Resolves the action's relative file names against the platform spec's directory
    /// (`fixtures/`) when the suite loads; `Err` says which file is missing.
    pub fn resolve_files(&mut self, base: &std::path::Path) -> Result<(), String> {
        match self {
            Self::Pipeline(a) => a.resolve_files(base),
            _ => Ok(()),
        }
    }

    /// The service a step talks to when the suite does not say.
    pub fn default_service(&self) -> Option<&'static str> {
        match self {
            Self::Postgres(_) => Some("postgres"),
            Self::S3(_) => Some("minio"),
            Self::Kafka(_) => Some("kafka"),
            Self::Mlflow(_) => Some("mlflow"),
            Self::Trino(_) => Some("trino"),
            Self::Http(_) | Self::Pipeline(_) => None,
        }
    }

    pub async fn run(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        match self {
            Self::Postgres(a) => a.run(cx).await,
            Self::S3(a) => a.run(cx).await,
            Self::Kafka(a) => a.run(cx).await,
            Self::Mlflow(a) => a.run(cx).await,
            Self::Trino(a) => a.run(cx).await,
            Self::Http(a) => a.run(cx).await,
            Self::Pipeline(a) => a.run(cx).await,
        }
    }
}

/// What an action sees: its service's endpoint, the endpoints of every service its check
/// uses (for actions that move data between services) and the variables captured so far.
pub struct StepContext<'a> {
    pub endpoint: &'a Endpoint,
    pub endpoints: &'a BTreeMap<String, Endpoint>,
    pub vars: &'a Vars,
}

impl StepContext<'_> {
    /// Another service's endpoint; the action must have named it in `extra_services`.
    pub fn endpoint_of(&self, service: &str) -> Result<&Endpoint, StepError> {
        self.endpoints
            .get(service)
            .ok_or_else(|| StepError::Error(format!("no endpoint for service `{service}`")))
    }

    /// Renders `${var}` with captured variables. An unknown variable is an error in the
    /// suite, reported as such.
    pub fn render(&self, text: &str) -> Result<String, StepError> {
        template::render(text, |k| {
            self.vars.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .map_err(StepError::Error)
    }
}

/// `capture = { run_id = "$.run.info.run_id" }`.
#[derive(Debug, Clone)]
pub struct Capture {
    pub var: String,
    pub path_text: String,
    pub path: JsonPath,
}

impl Capture {
    pub fn new(var: &str, path: &str) -> Result<Self, String> {
        Ok(Self {
            var: var.to_string(),
            path_text: path.to_string(),
            path: JsonPath::parse(path).map_err(|e| e.to_string())?,
        })
    }

    pub fn apply(&self, output: &Value, vars: &mut Vars) -> Result<(), StepError> {
        let nodes = self.path.query(output).all();
        match nodes.as_slice() {
            [one] => {
                vars.insert(self.var.clone(), (*one).clone());
                Ok(())
            }
            other => Err(StepError::Failure(format!(
                "capture `{}`: expected {} to select one value, it selects {}",
                self.var,
                self.path_text,
                other.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    #[rstest]
    #[case(8)]
    #[case(12)]
    #[case(99)]
    fn unique_ids_are_hex_of_the_asked_length(#[case] len: usize) {
        let (a, b) = (super::unique_id(len), super::unique_id(len));
        assert_eq!(a.len(), len.min(32));
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
