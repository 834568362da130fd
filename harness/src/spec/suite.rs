//! `suites/*.toml`: checks made of steps, each step one action with expectations,
//! captures and a retry policy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::error::{SpecError, SpecErrors};
use super::expect::{Assertion, Capture, ExpectSpec};
use super::platform::PlatformSpec;
use super::step_table::{self, ParsedStep, StepTable};
use crate::kinds::Action;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SuiteFile {
    name: Option<String>,
    description: Option<String>,
    /// Default service of the suite's steps.
    #[schemars(with = "Option<String>")]
    service: Option<Spanned<String>>,
    /// Deadline of each check of the suite (default 5 min); a check's own `timeout` wins.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    timeout: Option<Duration>,
    #[serde(default, rename = "check")]
    #[schemars(with = "Vec<CheckFile>")]
    checks: Vec<Spanned<CheckFile>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckFile {
    #[schemars(with = "String")]
    name: Spanned<String>,
    description: Option<String>,
    #[schemars(with = "Option<String>")]
    service: Option<Spanned<String>>,
    /// Checks of the same suite that must pass first; their captures are visible here.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    needs: Vec<Spanned<String>>,
    #[serde(default)]
    ignore: bool,
    /// Deadline of the whole check.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    timeout: Option<Duration>,
    /// Read here for their spans only; `step_table` parses each step (its action belongs
    /// to a check kind).
    #[serde(default, rename = "step")]
    #[schemars(with = "Vec<super::schema::StepSchema>")]
    steps: Vec<Spanned<serde::de::IgnoredAny>>,
}

/// A step's own keys; the one other key is the action, `namespace.verb = {...}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StepFile {
    name: Option<String>,
    #[schemars(with = "Option<String>")]
    service: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<ExpectSpec>")]
    expect: Vec<Spanned<ExpectSpec>>,
    /// Variable name -> JSONPath into the step's output.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    capture: BTreeMap<String, Spanned<String>>,
    retry: Option<RetryFile>,
    /// Keep retrying until this deadline (at `retry.interval`, default 1 s).
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    within: Option<Duration>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFile {
    attempts: usize,
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    interval: Option<Duration>,
}

/// How often a step is tried before its result counts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first one; `None` with a deadline means "until the deadline".
    pub retries: Option<usize>,
    pub interval: Duration,
    pub within: Option<Duration>,
}

impl RetryPolicy {
    pub const ONCE: Self = Self {
        retries: Some(0),
        interval: Duration::from_secs(1),
        within: None,
    };
}

/// Where a check comes from, for reports ("suites/kafka.toml:12").
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub label: String,
    pub service: String,
    /// The check kind's namespace (`postgres`).
    pub kind: &'static str,
    pub action: Arc<dyn Action>,
    pub expect: Vec<Assertion>,
    pub capture: Vec<Capture>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub suite: String,
    pub name: String,
    pub description: Option<String>,
    pub location: Location,
    pub steps: Vec<Step>,
    pub needs: Vec<String>,
    pub ignore: bool,
    /// Deadline of the whole check: its own, else its suite's, else [`DEFAULT_CHECK_TIMEOUT`].
    pub timeout: Duration,
}

/// No check runs unbounded: a service that accepts a connection and then says nothing
/// must not hang the run.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(300);

impl Check {
    /// The libtest trial name: `suite::check`.
    pub fn id(&self) -> String {
        format!("{}::{}", self.suite, self.name)
    }

    /// The ids (`suite::check`) of the checks it needs: `needs` names checks of its suite.
    pub fn needed_ids(&self) -> Vec<String> {
        self.needs
            .iter()
            .map(|n| format!("{}::{n}", self.suite))
            .collect()
    }

