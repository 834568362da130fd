//! A warm run: the checks use the `up` platform (`platform-verify up`) when its state
//! matches the spec, and the run starts only what it lacks.

use std::collections::BTreeSet;
use std::path::Path;

use super::RunError;
use crate::platform::backend::{self, Backend};
use crate::platform::containers::Attached;
use crate::platform::docker;
use crate::platform::kubernetes::backend::KubeBackend;
use crate::platform::up::{self, UpError, UpState};
use crate::report::console;
use crate::secrets::Secrets;
use crate::spec::Spec;

pub(super) async fn attach(
    path: &Path,
    state: &UpState,
    spec: &Spec,
    secrets: &Secrets,
    needed: &BTreeSet<String>,
) -> Result<Attached, RunError> {
    let docker = docker::connect().map_err(RunError::Engine)?;
    let attached = tokio::time::timeout(
        docker::ENGINE_CALL,
        up::attach(&docker, state, &spec.platform, secrets, needed),
    )
    .await
    .map_err(|_| {
        RunError::Engine("attaching to the `up` platform: the Docker engine did not answer".into())
    })?
    .map_err(|e| UpError::InState {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    if !attached.running.is_empty() {
        console::say(format!(
            "platform: using the `up` platform ({}): {}",
            path.display(),
            attached
                .running
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(attached)
}

/// A warm run on the Kubernetes backend: the `up` namespace's services, on the ports its
/// forwarder holds.
pub(super) async fn attach_kube(
    path: &Path,
    state: &UpState,
    namespace: &str,
    spec: &Spec,
    secrets: &Secrets,
    needed: &BTreeSet<String>,
) -> Result<KubeBackend, RunError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let warm = KubeBackend::attach(&spec.platform, needed, secrets, (dir, state), namespace)
        .await
        .map_err(|e| UpError::InState {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
    console::say(format!(
        "platform: using the `up` platform ({}, namespace {namespace}): {}",
        path.display(),
        needed.iter().cloned().collect::<Vec<_>>().join(", ")
    ));
    Ok(warm)
}

/// The backend of a run: `PLATFORM_BACKEND`, or the `up` platform's when there is one and
/// the variable is unset. A backend that contradicts the `up` platform's is refused.
pub(super) fn backend_for(up: Option<&UpState>) -> Result<Backend, RunError> {
    let asked = std::env::var(backend::VAR).ok();
    choose_backend(asked.as_deref(), up.map(|s| s.namespace.is_some()))
}

/// `asked`: the variable's value; `up_on_cluster`: whether an `up` platform runs, and where.
fn choose_backend(asked: Option<&str>, up_on_cluster: Option<bool>) -> Result<Backend, RunError> {
    let backend = Backend::parse(asked).map_err(|reason| RunError::Setting {
        name: backend::VAR,
        value: asked.unwrap_or_default().to_string(),
        reason,
    })?;
    let up_on = match up_on_cluster {
        None => return Ok(backend),
        Some(true) => Backend::Kubernetes,
        Some(false) => Backend::Containers,
    };
    if asked.is_none_or(|v| v.trim().is_empty()) || backend == up_on {
        return Ok(up_on);
    }
    Err(RunError::Setting {
        name: backend::VAR,
        value: backend.name().into(),
        reason: format!(
            "the `up` platform of this spec runs on the {} backend; unset PLATFORM_BACKEND, or `platform-verify down` it",
            up_on.name()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::{choose_backend, Backend};
    use rstest::rstest;

    #[rstest]
    #[case::no_up_default(None, None, Ok(Backend::Containers))]
    #[case::no_up_asked(Some("kubernetes"), None, Ok(Backend::Kubernetes))]
    #[case::up_on_cluster_unasked(None, Some(true), Ok(Backend::Kubernetes))]
    #[case::up_on_cluster_empty(Some(""), Some(true), Ok(Backend::Kubernetes))]
    #[case::up_on_cluster_asked(Some("kubernetes"), Some(true), Ok(Backend::Kubernetes))]
    #[case::up_of_containers(None, Some(false), Ok(Backend::Containers))]
    #[case::cluster_asked_containers_up(
        Some("kubernetes"),
        Some(false),
        Err("runs on the containers backend")
    )]
    #[case::containers_asked_cluster_up(
        Some("containers"),
        Some(true),
        Err("runs on the kubernetes backend")
    )]
    #[case::unknown(Some("nomad"), None, Err("unknown backend `nomad`"))]
    fn the_up_platform_decides_unless_told_otherwise(
        #[case] asked: Option<&str>,
        #[case] up: Option<bool>,
        #[case] expected: Result<Backend, &str>,
    ) {
        match (choose_backend(asked, up), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(said)) => assert!(e.to_string().contains(said), "{e}"),
            (got, want) => panic!("{asked:?} with up {up:?}: got {got:?}, want {want:?}"),
        }
    }
}
