//! The start of a Kubernetes backend: a namespace per run (labelled with the run id,
//! annotated with its owner process, as containers are), a Deployment, Service and ConfigMap
//! per platform service, readiness from the Deployment and the pod's log, port-forwards on
//! 127.0.0.1 for the checks, the namespace deleted at the end and reaped when its owner died.
//! A run uses it with `PLATFORM_BACKEND=kubernetes` (`backend`); see fixtures/k8s/README.md.

pub mod backend;
pub mod exec;
pub mod manifests;
pub mod run;
pub mod up;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::reaper::{decide_labelled, liveness, Owner, Verdict, LABEL_RUN, LABEL_UP};
use crate::clients::error_chain;
use crate::spec::platform::{ReadyCondition, ServiceSpec};
use manifests::{Workload, LABEL_SERVICE};

/// Every API call is bounded by this; readiness by the service's startup timeout.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15);

pub struct KubePlatform {
    pub(crate) client: Client,
    pub namespace: String,
    labels: BTreeMap<String, String>,
    forwards: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) async fn bounded<T>(
    f: impl std::future::Future<Output = kube::Result<T>>,
    doing: &str,
) -> Result<T, String> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{doing}: {}", error_chain(&e))),
        Err(_) => Err(format!(
            "{doing}: no answer from the API server within {TIMEOUT:?}"
        )),
    }
}