    /// Services this check talks to (not counting their dependencies).
    pub fn services(&self) -> BTreeSet<String> {
        self.steps
            .iter()
            .flat_map(|s| std::iter::once(s.service.clone()).chain(s.action.extra_services()))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub checks: Vec<Check>,
}

impl Suite {
    pub fn load(file: &Path, platform: &PlatformSpec) -> Result<Self, SpecErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| SpecError::file(file, format!("cannot read suite: {e}")))?;
        Self::parse(file, &source, platform)
    }

    pub fn parse(file: &Path, source: &str, platform: &PlatformSpec) -> Result<Self, SpecErrors> {
        // Parsed once into the span-keeping tree: the typed fields come from it, and so do
        // the step tables the kinds parse.
        let toml_error = |e: toml::de::Error| SpecError::from_toml(file, source, &e);
        let root = toml::de::DeTable::parse(source).map_err(toml_error)?;
        let mut step_tables = step_table::steps_of(root.get_ref());
        let raw = SuiteFile::deserialize(toml::de::Deserializer::from(root)).map_err(toml_error)?;
        let suite_dir = file.parent().unwrap_or(Path::new(""));
        let err =
            |span: std::ops::Range<usize>, msg: String| SpecError::at(file, source, span, msg);
        let mut errors = Vec::new();
        let name = raw.name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let known_service = |s: &Spanned<String>, errors: &mut Vec<SpecError>| {
            if !platform.knows(s.get_ref()) {
                errors.push(err(
                    s.span(),
                    format!(
                        "field `service`: service `{}` is not defined in {}",
                        s.get_ref(),
                        platform.file.display()
                    ),
                ));
            }
        };
        if let Some(s) = &raw.service {
            known_service(s, &mut errors);
        }

        let mut checks = Vec::new();
        let mut seen = BTreeSet::new();
        // Variables each check ends with (its needs' and its own captures), for `${var}`
        // checks in the checks that need it.
        let mut captured: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (check_index, spanned) in raw.checks.iter().enumerate() {
            let c = spanned.get_ref();
            let check_name = c.name.get_ref().clone();
            if !seen.insert(check_name.clone()) {
                errors.push(err(
                    c.name.span(),
                    format!("field `name`: check `{check_name}` is defined twice"),
                ));
            }
            if check_name.is_empty() || check_name.contains("::") {
                errors.push(err(
                    c.name.span(),
                    "field `name`: must be non-empty and must not contain `::`".into(),
                ));
            }
            if let Some(s) = &c.service {
                known_service(s, &mut errors);
            }
            for n in &c.needs {
                let defined_before = raw
                    .checks
                    .iter()
                    .take_while(|o| !std::ptr::eq(o.get_ref(), c))
                    .any(|o| o.get_ref().name.get_ref() == n.get_ref());
                if !defined_before {
                    errors.push(err(
                        n.span(),
                        format!(
                            "field `needs`: `{}` is not a check defined earlier in this suite",
                            n.get_ref()
                        ),
                    ));
                }
            }
            if c.steps.is_empty() {
                errors.push(err(
                    spanned.span(),
                    format!("check `{check_name}`: give at least one `[[check.step]]`"),
                ));
            }
            let mut steps = Vec::new();
            let tables = step_tables
                .get_mut(check_index)
                .map(std::mem::take)
                .unwrap_or_default();
            let mut defined: BTreeSet<String> = c
                .needs
                .iter()
                .filter_map(|n| captured.get(n.get_ref()))
                .flatten()
                .cloned()
                .collect();
            for (i, s) in tables.into_iter().enumerate() {
                match build_step(s, &defined, i, c, &raw, suite_dir, platform) {
                    Ok(step) => {
                        defined.extend(step.capture.iter().map(|c| c.var.clone()));
                        steps.push(step)
                    }
                    Err((span, msg)) => errors.push(err(
                        span,
                        format!("check `{check_name}`, step {}: {msg}", i + 1),
                    )),
                }
            }
            captured.insert(check_name.clone(), defined);
            checks.push(Check {
                suite: name.clone(),
                name: check_name,
                description: c.description.clone(),
                location: Location {
                    file: file.to_path_buf(),
                    line: SpecError::at(file, source, spanned.span(), "").line,
                },
                steps,
                needs: c.needs.iter().map(|n| n.get_ref().clone()).collect(),
                ignore: c.ignore,
                timeout: c.timeout.or(raw.timeout).unwrap_or(DEFAULT_CHECK_TIMEOUT),
            });
        }
        if errors.is_empty() {
            Ok(Self {
                name,
                description: raw.description,
                file: file.to_path_buf(),
                checks,
            })
        } else {
            Err(SpecErrors(errors))
        }
    }
}

/// A step that does not build: where in the file, and why.
pub(super) type StepError = (std::ops::Range<usize>, String);

