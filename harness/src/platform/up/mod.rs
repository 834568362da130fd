//! A platform that stays up. `platform-verify up` starts it and writes a state file;
//! later runs `attach` to it and start only what it lacks; `platform-verify down` removes
//! it by its label. Its containers carry `LABEL_UP`, so the reaper never takes them for a
//! dead run's leftovers.

mod endpoints_file;
mod error;
mod fingerprint;
pub mod forwarder;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use testcontainers::bollard::Docker;

use super::containers::Attached;
use super::{docker, images, Endpoint};
use crate::secrets::Secrets;
use crate::spec::platform::{PlatformSpec, ServiceSpec};
use crate::template;

pub use super::reaper::LABEL_UP;
pub use endpoints_file::write as write_endpoints;
pub use error::UpError;
pub use fingerprint::fingerprint;
pub use state::{canonical, dir, up_id, UpService, UpState, ENDPOINTS_FILE, STATE_FILE};

/// The state file to attach to: `PLATFORM_UP_STATE` when set (it must exist), else the
/// platform's own state file when there is one; never with `PLATFORM_UP=off`.
pub fn find(root: &Path, platform: &Path) -> Result<Option<(PathBuf, UpState)>, UpError> {
    if std::env::var("PLATFORM_UP").is_ok_and(|v| v == "off") {
        return Ok(None);
    }
    if let Some(path) = std::env::var_os("PLATFORM_UP_STATE").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let state = UpState::load(&path).map_err(|e| UpError::FromEnv(Box::new(e)))?;
        if state.platform != canonical(platform) {
            return Err(UpError::OtherPlatform {
                path,
                of: state.platform,
                wanted: platform.to_path_buf(),
            });
        }
        return Ok(Some((path, state)));
    }
    let dir = dir(root, platform);
    // Another platform file with the same name is not ours: `find_in` leaves it.
    Ok(find_in(&dir, platform)?.map(|s| (dir.join(STATE_FILE), s)))
}

/// The state in `dir` when it is `platform`'s.
pub fn find_in(dir: &Path, platform: &Path) -> Result<Option<UpState>, UpError> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let state = UpState::load(&path)?;
    Ok((state.platform == canonical(platform)).then_some(state))
}

/// Each service's image ID, for the services chosen to run (`images::choose`).
pub async fn image_ids(
    docker: &Docker,
    spec: &PlatformSpec,
    services: &BTreeSet<String>,
) -> Result<BTreeMap<String, (String, String)>, UpError> {
    let chosen = images::choose(docker, spec, services).await?;
    let mut out = BTreeMap::new();
    for (name, image) in chosen {
        let id = docker
            .inspect_image(&image)
            .await
            .map_err(|e| UpError::Image {
                service: name.clone(),
                image: image.clone(),
                reason: e.to_string(),
            })?
            .id
            .unwrap_or_default();
        out.insert(name, (image, id));
    }
    Ok(out)
}

/// The services of `state` whose fingerprint no longer matches the spec (or whose image
/// is now another one).
pub async fn changed(
    docker: &Docker,
    state: &UpState,
    spec: &PlatformSpec,
    secrets: &Secrets,
    services: &BTreeSet<String>,
) -> Result<Vec<String>, UpError> {
    let known: BTreeSet<String> = services
        .iter()
        .filter(|s| state.services.contains_key(*s) && spec.services.contains_key(*s))
        .cloned()
        .collect();
    let mut out: Vec<String> = services
        .iter()
        .filter(|s| state.services.contains_key(*s) && !spec.services.contains_key(*s))
        .cloned()
        .collect();
    let ids = image_ids(docker, spec, &known).await?;
    for name in known {
        let up = &state.services[&name];
        let (image, id) = &ids[&name];
        let now =
            fingerprint(spec, &name, id, secrets, &state.salt).map_err(UpError::Fingerprint)?;
        if *image != up.image || now != up.fingerprint {
            out.push(name);
        }
    }
    Ok(out)
}

/// Checks that the services `needed` that `state` runs are unchanged and running, and
/// returns them for a run to join (`RunNetwork::Attached`). A changed spec or a container
/// that is gone is an error saying what to do.
pub async fn attach(
    docker: &Docker,
    state: &UpState,
    spec: &PlatformSpec,
    secrets: &Secrets,
    needed: &BTreeSet<String>,
) -> Result<Attached, UpError> {
    let changed = changed(docker, state, spec, secrets, needed).await?;
    if !changed.is_empty() {
        return Err(UpError::Changed { services: changed });
    }
    let mut running = BTreeMap::new();
    for name in needed {
        let Some(up) = state.services.get(name) else {
            continue;
        };
        let gone = match docker::container_state(docker, &up.container).await {
            Ok(s) => docker::describe_exit(&s),
            Err(e) => Some(format!("not found ({e})")),
        };
        if let Some(how) = gone {
            return Err(UpError::Gone {
                service: name.clone(),
                how,
            });
        }
        let endpoint = endpoint_of(&spec.services[name], &up.ports, secrets)?;
        running.insert(name.clone(), (up.container.clone(), endpoint));
    }
    Ok(Attached {
        network: state.network.clone(),
        running,
    })
}

/// What checks receive for a service that runs with these published ports: the spec's
/// endpoint parameters rendered as at its start.
pub fn endpoint_of(
    svc: &ServiceSpec,
    ports: &BTreeMap<String, u16>,
    secrets: &Secrets,
) -> Result<Endpoint, UpError> {
    let vars = super::render::started(ports, secrets);
    let params = svc
        .endpoint
        .iter()
        .map(|(k, v)| template::render(v, &vars).map(|v| (k.clone(), v)))
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(|reason| UpError::Endpoint {
            service: svc.name.clone(),
            reason,
        })?;
    Ok(Endpoint {
        service: svc.name.clone(),
        host: "127.0.0.1".into(),
        ports: ports.clone(),
        params,
    })
}

/// Removes every container and network labelled with the platform's up id, and its
/// state folder.
pub async fn down(docker: &Docker, root: &Path, platform: &Path) -> docker::Cleanup {
    let mut out = docker::remove_up(docker, &up_id(platform)).await;
    let dir = dir(root, platform);
    if out.problems.is_empty() && dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => out.removed.push(format!("state {}", dir.display())),
            Err(e) => out
                .problems
                .push(format!("removing {}: {e}", dir.display())),
        }
    }
    out
}
