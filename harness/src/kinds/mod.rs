//! Check kinds: what one step can do. Each kind is one module implementing [`Action`] for
//! its verbs (parsed from the suite's `namespace.verb = {...}` table) and is listed once in
//! [`registry`]. The spec layer parses steps through the registry; the check runner runs
//! them through [`Action::run`]. Kinds know endpoints, never how a service was started.

pub mod connect;
pub mod endpoint;
pub mod exec;
pub mod http;
pub mod kafka;
pub mod kubernetes;
pub mod mlflow;
pub mod opensearch;
pub mod pipeline;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod s3;
pub mod spark;
pub mod trino;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use endpoint::Endpoint;

/// Every check kind the harness knows, in the order `validate` lists them. A new kind is
/// its module (`pub mod x;` above) and one line here.
pub fn registry() -> &'static [&'static dyn CheckKind] {
    static KINDS: &[&dyn CheckKind] = &[
        &Kind::<postgres::PostgresAction>::NEW,
        &Kind::<s3::S3Action>::NEW,
        &Kind::<kafka::KafkaAction>::NEW,
        &Kind::<mlflow::MlflowAction>::NEW,
        &Kind::<trino::TrinoAction>::NEW,
        &Kind::<http::HttpAction>::NEW,
        &Kind::<pipeline::PipelineAction>::NEW,
        &Kind::<exec::ExecAction>::NEW,
        &Kind::<redis::RedisAction>::NEW,
        &Kind::<prometheus::PrometheusAction>::NEW,
        &Kind::<opensearch::OpensearchAction>::NEW,
        &Kind::<spark::SparkAction>::NEW,
        &Kind::<connect::ConnectAction>::NEW,
        &Kind::<kubernetes::KubernetesAction>::NEW,
    ];
    KINDS
}

/// The kind registered under a namespace (`postgres`, `s3`, ...).
pub fn kind(namespace: &str) -> Option<&'static dyn CheckKind> {
    registry()
        .iter()
        .copied()
        .find(|k| k.namespace() == namespace)
}

/// A check kind as the spec layer sees it: a namespace, a default service and a parser.
pub trait CheckKind: Send + Sync {
    fn namespace(&self) -> &'static str;
    /// The service a step talks to when the suite does not say.
    fn default_service(&self) -> Option<&'static str>;
    /// Parses the kind's table (`{ query = { sql = "..." } }`); errors carry the table's
    /// spans, so they point into the suite file.
    fn parse(
        &self,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Result<Box<dyn Action>, toml::de::Error>;
    /// The JSON Schema of the kind's table, for editors and the committed schema files.
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

/// One parsed step action of a kind: what validation needs to know of it. How it runs is
/// [`Run`], in the kind's `run` module (the `run` feature: the clients).
pub trait Action: Debug + Send + Sync + Run {
    /// The verb as written in suites (`query` in `postgres.query`).
    fn verb(&self) -> &'static str;
    /// Services the action uses besides its step's own (data moving between services).
    fn extra_services(&self) -> Vec<String> {
        Vec::new()
    }
    /// Resolves relative file names against the suite file's directory when the suite
    /// loads; `Err` says which file is missing.
    fn resolve_files(&mut self, _base: &Path) -> Result<(), String> {
        Ok(())
    }
}

/// Runs a parsed step against its service, with the service's client.
#[cfg(feature = "run")]
pub trait Run {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>>;
}

/// The spec layer alone runs nothing: every action is a `Run` that has no method.
#[cfg(not(feature = "run"))]
pub trait Run {}

#[cfg(not(feature = "run"))]
impl<T: ?Sized> Run for T {}

/// What a kind's module declares about itself; [`Kind`] turns it into a [`CheckKind`].
pub trait KindInfo: Action + DeserializeOwned + schemars::JsonSchema + 'static {
    const NAMESPACE: &'static str;
    const DEFAULT_SERVICE: Option<&'static str>;
}

/// The registry entry of a kind whose action type is `A`.
pub struct Kind<A>(PhantomData<fn() -> A>);

impl<A> Kind<A> {
    pub const NEW: Self = Self(PhantomData);
}

impl<A: KindInfo> CheckKind for Kind<A> {
    fn namespace(&self) -> &'static str {
        A::NAMESPACE
    }

    fn default_service(&self) -> Option<&'static str> {
        A::DEFAULT_SERVICE
    }

    fn parse(
        &self,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Result<Box<dyn Action>, toml::de::Error> {
        Ok(Box::new(A::deserialize(table)?))
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<A>()
    }
}

/// The table of a verb that takes nothing (`redis.ping = {}`); unknown keys are errors.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Variables captured by steps, visible to later steps as `${name}`.
pub type Vars = BTreeMap<String, Value>;

/// `len` random hex digits, for names of scratch objects (topics, buckets, schemas,
/// tables) that must not meet those of another run.
#[cfg(feature = "run")]
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

/// What an action sees: its service's endpoint, the endpoints of every service its check
/// uses (for actions that move data between services), the variables captured so far, and
/// a way into the services' containers when the backend has containers.
pub struct StepContext<'a> {
    pub endpoint: &'a Endpoint,
    pub endpoints: &'a BTreeMap<String, Endpoint>,
    pub vars: &'a Vars,
    pub shell: Option<&'a dyn ServiceShell>,
    /// A readiness probe: the readiness loop probes again, so a client does not wait out
    /// a server that says it is still starting (it answers at once, and the next probe
    /// asks again) within one probe, whose time limit would then cut off the first
    /// request that gets through.
    pub probe: bool,
}

/// Runs a command inside a service's container. Backends that start containers give one;
/// an already-running platform (endpoints mode) has none.
pub trait ServiceShell: Send + Sync {
    /// Runs `argv` in the container of `service`; gives up after `timeout`.
    fn exec<'a>(
        &'a self,
        service: &'a str,
        argv: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, String>>;
}

/// What a finished command left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
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
        crate::template::render(text, |k| {
            self.vars.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .map_err(StepError::Error)
    }
}

/// A value for a message, cut so a large body does not flood the report.
pub fn show(v: &Value) -> String {
    show_up_to(v, 300)
}

/// `show` with a chosen limit in characters; masked before it is cut.
pub fn show_up_to(v: &Value, max: usize) -> String {
    crate::mask::clip(&v.to_string(), max)
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

    #[test]
    fn namespaces_are_unique() {
        let mut names: Vec<_> = super::registry().iter().map(|k| k.namespace()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
