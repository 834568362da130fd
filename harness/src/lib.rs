//! Spins up a data platform with testcontainers (or takes an already-running one) and
//! verifies it with declarative suites.
//!
//! Data flow: `spec` (files) -> `platform` (endpoints) -> `checks` (outcomes) -> `report`,
//! driven by `run`. Below them: `kinds`, what one step can do (parsed by `spec`, run by
//! `checks`), on the secret `mask`, `${var}` `template`s and the protocol `clients`.
//! Modules are declared bottom first; imports only point down this list
//! (`tests/layering.rs` holds it).
//!
//! Without the `run` feature (on by default) the crate is the spec layer alone: the file
//! formats and the kinds' parsers, enough to validate and list suites, with no client.

pub mod mask;
pub mod template;

#[cfg(feature = "run")]
pub mod clients;

pub mod kinds;

pub mod spec;

#[cfg(feature = "run")]
pub mod secrets;

#[cfg(feature = "run")]
pub mod platform;

#[cfg(feature = "run")]
pub mod checks;

#[cfg(feature = "run")]
pub mod report;

#[cfg(feature = "run")]
pub mod run;