fn build_step(
    table: StepTable,
    defined: &BTreeSet<String>,
    index: usize,
    check: &CheckFile,
    suite: &SuiteFile,
    suite_dir: &Path,
    platform: &PlatformSpec,
) -> Result<Step, StepError> {
    let span = table.span.clone();
    let ParsedStep {
        own: s,
        kind,
        mut action,
        references,
    } = table.parse()?;
    let s = &s;
    for (name, at) in references {
        let known = match name.strip_prefix("secret.") {
            Some(secret) => {
                return Err((
                    at,
                    if platform.secrets.contains_key(secret) {
                        format!("`${{{name}}}`: suites cannot read secrets; a step gets credentials from its service's endpoint")
                    } else {
                        format!(
                            "`${{{name}}}`: no secret `{secret}` is declared in {}",
                            platform.file.display()
                        )
                    },
                ))
            }
            None => defined.contains(&name),
        };
        if !known {
            return Err((
                at,
                format!("`${{{name}}}` is not captured by an earlier step of this check or by a check it needs"),
            ));
        }
    }
    // Data files are named relative to the suite, so a suite runs the same against any
    // platform file, or none (endpoints mode).
    action
        .resolve_files(suite_dir)
        .map_err(|m| (span.clone(), m))?;
    let kind_name = |action: &dyn Action| match action.verb() {
        "" => kind.namespace().to_string(),
        verb => format!("{}.{verb}", kind.namespace()),
    };
    let explicit = s
        .service
        .as_ref()
        .or(check.service.as_ref())
        .or(suite.service.as_ref());
    let service = match explicit {
        Some(sv) => sv.get_ref().clone(),
        None => kind.default_service().map(str::to_string).ok_or_else(|| {
            (
                span.clone(),
                format!(
                    "field `service`: `{}` needs a service to talk to",
                    kind_name(action.as_ref())
                ),
            )
        })?,
    };
    for extra in action.extra_services() {
        if !platform.knows(&extra) {
            return Err((
                span.clone(),
                format!("service `{extra}` is not defined in the platform spec"),
            ));
        }
    }
    if !platform.knows(&service) {
        let at = s.service.as_ref().map_or(span.clone(), |v| v.span());
        return Err((
            at,
            format!("field `service`: service `{service}` is not defined in the platform spec"),
        ));
    }
    let expect = s
        .expect
        .iter()
        .map(|e| {
            e.get_ref()
                .compile()
                .map_err(|m| (e.span(), format!("field `expect`: {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let capture = s
        .capture
        .iter()
        .map(|(var, path)| {
            Capture::new(var, path.get_ref())
                .map_err(|m| (path.span(), format!("field `capture.{var}`: {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let retry = match (&s.retry, s.within) {
        (None, None) => RetryPolicy::ONCE,
        (r, within) => RetryPolicy {
            retries: r.as_ref().map(|r| r.attempts.saturating_sub(1)),
            interval: r
                .as_ref()
                .and_then(|r| r.interval)
                .unwrap_or(Duration::from_secs(1)),
            within,
        },
    };
    Ok(Step {
        label: s
            .name
            .clone()
            .unwrap_or_else(|| format!("{} #{}", kind_name(action.as_ref()), index + 1)),
        service,
        kind: kind.namespace(),
        action: Arc::from(action),
        expect,
        capture,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn platform() -> PlatformSpec {
        let src = r#"
[secrets]
pw = { default = "a-long-password" }

[services.postgres]
image = "postgres:15"
ports = { sql = 5432 }
ready = [{ tcp = "sql" }]
endpoint = { user = "u", password = "${secret.pw}" }
"#;
        PlatformSpec::parse(Path::new("platform.toml"), src).expect("platform")
    }

    fn parse(src: &str) -> Result<Suite, String> {
        Suite::parse(Path::new("s.toml"), src, &platform()).map_err(|e| e.to_string())
    }

    const STEP: &str = "[[check]]\nname = \"a\"\n[[check.step]]\n";

    #[rstest]
    #[case::unknown_verb(
        "postgres.qurey.sql = \"select 1\"",
        "s.toml:4:10: check `a`, step 1: unknown variant `qurey`"
    )]
    #[case::unknown_key(
        "postgres.query.sql = \"select 1\"\nfrob = 1",
        "s.toml:5:1: check `a`, step 1: unknown field `frob`"
    )]
    #[case::two_actions(
        "postgres.query.sql = \"select 1\"\ns3.list_buckets = {}",
        "s.toml:5:1: check `a`, step 1: give one action per step, found `postgres` and `s3`"
    )]
    #[case::no_action("name = \"x\"", "give one action, one of: postgres, s3")]
    #[case::bad_action_field(
        "postgres.query = { sql = \"select 1\", limit = 3 }",
        "s.toml:4:38: check `a`, step 1: unknown field `limit`"
    )]
    #[case::uncaptured_var(
        "postgres.query.sql = \"select ${x}\"",
        "s.toml:4:22: check `a`, step 1: `${x}` is not captured"
    )]
    #[case::var_in_expect(
        "postgres.query.sql = \"select 1\"\nexpect = [{ path = \"$\", equals = \"${y}\" }]",
        "`${y}` is not captured"
    )]
    #[case::declared_secret(
        "postgres.query.sql = \"select '${secret.pw}'\"",
        "suites cannot read secrets"
    )]
    #[case::undeclared_secret(
        "postgres.query.sql = \"select '${secret.nope}'\"",
        "no secret `nope` is declared in platform.toml"
    )]
    #[case::unterminated("postgres.query.sql = \"select '${x'\"", "unterminated `${`")]
    fn rejects_bad_steps_where_they_are(#[case] step: &str, #[case] expected: &str) {
        let err = parse(&format!("{STEP}{step}\n")).expect_err("rejected");
        assert!(err.contains(expected), "{err}");
    }

    #[test]
    fn variables_come_from_earlier_steps_and_needed_checks() {
        let src = r#"
[[check]]
name = "first"
[[check.step]]
postgres.query.sql = "select 1 as x"
capture = { x = "$.rows[0].x" }
[[check.step]]
postgres.query.sql = "select ${x} as y, '$${literal}'"
expect = [{ path = "$.rows[0].y", equals = "${x}" }]
capture = { y = "$.rows[0].y" }

[[check]]
name = "second"
needs = ["first"]
[[check.step]]
postgres.query.sql = "select ${x} + ${y}"
"#;
        let suite = parse(src).expect("valid");
        assert_eq!(suite.checks[1].steps[0].kind, "postgres");
        assert_eq!(suite.checks[1].steps[0].label, "postgres.query #1");
        // A check that does not need `first` cannot use its captures.
        let err = parse(&src.replace("needs = [\"first\"]\n", "")).expect_err("rejected");
        assert!(err.contains("`${x}` is not captured"), "{err}");
    }
}
