//! Spins up a data platform with testcontainers (or takes an already-running one) and
//! verifies it with declarative suites.
//!
//! Data flow: `spec` (files) -> `platform` (endpoints) -> `checks` (outcomes) -> `report`,
//! driven by `run`. Below them: `kinds`, what one step can do (parsed by `spec`, run by
//! `checks`), on the secret `mask`, `${var}` `template`s and the protocol `clients`.
//! Modules are declared bottom first; imports only point down this list
//! (`tests/layering.rs` holds it).

pub mod mask;
pub mod template;

pub mod clients;

pub mod kinds;

pub mod spec;

pub mod secrets;

pub mod platform;

pub mod checks;

pub mod report;

pub mod run;
