//! Platform backends: containers started for the run, or an already-running platform.
//! Checks only ever see `Endpoint`s.

pub mod backend;
pub mod containers;
pub mod cpu;
pub mod docker;
pub mod endpoint;
pub mod error;
pub mod external;
pub mod images;
pub mod kubernetes;
pub mod log_watch;
pub mod network;
pub mod readiness;
pub mod reaper;
pub mod render;
pub mod schedule;
pub mod shell;
pub mod up;

use std::sync::Arc;
use std::time::Duration;

pub use endpoint::Endpoint;
pub use error::StartError;

/// A progress line ("platform: kafka ready in 6.1 s"): an info event of the `platform`
/// target, which the run's subscriber prints as plain text (`report::log`).
pub(crate) fn say(line: impl AsRef<str>) {
    tracing::info!(target: "platform", "{}", line.as_ref());
}

/// A service that could not be made ready, with what it logged.
#[derive(Debug, Clone)]
pub struct ServiceFailure {
    pub service: String,
    pub message: String,
    pub log_tail: String,
}

impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service `{}` {}", self.service, self.message)
    }
}

/// One service's start, for the report.
#[derive(Debug, Clone)]
pub struct ServiceStart {
    pub service: String,
    pub image: String,
    /// Time its own start took (container start to ready).
    pub ready_in: Option<Duration>,
    /// When it was ready, counted from the platform's start (dependencies included).
    pub ready_at: Option<Duration>,
    pub failure: Option<String>,
    pub log_tail: String,
    /// CPU time its container used until ready, and until the run removed it.
    pub cpu_to_ready: Option<Duration>,
    pub cpu_total: Option<Duration>,
}

pub enum Platform {
    Containers(containers::ContainerPlatform),
    External(external::ExternalPlatform),
    /// `PLATFORM_BACKEND=kubernetes`: the services in a namespace of a cluster.
    Kubernetes(kubernetes::backend::KubeBackend),
}

impl Platform {
    pub async fn endpoint(&self, service: &str) -> Result<Endpoint, Arc<ServiceFailure>> {
        match self {
            Self::Containers(c) => c.endpoint(service).await,
            Self::External(e) => e.endpoint(service),
            Self::Kubernetes(k) => k.endpoint(service),
        }
    }

    pub async fn log_tail(&self, service: &str) -> Option<String> {
        match self {
            Self::Containers(c) => c.log_tail(service).await,
            // Its logs live wherever it runs; the harness has no access to them.
            Self::External(_) => None,
            Self::Kubernetes(k) => k.log_tail(service).await,
        }
    }

    /// The way into the services' containers, for `exec` steps; none for a platform the
    /// harness did not start.
    pub fn shell(&self) -> Option<&dyn crate::kinds::ServiceShell> {
        match self {
            Self::Containers(c) => Some(c),
            Self::Kubernetes(k) => Some(k),
            Self::External(_) => None,
        }
    }

    /// What a service whose start failed had logged by then.
    pub fn failed_start_tail(&self, service: &str) -> Option<String> {
        match self {
            Self::Containers(c) => c.failed_start_tail(service),
            // A failed start fails the whole run, its message naming the pod's state.
            Self::External(_) | Self::Kubernetes(_) => None,
        }
    }

    pub fn timings(&self) -> Vec<ServiceStart> {
        match self {
            Self::Containers(c) => c.timings(),
            Self::Kubernetes(k) => k.timings(),
            Self::External(_) => Vec::new(),
        }
    }

    /// Removes what the run started; what could not be removed is in the result.
    pub async fn shutdown(&self) -> docker::Cleanup {
        match self {
            Self::Containers(c) => c.shutdown().await,
            Self::Kubernetes(k) => k.shutdown().await,
            Self::External(_) => docker::Cleanup::default(),
        }
    }

    /// How the service's container ended, if it is no longer running.
    pub async fn exited(&self, service: &str) -> Option<String> {
        match self {
            Self::Containers(c) => c.exited(service).await,
            Self::Kubernetes(k) => k.exited(service).await,
            Self::External(_) => None,
        }
    }

    /// Problems around the run (not in a check): the reaper's, at start.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Containers(c) => c.problems(),
            Self::Kubernetes(k) => k.problems(),
            Self::External(_) => Vec::new(),
        }
    }
}
