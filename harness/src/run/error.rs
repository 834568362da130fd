//! Why a run (or `up`, `down`, `status`) could not start or finish; each variant keeps the
//! typed error of the layer it came from.

use std::path::PathBuf;

use crate::platform::up::UpError;
use crate::platform::StartError;
use crate::secrets::SecretError;
use crate::spec::named::UnknownPlatform;
use crate::spec::SpecErrors;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecErrors),
    #[error(transparent)]
    UnknownPlatform(#[from] UnknownPlatform),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Up(#[from] UpError),
    /// The endpoints file lacks services the selected checks use.
    #[error(
        "{} has no endpoint for {}, which the selected checks use: add {} to it, or leave those checks out with a filter",
        file.display(),
        quoted(services),
        if services.len() == 1 { "it" } else { "them" }
    )]
    MissingEndpoints {
        file: PathBuf,
        services: Vec<String>,
    },
    /// `up --only` names services the platform does not have.
    #[error("--only: no service {} in {} (it has {})", quoted(unknown), file.display(), known.join(", "))]
    UnknownServices {
        unknown: Vec<String>,
        file: PathBuf,
        known: Vec<String>,
    },
    /// An environment setting of the run (`PLATFORM_DEADLINE`, `PLATFORM_SHARD`) that
    /// does not parse.
    #[error("{name}={value:?}: {reason}")]
    Setting {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The engine said no, or did not answer.
    #[error("{0}")]
    Engine(String),
    /// What could not be removed.
    #[error("cleanup: {}", .0.join("; "))]
    Cleanup(Vec<String>),
    #[error("writing {what}: {reason}")]
    Write { what: String, reason: String },
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_endpoints_name_the_file_and_the_services() {
        let one = RunError::MissingEndpoints {
            file: "e.toml".into(),
            services: vec!["kafka".into()],
        };
        assert_eq!(
            one.to_string(),
            "e.toml has no endpoint for `kafka`, which the selected checks use: add it to it, or leave those checks out with a filter"
        );
        let two = RunError::MissingEndpoints {
            file: "e.toml".into(),
            services: vec!["kafka".into(), "trino".into()],
        };
        assert!(two.to_string().contains("`kafka`, `trino`"), "{two}");
        assert!(two.to_string().contains("add them to it"), "{two}");
    }
}
