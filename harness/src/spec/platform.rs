//! `platform.toml`: the services a run may start, how to start them and when they are ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::error::{SpecError, SpecErrors};
use super::graph;
use super::template;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlatformFile {
    /// Suite files shared with other platforms, relative to this file's directory.
    #[serde(default)]
    #[schemars(with = "Vec<PathBuf>")]
    include_suites: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretSource>")]
    secrets: BTreeMap<String, Spanned<SecretSource>>,
    #[schemars(with = "BTreeMap<String, ServiceFile>")]
    services: BTreeMap<String, Spanned<ServiceFile>>,
}

/// Where a secret's value comes from. Values never appear in a spec that reports quote.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Environment variable holding the value.
    pub env: Option<String>,
    /// File holding the value (trailing newline trimmed).
    pub file: Option<PathBuf>,
    /// Used when `env` is unset: fine for throwaway test containers, never for staging.
    pub default: Option<String>,
}

/// `default` is a value: `{:?}` shows only that there is one.
impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("default", &self.default.as_ref().map(|_| crate::mask::MASK))
            .finish()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    image: String,
    upstream_image: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    ports: BTreeMap<String, u16>,
    #[serde(default)]
    #[schemars(with = "Vec<CopySpec>")]
    copy: Vec<Spanned<CopySpec>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    depends_on: Vec<Spanned<String>>,
    /// Services it talks to once running but does not need to start (Trino's lake catalog
    /// on MinIO): started in the same run beside it, and awaited by its checks, not by its
    /// start.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    uses: Vec<Spanned<String>>,
    #[schemars(with = "Vec<ReadyFile>")]
    ready: Vec<Spanned<ReadyFile>>,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    startup_timeout: Option<Duration>,
    /// A size with a unit ("512 MiB") or bytes.
    #[schemars(with = "Option<serde_json::Value>")]
    memory: Option<bytesize::ByteSize>,
    #[serde(default)]
    after_start: Vec<Vec<String>>,
    #[serde(default)]
    endpoint: BTreeMap<String, String>,
    /// Its time from container start to ready when started alone on this kind of machine
    /// (the benchmark prints it as `bare`): ranks the start on the critical path.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    expected_ready: Option<Duration>,
    /// How many cores its start keeps busy (CPU time to ready / time to ready, as the
    /// benchmark prints it): limits how many heavy starts overlap.
    start_cores: Option<f64>,
    /// Absolute container paths mounted in memory (tmpfs), gone with the container: a
    /// database's data directory, which a test platform need not keep. Counted in `memory`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    tmpfs: Vec<Spanned<String>>,
}

/// A file or directory copied into the container before it starts.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopySpec {
    /// Relative to the platform file's directory.
    pub from: PathBuf,
    /// Absolute path in the container; for a directory, its files land below it.
    pub to: String,
    /// Render `${secret.*}` in the files' contents (for configs that need credentials).
    #[serde(default)]
    pub template: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReadyFile {
    log: Option<String>,
    times: Option<usize>,
    http: Option<String>,
    port: Option<String>,
    status: Option<u16>,
    body_matches: Option<String>,
    tcp: Option<String>,
    command: Option<Vec<String>>,
    /// A check step's action, run from the host against the service's endpoint:
    /// `{ step = { trino.query.sql = "SELECT 1" } }`. Its error is "not ready yet".
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    step: Option<toml::Table>,
}

/// When a started service counts as ready. All conditions of a service must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadyCondition {
    /// The line appears `times` times in the container's output.
    Log { line: String, times: usize },
    /// An HTTP GET on the named port answers `status`, with a body matching the regex if given.
    Http {
        port: String,
        path: String,
        status: u16,
        body_matches: Option<String>,
    },
    /// A TCP connection to the named port is accepted.
    Tcp { port: String },
    /// A command run in the container exits 0.
    Command { argv: Vec<String> },
    /// A check kind's action succeeds against the service's endpoint (from the host).
    Step(ReadyStep),
}