/// A namespace name from a run id: lowercase letters, digits and `-`, at most 63.
pub fn namespace_for(run_id: &str) -> String {
    let clean: String = run_id
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("platform-{}", clean.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The namespace of the `up` platform with this up id.
pub fn up_namespace(up_id: &str) -> String {
    namespace_for(&format!("up-{up_id}"))
}

impl KubePlatform {
    /// Creates the run's namespace. The owner markers are annotations: a PID namespace
    /// (`pid:[4026531836]`) is no valid label value.
    pub async fn create(client: Client, run_id: &str) -> Result<Self, String> {
        let namespace = namespace_for(run_id);
        let run_label: String = namespace.trim_start_matches("platform-").to_string();
        let labels = BTreeMap::from([(LABEL_RUN.to_string(), run_label)]);
        let annotations: BTreeMap<String, String> =
            Owner::this_process().labels().into_iter().collect();
        Self::create_namespace(client, namespace, labels, annotations).await
    }

    /// Creates the namespace of an `up` platform: labelled with its up id and without
    /// owner markers, so the reaper never takes it for a dead run's (`platform::up`).
    pub async fn create_up(client: Client, up_id: &str) -> Result<Self, String> {
        let labels = BTreeMap::from([(LABEL_UP.to_string(), up_id.to_string())]);
        Self::create_namespace(client, up_namespace(up_id), labels, BTreeMap::new()).await
    }

    /// A handle on a namespace that exists (an `up` platform's), for more services,
    /// forwards and execs; dropping it leaves the namespace.
    pub fn existing(client: Client, namespace: String, labels: BTreeMap<String, String>) -> Self {
        Self {
            client,
            namespace,
            labels,
            forwards: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn create_namespace(
        client: Client,
        namespace: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": namespace, "labels": labels, "annotations": annotations },
        }))
        .expect("a Namespace built from typed parts");
        bounded(
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns),
            &format!("creating namespace {namespace}"),
        )
        .await?;
        Ok(Self::existing(client, namespace, labels))
    }

    /// Creates the service's objects; `env`, `args` and `files` are rendered.
    pub async fn start(
        &self,
        svc: &ServiceSpec,
        env: &BTreeMap<String, String>,
        args: &[String],
        files: &[(String, Vec<u8>)],
    ) -> Result<(), String> {
        let r = manifests::Rendered {
            env: env.clone(),
            args: args.to_vec(),
            files: files.to_vec(),
            ..Default::default()
        };
        self.start_rendered(svc, &r).await
    }

    /// Creates the service's objects, its secrets as Secrets.
    pub async fn start_rendered(
        &self,
        svc: &ServiceSpec,
        r: &manifests::Rendered,
    ) -> Result<(), String> {
        let ns = &self.namespace;
        let Workload {
            deployment,
            service,
            config_map,
            secrets,
        } = manifests::workload_of(svc, r, &self.labels);
        let pp = PostParams::default();
        let doing = |what: &str| format!("service `{}`: creating its {what} in {ns}", svc.name);
        for secret in secrets {
            let api = Api::<Secret>::namespaced(self.client.clone(), ns);
            bounded(api.create(&pp, &secret), &doing("Secret")).await?;
        }
        if let Some(cm) = config_map {
            let api = Api::<ConfigMap>::namespaced(self.client.clone(), ns);
            bounded(api.create(&pp, &cm), &doing("ConfigMap")).await?;
        }
        let api = Api::<Deployment>::namespaced(self.client.clone(), ns);
        bounded(api.create(&pp, &deployment), &doing("Deployment")).await?;
        let api = Api::<Service>::namespaced(self.client.clone(), ns);
        bounded(api.create(&pp, &service), &doing("Service")).await?;
        Ok(())
    }

    /// Waits (bounded by `deadline`) until the Deployment is available (the kubelet's
    /// probe) and the pod logged each readiness line its times.
    pub async fn wait_ready(&self, svc: &ServiceSpec, deadline: Instant) -> Result<(), String> {
        let started = Instant::now();
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace);
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{LABEL_SERVICE}={}", svc.name);
        let mut last = String::from("not observed yet");
        while Instant::now() < deadline {
            let d = bounded(deployments.get(&svc.name), "reading its Deployment").await;
            let available = matches!(&d, Ok(d) if d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= 1);
            let pod = bounded(
                pods.list(&ListParams::default().labels(&selector)),
                "listing its pod",
            )
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next());
            if let Some(pod) = &pod {
                last = describe(pod);
                image_missing(pod, svc)?;
            }
            if available {
                if let Some(name) = pod.and_then(|p| p.metadata.name) {
                    let logs = bounded(pods.logs(&name, &LogParams::default()), "reading its log")
                        .await
                        .unwrap_or_default();
                    let missing = svc.ready.iter().find(|r| match r {
                        ReadyCondition::Log { line, times } => {
                            logs.matches(line.as_str()).count() < *times
                        }
                        _ => false,
                    });
                    match missing {
                        None => return Ok(()),
                        Some(_) => last = "its log lacks a readiness line".into(),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(format!(
            "service `{}` not ready within {:.0?} in namespace {}: {last}",
            svc.name,
            started.elapsed(),
            self.namespace
        ))
    }

    /// Waits (bounded by `until`) until the service's container runs: what `after_start`
    /// commands need, before any readiness.
    pub async fn wait_running(&self, svc: &ServiceSpec, until: Instant) -> Result<(), String> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{LABEL_SERVICE}={}", svc.name);
        let mut last = String::from("no pod yet");
        while Instant::now() < until {
            let list = bounded(
                pods.list(&ListParams::default().labels(&selector)),
                "listing its pod",
            )
            .await?;
            if let Some(pod) = list.items.first() {
                let running = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                    });
                if running {
                    return Ok(());
                }
                last = describe(pod);
                image_missing(pod, svc)?;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(format!(
            "service `{}`: its container did not run within {:?}: {last}",
            svc.name, svc.startup_timeout
        ))
    }

    /// A listener on 127.0.0.1 per named port, forwarding each connection to the service's
    /// pod through the API server; the local ports, by port name.
    pub async fn forward(&self, svc: &ServiceSpec) -> Result<BTreeMap<String, u16>, String> {
        self.forward_ports(&svc.name, &svc.ports, &BTreeMap::new())
            .await
    }

    /// Forwards `service`'s `targets` (port name -> the pod's port) from 127.0.0.1, on the
    /// local ports `at` names (others: any free port): the forwarder of an `up` platform
    /// holds the ports `up` recorded.
    pub async fn forward_ports(
        &self,
        service: &str,
        targets: &BTreeMap<String, u16>,
        at: &BTreeMap<String, u16>,
    ) -> Result<BTreeMap<String, u16>, String> {
        let mut local = BTreeMap::new();
        for (name, &target) in targets {
            let wanted = at.get(name).copied().unwrap_or(0);
            let listener = listen(wanted).map_err(|e| {
                format!("service `{service}`: local port {wanted} for `{name}`: {e}")
            })?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            local.insert(name.clone(), port);
            let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
            let selector = format!("{LABEL_SERVICE}={service}");
            let task = tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(forward_one(pods.clone(), selector.clone(), target, conn));
                }
            });
            self.forwards.lock().expect("forwards lock").push(task);
        }
        Ok(local)
    }

    /// Stops the port-forwards this process opened.
    pub fn stop_forwards(&self) {
        for t in self.forwards.lock().expect("forwards lock").drain(..) {
            t.abort();
        }
    }

    /// Stops the forwards and deletes the namespace (the API server removes what is in it).
    pub async fn delete(&self) -> Result<(), String> {
        self.stop_forwards();
        let api = Api::<Namespace>::all(self.client.clone());
        bounded(
            api.delete(&self.namespace, &DeleteParams::background()),
            &format!("deleting namespace {}", self.namespace),
        )
        .await
        .map(|_| ())
    }
}

