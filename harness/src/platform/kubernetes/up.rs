//! An `up` platform on a cluster (`platform-verify up --backend kubernetes`): a namespace
//! labelled with the up id and without owner markers (the reaper leaves it), services added
//! to it by later `up`s, warm runs attaching with port-forwards of their own (a forward
//! dies with the process that opened it), and `down` deleting the namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};

use super::manifests::LABEL_SERVICE;
use super::{bounded, describe, KubePlatform};
use crate::platform::docker::Cleanup;
use crate::platform::reaper::LABEL_UP;
use crate::platform::up::{endpoint_of, fingerprint, forwarder, UpError, UpState};
use crate::platform::Endpoint;
use crate::secrets::Secrets;
use crate::spec::platform::PlatformSpec;

/// How long `down` waits for the API server to empty and remove the namespace.
const DELETION: Duration = Duration::from_secs(120);

/// A handle on the namespace `state` names (its objects carry the up id's label).
pub fn platform_of(client: Client, state: &UpState, namespace: &str) -> KubePlatform {
    let labels = BTreeMap::from([(LABEL_UP.to_string(), state.up_id.clone())]);
    KubePlatform::existing(client, namespace.to_string(), labels)
}

/// The first of `services` whose Deployment is gone or has no available pod, and how.
pub async fn not_running(
    kp: &KubePlatform,
    services: &BTreeSet<String>,
) -> Result<Option<(String, String)>, String> {
    let deployments = Api::<Deployment>::namespaced(kp.client.clone(), &kp.namespace);
    for name in services {
        let how = match bounded(
            deployments.get_opt(name),
            &format!("reading the Deployment of {name}"),
        )
        .await?
        {
            None => Some(format!("its Deployment is gone from {}", kp.namespace)),
            Some(d) if available(&d) => None,
            Some(_) => Some(format!("not available: {}", pod_state(kp, name).await)),
        };
        if let Some(how) = how {
            return Ok(Some((name.clone(), how)));
        }
    }
    Ok(None)
}

fn available(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        >= 1
}

async fn pod(kp: &KubePlatform, service: &str) -> Option<Pod> {
    let pods = Api::<Pod>::namespaced(kp.client.clone(), &kp.namespace);
    let selector = format!("{LABEL_SERVICE}={service}");
    bounded(
        pods.list(&ListParams::default().labels(&selector)),
        "listing its pod",
    )
    .await
    .ok()?
    .items
    .into_iter()
    .next()
}

async fn pod_state(kp: &KubePlatform, service: &str) -> String {
    match pod(kp, service).await {
        Some(p) => describe(&p),
        None => "no pod".into(),
    }
}

/// Each service's pod and the image ID its container runs: what `up` records. The
/// cluster's image store is not the Docker engine's, so the ID comes from the kubelet.
pub async fn pods_and_images(
    kp: &KubePlatform,
    services: &BTreeSet<String>,
) -> Result<BTreeMap<String, (String, String)>, String> {
    let mut out = BTreeMap::new();
    for name in services {
        let p = pod(kp, name)
            .await
            .ok_or_else(|| format!("service `{name}`: no pod in {}", kp.namespace))?;
        let image_id = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .map(|c| c.image_id.clone())
            .unwrap_or_default();
        out.insert(
            name.clone(),
            (p.metadata.name.unwrap_or_default(), image_id),
        );
    }
    Ok(out)
}