/// A check step used as a readiness probe: the real client's own judgement of "ready".
#[derive(Debug, Clone)]
pub struct ReadyStep {
    /// `trino.query`, for messages.
    pub name: String,
    pub action: std::sync::Arc<dyn crate::kinds::Action>,
}

impl PartialEq for ReadyStep {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && format!("{:?}", self.action) == format!("{:?}", other.action)
    }
}

impl std::fmt::Display for ReadyCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Log { line, times } => write!(f, "log line {line:?} seen {times} time(s)"),
            Self::Http {
                port,
                path,
                status,
                body_matches,
            } => {
                write!(f, "HTTP GET {path} on port `{port}` answers {status}")?;
                if let Some(re) = body_matches {
                    write!(f, " with a body matching /{re}/")?;
                }
                Ok(())
            }
            Self::Tcp { port } => write!(f, "TCP connect to port `{port}`"),
            Self::Command { argv } => write!(f, "command {argv:?} exits 0"),
            Self::Step(step) => write!(f, "step `{}` succeeds", step.name),
        }
    }
}

/// One service of the platform, validated.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub upstream_image: Option<String>,
    /// Values may hold `${secret.*}`.
    pub env: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// Named container ports.
    pub ports: BTreeMap<String, u16>,
    pub copy: Vec<CopySpec>,
    /// Ready before it starts.
    pub depends_on: Vec<String>,
    /// Running beside it: ready before its checks run, not before it starts.
    pub uses: Vec<String>,
    pub ready: Vec<ReadyCondition>,
    pub startup_timeout: Duration,
    pub memory: Option<u64>,
    /// Commands run in the container once it started and its ports are known, before
    /// readiness: `${port.NAME}` is the host port (for brokers that advertise it).
    pub after_start: Vec<Vec<String>>,
    /// Parameters handed to checks (user, database, ...). May hold `${secret.*}`.
    pub endpoint: BTreeMap<String, String>,
    pub expected_ready: Duration,
    pub start_cores: f64,
    /// Container paths mounted in memory.
    pub tmpfs: Vec<String>,
}

/// The validated platform.
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    pub file: PathBuf,
    /// Suites this platform shares with others, besides its own suites folder.
    pub include_suites: Vec<PathBuf>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Made from an endpoints file alone: suites may name any service; a run checks that
    /// the file has the ones its selected checks use.
    pub endpoints_only: bool,
}

pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// A service that declares nothing ranks as a ten-second start and is never held back
/// (it reserves no cores): the scheduler acts on what it is told, not on guesses.
pub const DEFAULT_EXPECTED_READY: Duration = Duration::from_secs(10);
pub const DEFAULT_START_CORES: f64 = 0.0;

