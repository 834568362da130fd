//! `platform-verify`: the suites as a command, for a platform the harness starts or one
//! that already runs (`--endpoints`). Exit codes: 0 all passed, 1 a check did not pass,
//! 2 bad input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use platform_harness::checks::Outcome;
use platform_harness::platform::external::ExternalPlatform;
use platform_harness::platform::up as up_state;
use platform_harness::report::{merge, write_reports};
use platform_harness::run::shard::{self, Shard};
use platform_harness::run::{interrupt, load_spec, services_for, up, Session};
use platform_harness::spec::platform::PlatformSpec;
use platform_harness::spec::{named, Spec};

#[derive(Parser)]
#[command(version, about = "Verify a data platform with declarative suites")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the suites: start the platform, or verify the one given by --endpoints.
    Run(RunArgs),
    /// List every check with the services it needs.
    List(SpecArgs),
    /// Parse and validate everything; start nothing.
    Validate(SpecArgs),
    /// Start the platform and leave it running; runs then attach to it (warm runs).
    Up(UpArgs),
    /// Remove the platform `up` started (only its containers and network).
    Down(PlatformArg),
    /// Show each service of the `up` platform: running, ready now, its ports.
    Status(PlatformArg),
    /// Merge JUnit reports (of shards) into one.
    MergeJunit {
        /// The merged report.
        out: PathBuf,
        /// The reports to merge.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct PlatformArg {
    /// A platform file, or a named platform (`default`, `observability`, ...); as the
    /// test target, `PLATFORM=NAME` picks it too.
    #[arg(long, env = "PLATFORM", default_value = "fixtures/platform.toml")]
    platform: String,
}

#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    platform: PlatformArg,
    /// Only these services (comma-separated), with their dependencies.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Args)]
struct SpecArgs {
    /// Suites folder (default: `suites`, or the named platform's `suites/NAME`).
    #[arg(long)]
    suites: Option<PathBuf>,
    /// A platform file, or a named platform (`default`, `observability`, ...: a
    /// `fixtures/platforms/NAME.toml` with its `suites/NAME/`).
    #[arg(long, default_value = "fixtures/platform.toml")]
    platform: String,
    /// An already-running platform's endpoints (see fixtures/endpoints.example.toml).
    #[arg(long)]
    endpoints: Option<PathBuf>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    #[arg(long, default_value = "target/platform-junit.xml")]
    junit: PathBuf,
    /// Only checks whose `suite::check` name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Checks running at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Stop the whole run after this long (e.g. "10m"); unfinished checks are errors.
    #[arg(long, value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
    /// Run only shard I of N (e.g. 2/3): a stable part of the checks, `needs` kept together.
    #[arg(long)]
    shard: Option<Shard>,
}

fn main() -> ExitCode {
    platform_harness::report::log::init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap's own exit code for bad flags is 2 as well; help and version are 0.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Validate(a) => validate(&a),
        Command::List(a) => list(&a),
        Command::Run(a) => run(&a),
        Command::Up(a) => with_platform(&a.platform, |spec| up::up(Path::new(""), spec, &a.only)),
        Command::Down(a) => match platform_file(&a.platform) {
            Ok(file) => up::down(Path::new(""), &file),
            Err(code) => code,
        },
        Command::Status(a) => with_platform(&a, |spec| up::status(Path::new(""), spec)),
        Command::MergeJunit { out, inputs } => match merge::merge_into(&out, &inputs) {
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
        },
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

fn load(a: &SpecArgs) -> Result<Spec, ExitCode> {
    let (platform, suites) = match named::by_name(Path::new(""), &a.platform) {
        Some(Ok(found)) => found,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
        None => (PathBuf::from(&a.platform), PathBuf::from("suites")),
    };
    let suites = a.suites.clone().unwrap_or(suites);
    let spec = load_spec(&platform, &suites, a.endpoints.as_deref()).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    if let Some(f) = &a.endpoints {
        ExternalPlatform::load(f).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
    }
    Ok(spec)
}

fn validate(a: &SpecArgs) -> ExitCode {
    match load(a) {
        Ok(spec) => {
            println!(
                "valid: {} service(s), {} suite(s), {} check(s)",
                spec.platform.services.len(),
                spec.suites.len(),
                spec.checks().count()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn list(a: &SpecArgs) -> ExitCode {
    let spec = match load(a) {
        Ok(s) => s,
        Err(code) => return code,
    };
    for c in spec.checks() {
        let needs = services_for(&spec, [c]);
        println!(
            "{}  [{}]",
            c.id(),
            needs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}

fn run(a: &RunArgs) -> ExitCode {
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
