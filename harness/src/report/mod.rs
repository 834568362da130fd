//! What a run produced, and the writers that turn it into JUnit XML, Markdown and console
//! lines. Writers mask secrets; the records themselves hold raw text.

pub mod console;
mod error;
pub mod junit;
pub mod limit;
pub mod log;
pub mod merge;
pub mod summary;
pub mod timeline;

pub use error::ReportError;

use std::path::Path;
use std::time::Duration;

use crate::checks::{Outcome, StepRecord};
use crate::platform::ServiceStart;
use crate::secrets::Masker;
use crate::spec::suite::Location;

#[derive(Debug, Clone)]
pub struct CheckRecord {
    pub suite: String,
    pub name: String,
    pub location: Location,
    pub outcome: Outcome,
    /// When it began, counted from the run's start (for the timeline).
    pub started_at: Duration,
    pub duration: Duration,
    pub steps: Vec<StepRecord>,
    /// Last log lines of the services the check used, when it did not pass.
    pub service_logs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub checks: Vec<CheckRecord>,
    pub services: Vec<ServiceStart>,
    /// What could not be cleaned up (containers, networks, an engine that could not be
    /// listed): never swallowed.
    pub cleanup: Vec<String>,
    pub wall: Duration,
    /// Of the wall, removing the platform's containers and network at the end: work the
    /// run's verdict waits for that no start or check accounts for.
    pub teardown: Duration,
}

/// JUnit at `junit_path`, the Markdown summary beside it and, on GitHub Actions, in the
/// job summary. Problems are reported, not fatal: the verdict stands without them.
pub fn write_reports(report: &RunReport, masker: &Masker, junit_path: &Path) {
    match junit::write(report, masker, junit_path) {
        Ok(()) => console::say(format!(
            "platform: JUnit report written to {}",
            junit_path.display()
        )),
        Err(e) => console::say(format!("error: {e}")),
    }
    let md = summary::render(report, masker);
    let md_path = junit_path.with_file_name("platform-summary.md");
    if let Err(e) = std::fs::write(&md_path, &md) {
        console::say(format!("error: writing {}: {e}", md_path.display()));
    }
    if let Some(step_summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&step_summary)
            .and_then(|mut f| f.write_all(md.as_bytes()));
        if let Err(e) = appended {
            console::say(format!("error: writing $GITHUB_STEP_SUMMARY: {e}"));
        }
    }
}