/// The services among `services` whose spec, copied files, image name or secrets changed
/// since `up` (fingerprinted with the image ID `up` recorded), or that left the spec.
pub fn changed(
    state: &UpState,
    spec: &PlatformSpec,
    secrets: &Secrets,
    services: &BTreeSet<String>,
) -> Result<Vec<String>, UpError> {
    let mut out = Vec::new();
    for name in services {
        let Some(up) = state.services.get(name) else {
            continue;
        };
        let Some(svc) = spec.services.get(name) else {
            out.push(name.clone());
            continue;
        };
        let now = fingerprint(spec, name, &up.image_id, secrets, &state.salt)
            .map_err(UpError::Fingerprint)?;
        if svc.image != up.image || now != up.fingerprint {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// Attaches a warm run to the `up` namespace (state in `dir`): the `needed` services must
/// all run there, unchanged, and the forwarder must hold their ports; each gets its
/// endpoint on those ports. Nothing is forwarded by the run itself.
pub async fn attach(
    client: Client,
    (dir, state): (&Path, &UpState),
    namespace: &str,
    spec: &PlatformSpec,
    secrets: &Secrets,
    needed: &BTreeSet<String>,
) -> Result<(KubePlatform, BTreeMap<String, Endpoint>), UpError> {
    let lacking: Vec<String> = needed
        .iter()
        .filter(|s| !state.services.contains_key(*s))
        .cloned()
        .collect();
    if !lacking.is_empty() {
        return Err(UpError::Engine(format!(
            "the `up` platform in namespace {namespace} lacks {0}: add it with `platform-verify up --backend kubernetes --only {0}`",
            lacking.join(",")
        )));
    }
    let changed = changed(state, spec, secrets, needed)?;
    if !changed.is_empty() {
        return Err(UpError::Changed { services: changed });
    }
    let kp = platform_of(client, state, namespace);
    if let Some((service, how)) = not_running(&kp, needed).await.map_err(UpError::Engine)? {
        return Err(UpError::Gone { service, how });
    }
    if forwarder::running(dir).is_none() {
        return Err(UpError::Gone {
            service: "port-forward process".into(),
            how: format!(
                "see {}; `platform-verify up --backend kubernetes` starts it again",
                dir.join(forwarder::LOG_FILE).display()
            ),
        });
    }
    let mut endpoints = BTreeMap::new();
    for name in needed {
        let svc = &spec.services[name];
        let ports = state.services[name].forwarded.clone();
        endpoints.insert(name.clone(), endpoint_of(svc, &ports, secrets)?);
    }
    Ok((kp, endpoints))
}

impl KubePlatform {
    /// Deletes what `start_rendered` created for these services (an `up` that failed while
    /// adding them to a namespace it keeps). Objects already gone are fine.
    pub async fn remove_services(&self, names: &BTreeSet<String>) -> Vec<String> {
        let (c, ns) = (&self.client, self.namespace.as_str());
        let mut problems = Vec::new();
        for name in names {
            let (copy, env) = (format!("{name}-copy"), format!("{name}-env"));
            let results = [
                delete_if_there(Api::<Deployment>::namespaced(c.clone(), ns), name).await,
                delete_if_there(Api::<Service>::namespaced(c.clone(), ns), name).await,
                delete_if_there(Api::<ConfigMap>::namespaced(c.clone(), ns), &copy).await,
                delete_if_there(Api::<Secret>::namespaced(c.clone(), ns), &copy).await,
                delete_if_there(Api::<Secret>::namespaced(c.clone(), ns), &env).await,
            ];
            problems.extend(results.into_iter().filter_map(Result::err));
        }
        problems
    }
}

async fn delete_if_there<K>(api: Api<K>, name: &str) -> Result<(), String>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let doing = format!("deleting {} {name}", K::kind(&()));
    match tokio::time::timeout(
        super::TIMEOUT,
        api.delete(name, &DeleteParams::background()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(()),
        Ok(Err(e)) => Err(format!("{doing}: {}", crate::clients::error_chain(&e))),
        Err(_) => Err(format!(
            "{doing}: no answer from the API server within {:?}",
            super::TIMEOUT
        )),
    }
}

/// Deletes every namespace of the up id (the state's, and any a lost state left) and
/// waits, bounded, until the API server has removed them.
pub async fn down(client: &Client, up_id: &str) -> Cleanup {
    let mut out = Cleanup::default();
    let api = Api::<Namespace>::all(client.clone());
    let listed = bounded(
        api.list(&ListParams::default().labels(&format!("{LABEL_UP}={up_id}"))),
        "listing the `up` namespaces",
    )
    .await;
    let names: Vec<String> = match listed {
        Ok(l) => l
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect(),
        Err(e) => {
            out.problems.push(e);
            return out;
        }
    };
    for name in &names {
        match bounded(
            api.delete(name, &DeleteParams::background()),
            &format!("deleting namespace {name}"),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.contains("NotFound") || e.contains("not found") => {}
            Err(e) => out.problems.push(e),
        }
    }
    let until = Instant::now() + DELETION;
    for name in names {
        loop {
            match bounded(api.get_opt(&name), &format!("reading namespace {name}")).await {
                Ok(None) => {
                    out.removed.push(format!("namespace {name}"));
                    break;
                }
                Ok(Some(_)) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Ok(Some(_)) => {
                    out.problems.push(format!(
                        "namespace {name} still terminating after {DELETION:?}"
                    ));
                    break;
                }
                Err(e) => {
                    out.problems.push(e);
                    break;
                }
            }
        }
    }
    out
}

/// Whether the namespace exists (and is not being deleted).
pub async fn namespace_exists(client: &Client, name: &str) -> Result<bool, String> {
    let ns = bounded(
        Api::<Namespace>::all(client.clone()).get_opt(name),
        &format!("reading namespace {name}"),
    )
    .await?;
    Ok(ns.is_some_and(|n| n.status.and_then(|s| s.phase).as_deref() != Some("Terminating")))
}
