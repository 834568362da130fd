//! The commands that start platforms and run checks (the `run` feature).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use platform_harness::checks::Outcome;
use platform_harness::platform::backend::{self, Backend};
use platform_harness::platform::up as up_state;
use platform_harness::report::{merge, write_reports};
use platform_harness::run::shard::{self, Shard};
use platform_harness::run::{interrupt, up as up_cmd, Session};
use platform_harness::spec::named;
use platform_harness::spec::platform::PlatformSpec;

use super::{load, SpecArgs};

#[derive(Args)]
pub struct PlatformArg {
    /// A platform file, or a named platform (`default`, `observability`, ...); as the
    /// test target, `PLATFORM=NAME` picks it too.
    #[arg(long, env = "PLATFORM", default_value = "fixtures/platform.toml")]
    pub platform: String,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub platform: PlatformArg,
    /// Only these services (comma-separated), with their dependencies.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where the platform stays up: `containers` (the default) or `kubernetes` (a
    /// namespace of the cluster of KUBECONFIG); PLATFORM_BACKEND sets it too.
    #[arg(long, env = "PLATFORM_BACKEND", value_parser = |v: &str| Backend::parse(Some(v)))]
    pub backend: Option<Backend>,
}

#[derive(Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub platform: PlatformArg,
    /// Where the `up` platform runs when its state file is gone (`kubernetes`: delete its
    /// namespace); with a state file, the state says it.
    #[arg(long, env = "PLATFORM_BACKEND", value_parser = |v: &str| Backend::parse(Some(v)))]
    pub backend: Option<Backend>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    #[arg(long, default_value = "target/platform-junit.xml")]
    junit: PathBuf,
    /// Only checks whose `suite::check` name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Leave out checks whose `suite::check` name contains this (repeatable, as libtest's
    /// `--skip`): e.g. a container `exec` check against an already-running platform.
    #[arg(long)]
    skip: Vec<String>,
    /// Checks running at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Stop the whole run after this long (e.g. "10m"); unfinished checks are errors.
    #[arg(long, value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// Run only shard I of N (e.g. 2/3): a stable part of the checks, `needs` kept together.
    #[arg(long)]
    shard: Option<Shard>,
    /// Where the services start: `containers` (the default) or `kubernetes` (a namespace of
    /// the cluster of KUBECONFIG); overrides PLATFORM_BACKEND.
    #[arg(long, value_parser = |v: &str| Backend::parse(Some(v)))]
    backend: Option<Backend>,
}

pub fn up(a: &UpArgs) -> ExitCode {
    let backend = a.backend.unwrap_or(Backend::Containers);
    with_platform(&a.platform, |spec| {
        up_cmd::up(Path::new(""), spec, &a.only, backend)
    })
}

pub fn down(a: &DownArgs) -> ExitCode {
    match platform_file(&a.platform.platform) {
        Ok(file) => up_cmd::down(Path::new(""), &file, a.backend),
        Err(code) => code,
    }
}

pub fn status(a: &PlatformArg) -> ExitCode {
    with_platform(a, |spec| up_cmd::status(Path::new(""), spec))
}

pub fn merge_junit(out: &Path, inputs: &[PathBuf]) -> ExitCode {
    match merge::merge_into(out, inputs) {
        Ok(r) => {
            println!(
                "platform-verify: merged {} report(s) into {}: {} tests, {} failures, {} errors",
                inputs.len(),
                out.display(),
                r.tests,
                r.failures,
                r.errors
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The platform file a `--platform FILE|NAME` names.
fn platform_file(arg: &str) -> Result<PathBuf, ExitCode> {
    match named::by_name(Path::new(""), arg) {
        Some(Ok((platform, _))) => Ok(platform),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
        None => Ok(PathBuf::from(arg)),
    }
}

fn with_platform(a: &PlatformArg, f: impl FnOnce(&PlatformSpec) -> ExitCode) -> ExitCode {
    let file = match platform_file(&a.platform) {
        Ok(f) => f,
        Err(code) => return code,
    };
    match PlatformSpec::load(&file) {
        Ok(spec) => f(&spec),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

pub fn run(a: &RunArgs) -> ExitCode {
    // The run layer reads the backend from PLATFORM_BACKEND, as the test target does: the
    // flag sets it, before the run starts its threads.
    if let Some(b) = a.backend {
        std::env::set_var(backend::VAR, b.name());
    }
    // First, so a signal at any moment ends in written reports and nothing left behind.
    interrupt::install();
    let spec = match load(&a.spec) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let checks: Vec<Arc<_>> = spec.checks().cloned().map(Arc::new).collect();
    let in_shard = a
        .shard
        .map(|s| shard::select(checks.iter().map(|c| c.as_ref()), s));
    let selected: BTreeSet<String> = checks
        .iter()
        .filter(|c| !c.ignore)
        .map(|c| c.id())
        .filter(|id| in_shard.as_ref().is_none_or(|s| s.contains(id)))
        .filter(|id| a.filter.as_ref().is_none_or(|f| id.contains(f.as_str())))
        .filter(|id| !a.skip.iter().any(|s| id.contains(s.as_str())))
        .collect();
    if selected.is_empty() {
        eprintln!("error: no check matches the filter");
        return ExitCode::from(2);
    }
    if let Some(s) = a.shard {
        println!("platform-verify: shard {s}: {} check(s)", selected.len());
    }
    let up = match &a.spec.endpoints {
        Some(_) => None,
        None => match up_state::find(Path::new(""), &spec.platform.file) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let started = Session::start_on(
        &spec,
        &checks,
        &selected,
        a.spec.endpoints.as_deref(),
        up.as_ref(),
    );
    let session = match started {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = session.run_concurrently(&checks, a.concurrency, a.deadline);
    write_reports(&report, session.masker(), &a.junit);
    let passed = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Passed)
        .count();
    let failed = report.checks.len() - passed;
    println!(
        "platform-verify: {passed} passed, {failed} failed ({:.1} s)",
        report.wall.as_secs_f64()
    );
    if interrupt::interrupted() {
        ExitCode::from(interrupt::EXIT_CODE)
    } else if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