impl Drop for KubePlatform {
    fn drop(&mut self) {
        if let Ok(mut f) = self.forwards.lock() {
            f.drain(..).for_each(|t| t.abort());
        }
    }
}

/// A listener on 127.0.0.1:`port` (0: any free port).
fn listen(port: u16) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // The connections a listener accepted inherit this: a later process may then bind the
    // port while they linger in TIME-WAIT (the forwarder taking over from `up`).
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(1024)
}

async fn forward_one(
    pods: Api<Pod>,
    selector: String,
    target: u16,
    mut conn: tokio::net::TcpStream,
) {
    let Ok(Ok(list)) =
        tokio::time::timeout(TIMEOUT, pods.list(&ListParams::default().labels(&selector))).await
    else {
        return;
    };
    let running = list
        .items
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
    let Some(name) = running.and_then(|p| p.metadata.name.clone()) else {
        return;
    };
    let Ok(Ok(mut pf)) = tokio::time::timeout(TIMEOUT, pods.portforward(&name, &[target])).await
    else {
        return;
    };
    if let Some(mut upstream) = pf.take_stream(target) {
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    }
    pf.abort();
}

/// An image the node cannot get never comes (the kit's cluster has no registry): an error
/// at once, saying how to import it, rather than waiting out the startup timeout.
fn image_missing(pod: &Pod, svc: &ServiceSpec) -> Result<(), String> {
    let pulling = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .find(|r| {
            matches!(
                *r,
                "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull"
            )
        });
    match pulling {
        Some(reason) => Err(format!(
            "service `{}`: the node has no image {} ({reason}); import it into the cluster: K8S_IMPORT_IMAGES=\"{}\" fixtures/k8s/cluster up",
            svc.name, svc.image, svc.image
        )),
        None => Ok(()),
    }
}

/// A pod's state in a few words, for a not-ready message.
pub(crate) fn describe(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let waiting: Vec<String> = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "{} waiting {} (restarts {})",
                c.name,
                w.reason.clone().unwrap_or_default(),
                c.restart_count
            ))
        })
        .collect();
    format!(
        "pod {} phase {}{}",
        pod.metadata.name.as_deref().unwrap_or("?"),
        status.phase.as_deref().unwrap_or("Unknown"),
        if waiting.is_empty() {
            String::new()
        } else {
            format!("; {}", waiting.join("; "))
        }
    )
}

/// Deletes the namespaces of runs whose owner process is provably gone (the container
/// reaper's rule); returns their names.
pub async fn reap(client: &Client) -> Result<Vec<String>, String> {
    let api = Api::<Namespace>::all(client.clone());
    let list = bounded(
        api.list(&ListParams::default().labels(LABEL_RUN)),
        "listing run namespaces",
    )
    .await?;
    let mut reaped = Vec::new();
    for ns in list.items {
        let annotations: HashMap<String, String> = ns
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let name = ns.metadata.name.clone().unwrap_or_default();
        let terminating =
            ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating {
            continue;
        }
        if let Verdict::Reap(_) = decide_labelled(&annotations, Owner::this_process(), liveness) {
            bounded(
                api.delete(&name, &DeleteParams::background()),
                &format!("deleting namespace {name}"),
            )
            .await?;
            reaped.push(name);
        }
    }
    Ok(reaped)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    #[rstest]
    #[case("run-1a2b", "platform-run-1a2b")]
    #[case("Run_ID.9", "platform-run-id-9")]
    #[case(&"x".repeat(80), &format!("platform-{}", "x".repeat(54)))]
    fn namespaces_are_dns_labels(#[case] run: &str, #[case] expected: &str) {
        assert_eq!(super::namespace_for(run), expected);
        assert!(expected.len() <= 63);
    }
}
