//! One run: load the specs, select what the filters leave, start those services, run each
//! check (as a libtest trial or as a task), tear everything down, write the reports.

mod filters;
mod interrupt;
mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::Trial;

use crate::spec::{graph, Check, Spec};

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
    pub fn from_env(root: &Path) -> Self {
        let var = |k: &str, default: PathBuf| std::env::var_os(k).map_or(default, PathBuf::from);
        Self {
            platform: var("PLATFORM_SPEC", root.join("fixtures/platform.toml")),
            suites: var("PLATFORM_SUITES", root.join("suites")),
            junit: var("PLATFORM_JUNIT", root.join("target/platform-junit.xml")),
            endpoints: std::env::var_os("PLATFORM_ENDPOINTS").map(PathBuf::from),
        }
    }
}

/// Trials wait on the network, not the CPU; libtest's default (one per core) would leave
/// a 2-core machine idle while a broker starts.
const DEFAULT_TEST_THREADS: usize = 4;

/// `cargo test --test platform` entry point.
pub fn libtest_main(root: &Path) -> ExitCode {
    let (mut args, mut filters) = filters::parse(std::env::args_os());
    args.test_threads.get_or_insert(DEFAULT_TEST_THREADS);
    // From the repository root, so reports name files as a reader finds them
    // ("suites/kafka.toml:12") and relative PLATFORM_* paths mean the same wherever cargo
    // starts the binary (it starts test binaries in the crate's directory).
    let paths = match std::env::set_current_dir(root) {
        Ok(()) => Paths::from_env(Path::new("")),
        Err(_) => Paths::from_env(root),
    };
    let spec = match Spec::load(&paths.platform, &paths.suites) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid platform or suite spec:\n{e}");
            return ExitCode::from(2);
        }
    };
    let mut checks: Vec<Arc<Check>> = spec.checks().cloned().map(Arc::new).collect();
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
    match Session::start(&spec, &checks, &selected, paths.endpoints.as_deref()) {
        Ok(session) => session.run_libtest(&args, checks, &paths.junit),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn trial_stub(c: &Check) -> Trial {
    Trial::test(c.id(), || Ok(())).with_ignored_flag(c.ignore)
}

/// The services the selected checks talk to, with their dependencies.
pub fn services_for<'a>(
    spec: &Spec,
    checks: impl IntoIterator<Item = &'a Check>,
) -> BTreeSet<String> {
    let deps: BTreeMap<String, Vec<String>> = spec
        .platform
        .services
        .iter()
        .map(|(n, s)| (n.clone(), s.depends_on.clone()))
        .collect();
    let wanted: BTreeSet<String> = checks.into_iter().flat_map(|c| c.services()).collect();
    graph::closure(wanted.iter().map(String::as_str), &deps)
}
