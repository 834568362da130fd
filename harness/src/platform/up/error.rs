//! Why a platform that stays up could not be found, attached to or recorded. Each message
//! says what to run next.

use std::path::PathBuf;

use crate::platform::StartError;

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("reading the `up` state {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the `up` state {} is unreadable ({reason}): run `platform-verify down`, then `up`", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("the `up` state {} is of another harness version ({version}): run `platform-verify down`, then `up`", path.display())]
    OtherVersion { path: PathBuf, version: u32 },
    #[error("writing the `up` state {}: {reason}", path.display())]
    Unwritable { path: PathBuf, reason: String },
    /// `PLATFORM_UP_STATE` names a state that cannot be used.
    #[error("PLATFORM_UP_STATE: {0}")]
    FromEnv(Box<UpError>),
    #[error("PLATFORM_UP_STATE={} is the `up` state of {}, not of {}", path.display(), of.display(), wanted.display())]
    OtherPlatform {
        path: PathBuf,
        of: PathBuf,
        wanted: PathBuf,
    },
    #[error("platform spec changed since `up` ({}: its spec, copied files, image or secrets): run `platform-verify down`, or `up` again", services.join(", "))]
    Changed { services: Vec<String> },
    #[error("the `up` platform's {service} is no longer running ({how}): run `platform-verify down`, or `up` again")]
    Gone { service: String, how: String },
    #[error("{service}: inspecting image {image}: {reason}")]
    Image {
        service: String,
        image: String,
        reason: String,
    },
    /// A service's endpoint or fingerprint template does not render.
    #[error("{service}: endpoint: {reason}")]
    Endpoint { service: String, reason: String },
    #[error("{0}")]
    Fingerprint(String),
    #[error(transparent)]
    Start(#[from] StartError),
    /// Anything else the engine said.
    #[error("{0}")]
    Engine(String),
    /// The same error, with the state file it concerns.
    #[error("{source} (state: {})", path.display())]
    InState { path: PathBuf, source: Box<UpError> },
}