impl PlatformSpec {
    /// Each service's dependencies and the services it uses: what must run for it to be
    /// checked (the closure of a selection starts all of them).
    pub fn runs_with(&self) -> BTreeMap<String, Vec<String>> {
        self.services
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    s.depends_on.iter().chain(&s.uses).cloned().collect(),
                )
            })
            .collect()
    }

    pub fn load(file: &Path) -> Result<Self, SpecErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| SpecError::file(file, format!("cannot read platform spec: {e}")))?;
        Self::parse(file, &source)
    }

    pub fn parse(file: &Path, source: &str) -> Result<Self, SpecErrors> {
        let raw: PlatformFile =
            toml::from_str(source).map_err(|e| SpecError::from_toml_redacted(file, source, &e))?;
        let mut errors = Vec::new();
        let err =
            |span: std::ops::Range<usize>, msg: String| SpecError::at(file, source, span, msg);

        for (name, secret) in &raw.secrets {
            let s = secret.get_ref();
            if s.env.is_none() && s.file.is_none() && s.default.is_none() {
                errors.push(err(
                    secret.span(),
                    format!("secret `{name}`: give at least one of `env`, `file`, `default`"),
                ));
            }
            if let Some(d) = &s.default {
                if let Err(m) =
                    crate::mask::check_maskable(&format!("secret `{name}`: `default`"), d)
                {
                    errors.push(err(secret.span(), m));
                }
            }
        }
        let base_dir = file.parent().unwrap_or(Path::new("."));

        let mut services = BTreeMap::new();
        for (name, spanned) in &raw.services {
            let svc = spanned.get_ref();
            let span = spanned.span();
            for dep in &svc.depends_on {
                if !raw.services.contains_key(dep.get_ref()) {
                    errors.push(err(
                        dep.span(),
                        format!(
                            "service `{name}`, field `depends_on`: service `{}` is not defined",
                            dep.get_ref()
                        ),
                    ));
                }
            }
            for used in &svc.uses {
                if let Some(problem) = uses_problem(name, used.get_ref(), svc, &raw.services) {
                    errors.push(err(
                        used.span(),
                        format!("service `{name}`, field `uses`: {problem}"),
                    ));
                }
            }
            let mut ready = Vec::new();
            if svc.ready.is_empty() {
                errors.push(err(
                    span.clone(),
                    format!(
                        "service `{name}`, field `ready`: give at least one readiness condition"
                    ),
                ));
            }
            for r in &svc.ready {
                match ready_condition(r.get_ref(), &svc.ports) {
                    Ok(c) => ready.push(c),
                    Err(msg) => errors.push(err(
                        r.span(),
                        format!("service `{name}`, field `ready`: {msg}"),
                    )),
                }
            }
            // `env` and `command` are rendered before the container exists, so only
            // secrets are known then; `after_start` and `endpoint` also see ports and host.
            let before_start = svc.env.values().chain(&svc.command).map(|t| (t, false));
            let after_start = svc
                .endpoint
                .values()
                .chain(svc.after_start.iter().flatten())
                .map(|t| (t, true));
            for (t, started) in before_start.chain(after_start) {
                let keys = match template::references(t) {
                    Ok(keys) => keys,
                    Err(e) => {
                        errors.push(err(span.clone(), format!("service `{name}`: {e}")));
                        continue;
                    }
                };
                for key in keys {
                    if let Some(problem) =
                        unknown_reference(&key, &raw.secrets, &svc.ports, started)
                    {
                        errors.push(err(span.clone(), format!("service `{name}`: {problem}")));
                    }
                }
            }
            for c in &svc.copy {
                for problem in copy_template_problems(c.get_ref(), base_dir, &raw.secrets) {
                    errors.push(err(
                        c.span(),
                        format!("service `{name}`, field `copy`: {problem}"),
                    ));
                }
            }
            for path in &svc.tmpfs {
                if let Some(problem) = tmpfs_problem(path.get_ref(), &svc.copy) {
                    errors.push(err(
                        path.span(),
                        format!("service `{name}`, field `tmpfs`: {problem}"),
                    ));
                }
            }
            if let Some(c) = svc.start_cores {
                if !(0.0..=1024.0).contains(&c) {
                    errors.push(err(
                        span.clone(),
                        format!("service `{name}`, field `start_cores`: {c} is not a number of cores (0 or more)"),
                    ));
                }
            }
            services.insert(
                name.clone(),
                ServiceSpec {
                    name: name.clone(),
                    image: svc.image.clone(),
                    upstream_image: svc.upstream_image.clone(),
                    env: svc.env.clone(),
                    command: svc.command.clone(),
                    ports: svc.ports.clone(),
                    copy: svc.copy.iter().map(|c| c.get_ref().clone()).collect(),
                    depends_on: svc.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                    uses: svc.uses.iter().map(|u| u.get_ref().clone()).collect(),
                    ready,
                    startup_timeout: svc.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
                    memory: svc.memory.map(|m| m.as_u64()),
                    after_start: svc.after_start.clone(),
                    endpoint: svc.endpoint.clone(),
                    expected_ready: svc.expected_ready.unwrap_or(DEFAULT_EXPECTED_READY),
                    start_cores: svc.start_cores.unwrap_or(DEFAULT_START_CORES),
                    tmpfs: svc.tmpfs.iter().map(|t| t.get_ref().clone()).collect(),
                },
            );
        }

        if errors.is_empty() {
            let deps = services
                .iter()
                .map(|(n, s)| (n.clone(), s.depends_on.clone()))
                .collect();
            if let Err(cycle) = graph::check_acyclic(&deps) {
                let first = &cycle[0];
                let span = raw.services[first].span();
                errors.push(err(
                    span,
                    format!(
                        "field `depends_on`: dependency cycle {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }

        let base = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut include_suites = Vec::new();
        for inc in &raw.include_suites {
            let path = base.join(inc.get_ref());
            if path.is_file() {
                include_suites.push(path);
            } else {
                errors.push(err(
                    inc.span(),
                    format!(
                        "field `include_suites`: no suite file at {} (paths start from this file's directory)",
                        path.display()
                    ),
                ));
            }
        }

        if errors.is_empty() {
            Ok(Self {
                file: file.to_path_buf(),
                endpoints_only: false,
                include_suites,
                secrets: raw
                    .secrets
                    .into_iter()
                    .map(|(k, v)| (k, v.into_inner()))
                    .collect(),
                services,
            })
        } else {
            Err(SpecErrors(errors))
        }
    }

    /// The directory relative paths in the spec start from.
    /// A platform known only by its endpoints (`platform-verify run --endpoints FILE` with
    /// no platform file): the services the file names, nothing to start. Suites are
    /// validated against these names, so a service the file lacks is an error at load.
    pub fn of_endpoints(endpoints_file: &Path, services: impl IntoIterator<Item = String>) -> Self {
        let services = services
            .into_iter()
            .map(|name| {
                let spec = ServiceSpec {
                    name: name.clone(),
                    image: String::new(),
                    upstream_image: None,
                    env: BTreeMap::new(),
                    command: Vec::new(),
                    ports: BTreeMap::new(),
                    copy: Vec::new(),
                    depends_on: Vec::new(),
                    uses: Vec::new(),
                    ready: Vec::new(),
                    startup_timeout: DEFAULT_STARTUP_TIMEOUT,
                    memory: None,
                    after_start: Vec::new(),
                    endpoint: BTreeMap::new(),
                    expected_ready: DEFAULT_EXPECTED_READY,
                    start_cores: DEFAULT_START_CORES,
                    tmpfs: Vec::new(),
                };
                (name, spec)
            })
            .collect();
        Self {
            file: endpoints_file.to_path_buf(),
            endpoints_only: true,
            include_suites: Vec::new(),
            secrets: BTreeMap::new(),
            services,
        }
    }

    /// Whether suites may name `service`.
    pub fn knows(&self, service: &str) -> bool {
        self.endpoints_only || self.services.contains_key(service)
    }

    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

fn ready_condition(r: &ReadyFile, ports: &BTreeMap<String, u16>) -> Result<ReadyCondition, String> {
    let kinds = [
        r.log.is_some(),
        r.http.is_some(),
        r.tcp.is_some(),
        r.command.is_some(),
        r.step.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("give exactly one of `log`, `http`, `tcp`, `command`, `step`".into());
    }
    let known_port = |p: &str| {
        if ports.contains_key(p) {
            Ok(p.to_string())
        } else {
            Err(format!("port `{p}` is not among the service's `ports`"))
        }
    };
    if let Some(line) = &r.log {
        if r.port.is_some() || r.status.is_some() || r.body_matches.is_some() {
            return Err("`log` takes only `times`".into());
        }
        return Ok(ReadyCondition::Log {
            line: line.clone(),
            times: r.times.unwrap_or(1).max(1),
        });
    }
    if r.times.is_some() {
        return Err("`times` goes with `log` only".into());
    }
    if let Some(path) = &r.http {
        let port = r
            .port
            .as_deref()
            .ok_or("`http` needs `port`, the name of one of the service's ports")?;
        if let Some(re) = &r.body_matches {
            regex::Regex::new(re).map_err(|e| format!("`body_matches`: {e}"))?;
        }
        return Ok(ReadyCondition::Http {
            port: known_port(port)?,
            path: path.clone(),
            status: r.status.unwrap_or(200),
            body_matches: r.body_matches.clone(),
        });
    }
    if r.port.is_some() || r.status.is_some() || r.body_matches.is_some() {
        return Err("`port`, `status`, `body_matches` go with `http` only".into());
    }
    if let Some(port) = &r.tcp {
        return Ok(ReadyCondition::Tcp {
            port: known_port(port)?,
        });
    }
    if let Some(table) = &r.step {
        return ready_step(table).map(ReadyCondition::Step);
    }
    let argv = r.command.clone().unwrap_or_default();
    if argv.is_empty() {
        return Err("`command` must not be empty".into());
    }
    Ok(ReadyCondition::Command { argv })
}

/// `{ trino.query.sql = "..." }`: one check kind's table, parsed by that kind.
fn ready_step(table: &toml::Table) -> Result<ReadyStep, String> {
    let mut entries = table.iter();
    let (Some((namespace, value)), None) = (entries.next(), entries.next()) else {
        return Err("`step` takes one action, like `{ trino.query.sql = \"SELECT 1\" }`".into());
    };
    let kind = crate::kinds::kind(namespace).ok_or_else(|| {
        format!(
            "`step`: `{namespace}` is not a check kind (run `platform-verify validate --kinds`)"
        )
    })?;
    // The kind parses from TOML text; the value is written back as an inline value.
    let text = value.to_string();
    let action = kind
        .parse(toml::de::ValueDeserializer::parse(&text).map_err(|e| format!("`step`: {e}"))?)
        .map_err(|e| format!("`step`, `{namespace}`: {}", e.message()))?;
    Ok(ReadyStep {
        name: format!("{namespace}.{}", action.verb()),
        action: std::sync::Arc::from(action),
    })
}

/// Why `service` cannot use `used`: not defined, itself, or already a dependency (which
/// is ready before it starts, more than `uses` asks).
fn uses_problem<T>(
    service: &str,
    used: &str,
    svc: &ServiceFile,
    services: &BTreeMap<String, T>,
) -> Option<String> {
    if !services.contains_key(used) {
        Some(format!("service `{used}` is not defined"))
    } else if used == service {
        Some("a service cannot use itself".into())
    } else if svc.depends_on.iter().any(|d| d.get_ref() == used) {
        Some(format!(
            "`{used}` is in `depends_on` already (ready before `{service}` starts)"
        ))
    } else {
        None
    }
}

/// Why a `tmpfs` path cannot be mounted: not absolute, or over a `copy` target, whose
/// files, put in before the start, the mount would hide.
fn tmpfs_problem(path: &str, copies: &[Spanned<CopySpec>]) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("`{path}` is not an absolute path in the container"));
    }
    copies
        .iter()
        .map(|c| &c.get_ref().to)
        .find(|to| Path::new(to).starts_with(path))
        .map(|to| format!("`{path}` would hide the files `copy` puts in `{to}` (a tmpfs is mounted over them at start)"))
}

/// A templated copy's files are read now, so that a `${secret.X}` the platform does not
/// declare (or a broken `${`) is an error before any container starts, not at its start.
fn copy_template_problems<T>(
    c: &CopySpec,
    base_dir: &Path,
    secrets: &BTreeMap<String, T>,
) -> Vec<String> {
    if !c.template {
        return Vec::new();
    }
    let from = base_dir.join(&c.from);
    let files = match files_below(&from) {
        Ok(f) => f,
        Err(e) => return vec![format!("cannot read {}: {e}", from.display())],
    };
    let mut problems = Vec::new();
    for path in files {
        let text = match std::fs::read(&path).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            Ok(Err(_)) => {
                problems.push(format!("{}: a template must be UTF-8 text", path.display()));
                continue;
            }
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        match template::references(&text) {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok(keys) => {
                for key in keys {
                    let problem = match key.strip_prefix("secret.") {
                        Some(s) if secrets.contains_key(s) => continue,
                        Some(s) => format!("secret `{s}` is not defined in [secrets]"),
                        None => "only `${secret.NAME}` can be used in a copied template \
                                 (`$$` is a literal `$`)"
                            .to_string(),
                    };
                    problems.push(format!("{}: `${{{key}}}`: {problem}", path.display()));
                }
            }
        }
    }
    problems
}

/// The files at `path`: itself, or every file below it, sorted. Iterative: a deep tree
/// cannot exhaust the stack. (What `copy` copies.)
pub fn files_below(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn unknown_reference<T>(
    key: &str,
    secrets: &BTreeMap<String, T>,
    ports: &BTreeMap<String, u16>,
    started: bool,
) -> Option<String> {
    if let Some(s) = key.strip_prefix("secret.") {
        (!secrets.contains_key(s)).then(|| format!("`${{{key}}}`: secret `{s}` is not defined"))
    } else if !started {
        Some(format!(
            "`${{{key}}}`: only `${{secret.NAME}}` can be used in `env` and `command` \
             (ports and host are known once the container runs: use `after_start`)"
        ))
    } else if let Some(p) = key.strip_prefix("port.") {
        (!ports.contains_key(p)).then(|| format!("`${{{key}}}`: port `{p}` is not defined"))
    } else if key == "host" {
        None
    } else {
        Some(format!(
            "`${{{key}}}`: only `${{secret.NAME}}`, `${{port.NAME}}` and `${{host}}` can be used here"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GOOD: &str = r#"
[secrets]
pg = { env = "PG_PASSWORD", default = "dev-default" }

[services.postgres]
image = "platform-kit/postgres:15"
env = { POSTGRES_PASSWORD = "${secret.pg}" }
ports = { sql = 5432 }
ready = [{ log = "ready to accept connections", times = 2 }]
startup_timeout = "30s"
memory = "512 MiB"
endpoint = { user = "postgres", password = "${secret.pg}" }

[services.mlflow]
image = "platform-kit/mlflow:3"
ports = { http = 5000 }
depends_on = ["postgres"]
ready = [{ http = "/health", port = "http" }]
"#;

    fn parse(src: &str) -> Result<PlatformSpec, SpecErrors> {
        PlatformSpec::parse(Path::new("platform.toml"), src)
    }

    #[test]
    fn parses_a_good_platform() {
        let p = parse(GOOD).unwrap();
        let pg = &p.services["postgres"];
        assert_eq!(pg.startup_timeout, Duration::from_secs(30));
        assert_eq!(pg.memory, Some(512 * 1024 * 1024));
        assert_eq!(
            pg.ready,
            vec![ReadyCondition::Log {
                line: "ready to accept connections".into(),
                times: 2
            }]
        );
        assert_eq!(p.services["mlflow"].depends_on, vec!["postgres"]);
        assert_eq!(
            p.services["mlflow"].startup_timeout,
            DEFAULT_STARTUP_TIMEOUT
        );
    }

    #[test]
    fn a_step_condition_and_the_start_hints_parse() {
        let src = "[services.t]\nimage = \"i\"\nports = { http = 8080 }\n\
                   ready = [{ step = { trino.query.sql = \"SELECT 1\" } }]\n\
                   expected_ready = \"16s\"\nstart_cores = 1.5\n";
        let t = &parse(src).unwrap().services["t"];
        let [ReadyCondition::Step(step)] = t.ready.as_slice() else {
            panic!("one step condition: {:?}", t.ready);
        };
        assert_eq!(step.name, "trino.query");
        assert!(format!("{:?}", step.action).contains("SELECT 1"));
        assert_eq!(
            (t.expected_ready, t.start_cores),
            (Duration::from_secs(16), 1.5)
        );
        let pg = &parse(GOOD).unwrap().services["postgres"];
        assert_eq!(
            (pg.expected_ready, pg.start_cores),
            (DEFAULT_EXPECTED_READY, DEFAULT_START_CORES)
        );
    }

    #[test]
    fn a_used_service_runs_with_it_but_is_no_dependency() {
        let src = "[services.a]\nimage = \"i\"\nports = { p = 1 }\nready = [{ tcp = \"p\" }]\n\
                   [services.b]\nimage = \"i\"\nports = { p = 1 }\nready = [{ tcp = \"p\" }]\n\
                   uses = [\"a\"]\n";
        let p = parse(src).unwrap();
        assert_eq!(p.services["b"].uses, ["a"]);
        assert!(p.services["b"].depends_on.is_empty());
        assert_eq!(p.runs_with()["b"], ["a"]);
        let both = src.replace("uses = [\"a\"]", "depends_on = [\"a\"]\nuses = [\"a\"]");
        let err = parse(&both).unwrap_err().to_string();
        assert!(
            err.contains("field `uses`: `a` is in `depends_on` already"),
            "{err}"
        );
    }

    #[test]
    fn tmpfs_paths_parse_beside_copies_they_do_not_cover() {
        let src = "[services.p]\nimage = \"i\"\nports = { sql = 5432 }\n\
                   ready = [{ tcp = \"sql\" }]\n\
                   copy = [{ from = \"initdb\", to = \"/docker-entrypoint-initdb.d\" }]\n\
                   tmpfs = [\"/var/lib/postgresql/data\", \"/docker-entrypoint\"]\n";
        let p = &parse(src).unwrap().services["p"];
        assert_eq!(p.tmpfs, ["/var/lib/postgresql/data", "/docker-entrypoint"]);
        assert!(parse(GOOD).unwrap().services["postgres"].tmpfs.is_empty());
    }

    #[rstest]
    #[case::unknown_key("imagee = \"i\"", "platform.toml:5:1: unknown field `imagee`")]
    #[case::wrong_type("startup_timeout = 5", "platform.toml:5:19:")]
    fn rejects_bad_service_fields(#[case] extra: &str, #[case] expected: &str) {
        let src = format!(
            "[services.x]\nimage = \"i\"\nports = {{ p = 1 }}\nready = [{{ tcp = \"p\" }}]\n{extra}\n"
        );
        let err = parse(&src).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
    }

    #[rstest]
    #[case::undefined_dependency(
        "depends_on = [\"nope\"]\nready = [{ tcp = \"p\" }]",
        "platform.toml:4:15: service `x`, field `depends_on`: service `nope` is not defined"
    )]
    #[case::two_conditions_in_one("ready = [{ tcp = \"p\", log = \"x\" }]", "exactly one of")]
    #[case::unknown_port("ready = [{ tcp = \"q\" }]", "port `q` is not among")]
    #[case::unknown_secret(
        "ready = [{ tcp = \"p\" }]\nenv = { A = \"${secret.nope}\" }",
        "secret `nope` is not defined"
    )]
    #[case::unknown_secret_in_command(
        "ready = [{ tcp = \"p\" }]\ncommand = [\"--uri\", \"pg://u:${secret.nope}@h\"]",
        "secret `nope` is not defined"
    )]
    #[case::port_in_env(
        "ready = [{ tcp = \"p\" }]\nenv = { A = \"${port.p}\" }",
        "only `${secret.NAME}` can be used in `env` and `command`"
    )]
    #[case::unterminated_in_endpoint(
        "ready = [{ tcp = \"p\" }]\nendpoint = { url = \"${port.p\" }",
        "unterminated"
    )]
    #[case::bad_regex(
        "ready = [{ http = \"/\", port = \"p\", body_matches = \"(\" }]",
        "`body_matches`"
    )]
    #[case::no_readiness("ready = []", "at least one readiness condition")]
    #[case::step_of_no_kind(
        "ready = [{ step = { nope.query = {} } }]",
        "`nope` is not a check kind"
    )]
    #[case::step_with_two_actions(
        "ready = [{ step = { trino.query.sql = \"1\", redis.ping = {} } }]",
        "`step` takes one action"
    )]
    #[case::step_with_a_bad_verb(
        "ready = [{ step = { trino.qurey.sql = \"1\" } }]",
        "`step`, `trino`:"
    )]
    #[case::negative_cores("ready = [{ tcp = \"p\" }]\nstart_cores = -1.0", "field `start_cores`")]
    #[case::relative_tmpfs(
        "ready = [{ tcp = \"p\" }]\ntmpfs = [\"data\"]",
        "platform.toml:5:10: service `x`, field `tmpfs`: `data` is not an absolute path"
    )]
    #[case::tmpfs_over_a_copy(
        "ready = [{ tcp = \"p\" }]\ncopy = [{ from = \"f\", to = \"/etc/x/conf\" }]\ntmpfs = [\"/etc/x\"]",
        "field `tmpfs`: `/etc/x` would hide the files `copy` puts in `/etc/x/conf`"
    )]
    #[case::undefined_use(
        "ready = [{ tcp = \"p\" }]\nuses = [\"nope\"]",
        "platform.toml:5:9: service `x`, field `uses`: service `nope` is not defined"
    )]
    #[case::uses_itself(
        "ready = [{ tcp = \"p\" }]\nuses = [\"x\"]",
        "field `uses`: a service cannot use itself"
    )]
    fn rejects_bad_semantics(#[case] body: &str, #[case] expected: &str) {
        let src = format!("[services.x]\nimage = \"i\"\nports = {{ p = 1 }}\n{body}\n");
        let err = parse(&src).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }

    #[rstest]
    #[case::declared("s3.key=${secret.pg}\n", None)]
    #[case::literal_dollar("cost=$${secret.nope}\n", None)]
    #[case::undeclared(
        "s3.key=${secret.nope}\n",
        Some("platform.toml:5:9: service `x`, field `copy`: DIR/t/a.properties: `${secret.nope}`: secret `nope` is not defined in [secrets]")
    )]
    #[case::not_a_secret(
        "u=${port.p}\n",
        Some("only `${secret.NAME}` can be used in a copied template")
    )]
    #[case::unterminated("u=${secret.pg\n", Some("unterminated"))]
    fn checks_copied_templates(#[case] content: &str, #[case] expected: Option<&str>) {
        let dir = std::env::temp_dir().join(format!(
            "harness-tpl-{}-{:x}",
            std::process::id(),
            content.len() * 31 + content.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::create_dir_all(dir.join("t")).unwrap();
        std::fs::write(dir.join("t/a.properties"), content).unwrap();
        let src = "[secrets]\npg = { env = \"PG\" }\n[services.x]\nimage = \"i\"\ncopy = [{ from = \"t\", to = \"/etc/t\", template = true }]\nready = [{ command = [\"true\"] }]\n";
        let got = PlatformSpec::parse(&dir.join("platform.toml"), src);
        match expected {
            None => assert!(got.is_ok(), "{:?}", got.err()),
            Some(e) => {
                let e = e.replace("DIR", &dir.display().to_string());
                let err = got.unwrap_err().to_string();
                assert!(err.contains(&e), "{err}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[rstest]
    #[case::inline_secret(
        "[secrets]\npg = \"Hunter2-inline\"\n[services]\n",
        "platform.toml:2:6: invalid type: string, expected struct SecretSource"
    )]
    #[case::numeric_default(
        "[secrets]\npg = { default = 77123456 }\n[services]\n",
        "invalid type: integer, expected a string"
    )]
    #[case::numeric_env(
        "[services.x]\nimage = \"i\"\nenv = { PW = 77123456 }\nready = []\n",
        "invalid type: integer, expected a string"
    )]
    #[case::short_default(
        "[secrets]\npg = { default = \"abc\" }\n[services]\n",
        "secret `pg`: `default` is 3 character(s) long"
    )]
    fn never_quotes_a_secret_value(#[case] src: &str, #[case] expected: &str) {
        let err = parse(src).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        for value in ["Hunter2-inline", "77123456", "\"abc\""] {
            assert!(!err.contains(value), "the value leaked: {err}");
        }
    }

    #[test]
    fn debug_hides_secret_defaults() {
        let shown = format!("{:?}", parse(GOOD).unwrap());
        assert!(!shown.contains("\"dev-default\""), "{shown}");
        assert!(shown.contains("PG_PASSWORD"), "{shown}");
    }

    #[test]
    fn rejects_a_dependency_cycle() {
        let src = r#"
[services.a]
image = "i"
depends_on = ["b"]
ready = [{ command = ["true"] }]
[services.b]
image = "i"
depends_on = ["a"]
ready = [{ command = ["true"] }]
"#;
        let err = parse(src).unwrap_err().to_string();
        assert!(err.contains("dependency cycle a -> b -> a"), "{err}");
        assert!(err.starts_with("platform.toml:2:1"), "{err}");
    }
}
