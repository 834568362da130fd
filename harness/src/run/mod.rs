//! One run: load the specs, select what the filters leave, start those services, run each
//! check (as a libtest trial or as a task), tear everything down, write the reports.

mod error;
mod filters;
pub mod interrupt;
mod nextest;
mod session;
pub mod shard;
mod slots;
pub mod up;
mod up_forwarder;
mod up_kube;
mod warm;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

use crate::spec::{named, Check, Spec};

pub use error::RunError;
pub use session::Session;

/// Where the inputs and outputs of a run are. Environment variables override the
/// defaults below the repository root.
#[derive(Debug, Clone)]
pub struct Paths {
    pub platform: PathBuf,
    pub suites: PathBuf,
    pub junit: PathBuf,
    /// An already-running platform: no container is started.
    pub endpoints: Option<PathBuf>,
}

impl Paths {
    /// `PLATFORM=NAME` picks a named platform (see `spec::named`); `PLATFORM_SPEC` and
    /// `PLATFORM_SUITES` override its files.
    pub fn from_env(root: &Path) -> Result<Self, RunError> {
        let var = |k: &str, default: PathBuf| std::env::var_os(k).map_or(default, PathBuf::from);
        let name = std::env::var("PLATFORM").unwrap_or_else(|_| named::DEFAULT.into());
        let (platform, suites) = named::locate(root, &name)?;
        Ok(Self {
            platform: var("PLATFORM_SPEC", platform),
            suites: var("PLATFORM_SUITES", suites),
            junit: var("PLATFORM_JUNIT", root.join("target/platform-junit.xml")),
            endpoints: std::env::var_os("PLATFORM_ENDPOINTS").map(PathBuf::from),
        })
    }
}

/// Trials wait on the network, not the CPU; libtest's default (one per core) would leave
/// a 2-core machine idle while a broker starts.
const DEFAULT_TEST_THREADS: usize = 4;

/// `cargo test --test platform` entry point.
pub fn libtest_main(root: &Path) -> ExitCode {
    crate::report::log::init();
    interrupt::install();
    let (args, filters) = filters::parse(std::env::args_os());
    run_filtered(root, args, filters, true)
}

/// The whole-run bound of the test target: `PLATFORM_DEADLINE=10m` (humantime, as
/// `platform-verify --deadline`).
pub fn deadline_from_env() -> Result<Option<std::time::Duration>, RunError> {
    match std::env::var("PLATFORM_DEADLINE") {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => humantime::parse_duration(v.trim())
            .map(Some)
            .map_err(|e| RunError::Setting {
                name: "PLATFORM_DEADLINE",
                reason: format!("{e} (write it like `10m` or `90s`)"),
                value: v,
            }),
    }
}

/// The test target with explicit arguments (tests drive it in-process). It never
/// attaches to an `up` platform: tests that break services must have their own.
pub fn libtest_run(root: &Path, mut args: Arguments) -> ExitCode {
    let filters = args.filter.take().into_iter().collect();
    run_filtered(root, args, filters, false)
}

/// The test target with libtest's arguments and its positional filters (several, as
/// libtest accepts them: a check runs when it matches any). With `attach`, the run uses
/// the `up` platform when there is one.
fn run_filtered(
    root: &Path,
    mut args: Arguments,
    mut filters: Vec<String>,
    attach: bool,
) -> ExitCode {
    args.test_threads.get_or_insert(DEFAULT_TEST_THREADS);
    // From the repository root, so reports name files as a reader finds them
    // ("suites/kafka.toml:12") and relative PLATFORM_* paths mean the same wherever cargo
    // starts the binary (it starts test binaries in the crate's directory).
    let paths = match std::env::set_current_dir(root) {
        Ok(()) => Paths::from_env(Path::new("")),
        Err(_) => Paths::from_env(root),
    };
    let paths = match paths {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = match deadline_from_env() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let spec = match Spec::load_for(&paths.platform, &paths.suites, paths.endpoints.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid platform or suite spec:\n{e}");
            return ExitCode::from(2);
        }
    };
    let mut checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
    match shard::from_env() {
        Ok(Some(shard)) => {
            let keep = shard::select(checks.iter().map(|c| c.as_ref()), shard);
            checks.retain(|c| keep.contains(&c.id()));
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    if filters.len() <= 1 {
        // libtest-mimic's own filter: its summary then counts what it filtered out.
        args.filter = filters.pop();
    } else {
        checks.retain(|c| filters::matches_any(&args, &filters, &trial_stub(c)));
    }
    let listing: Vec<Trial> = checks.iter().map(|c| trial_stub(c)).collect();
    if args.list {
        return libtest_mimic::run(&args, listing).exit_code();
    }
    let selected: BTreeSet<String> = listing
        .iter()
        .filter(|t| !args.is_filtered_out(t) && !args.is_ignored(t))
        .map(|t| t.name().to_string())
        .collect();
    let up = match (attach, &paths.endpoints) {
        (true, None) => match crate::platform::up::find(Path::new(""), &paths.platform) {
            Ok(found) => found,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let per_process = nextest::process_per_test();
    let pulled = if per_process {
        nextest::prerequisites(&checks, &selected)
    } else {
        BTreeSet::new()
    };
    let all: BTreeSet<String> = selected.union(&pulled).cloned().collect();
    let started = Session::start_on(
        &spec,
        &checks,
        &all,
        paths.endpoints.as_deref(),
        up.as_ref(),
    );
    match started {
        Ok(mut session) => {
            if let Some(d) = deadline {
                session.set_deadline(d);
            }
            session.pull(checks.iter().filter(|c| pulled.contains(&c.id())).cloned());
            let junit = (!per_process || std::env::var_os("PLATFORM_JUNIT").is_some())
                .then_some(paths.junit.as_path());
            session.run_libtest(&args, checks, junit)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn trial_stub(c: &Check) -> Trial {
    Trial::test(c.id(), || Ok(())).with_ignored_flag(c.ignore)
}
