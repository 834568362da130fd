//! A small typed client for MLflow's tracking REST API (`/api/2.0/mlflow/...`) and its
//! artifact proxy (`/api/2.0/mlflow-artifacts/...`), over reqwest.
//!
//! No well-kept Rust MLflow client exists (the crates on crates.io are unmaintained or
//! cover a fraction of the API), and the REST API is small and documented, so this speaks
//! it directly. Only the endpoints the checks use are here.

mod artifacts;
mod error;
mod tracking;
mod transport;
mod types;

pub use artifacts::{artifact_segments, proxied_artifact_root};
pub use error::Error;
pub use transport::Client;
pub use types::{Experiment, FileInfo, KeyValue, Metric, Run, RunData, RunInfo};
