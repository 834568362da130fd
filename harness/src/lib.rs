//! Spins up a data platform with testcontainers (or takes an already-running one) and
//! verifies it with declarative suites.
//!
//! Data flow: `spec` (files) -> `platform` (endpoints) -> `checks` (outcomes) -> `report`.

pub mod checks;
pub mod clients;
pub mod platform;
pub mod report;
pub mod run;
pub mod secrets;
pub mod spec;
