//! Running checks: a check's steps in order through their kinds, with retries, captures
//! and expectations, into an outcome per check.

mod runner;

pub use crate::kinds::{StepContext, StepError, Vars};
pub use runner::{run_check, run_check_with, CheckRun, Outcome, StepRecord};
