//! What a run produced, and the writers that turn it into JUnit XML, Markdown and console
//! lines. Writers mask secrets; the records themselves hold raw text.

pub mod console;
pub mod junit;
pub mod summary;

use std::time::Duration;

use crate::checks::{Outcome, StepRecord};
use crate::platform::ServiceStart;
use crate::spec::suite::Location;

#[derive(Debug, Clone)]
pub struct CheckRecord {
    pub suite: String,
    pub name: String,
    pub location: Location,
    pub outcome: Outcome,
    pub duration: Duration,
    pub steps: Vec<StepRecord>,
    /// Last log lines of the services the check used, when it did not pass.
    pub service_logs: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub checks: Vec<CheckRecord>,
    pub services: Vec<ServiceStart>,
    pub wall: Duration,
}
