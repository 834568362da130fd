//! A warm run: the checks use the `up` platform (`platform-verify up`) when its state
//! matches the spec, and the run starts only what it lacks.

use std::collections::BTreeSet;
use std::path::Path;

use crate::platform::containers::Attached;
use crate::platform::docker;
use crate::platform::up::{self, UpState};
use crate::report::console;
use crate::secrets::Secrets;
use crate::spec::Spec;

pub(super) async fn attach(
    path: &Path,
    state: &UpState,
    spec: &Spec,
    secrets: &Secrets,
    needed: &BTreeSet<String>,
) -> Result<Attached, String> {
    let docker = docker::connect()?;
    let attached = tokio::time::timeout(
        docker::ENGINE_CALL,
        up::attach(&docker, state, &spec.platform, secrets, needed),
    )
    .await
    .map_err(|_| "attaching to the `up` platform: the Docker engine did not answer".to_string())?
    .map_err(|e| format!("{e} (state: {})", path.display()))?;
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
