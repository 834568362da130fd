//! A warm run: the checks use the `up` platform (`platform-verify up`) when its state
//! matches the spec, and the run starts only what it lacks.

use std::collections::BTreeSet;
use std::path::Path;

use super::RunError;
use crate::platform::containers::Attached;
use crate::platform::docker;
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
