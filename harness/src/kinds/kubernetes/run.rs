//! Running the `kubernetes` kind's steps against the API server (the `run` feature).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::health::{self, pod_health, selector_query, PodHealth, Replicas};
use super::{KubernetesAction, NodePortSpec};
use crate::clients::error_chain;
use crate::kinds::{Run, StepContext, StepError};

/// Every call to the API server (and the NodePort probe) is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

impl Run for KubernetesAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(async move {
            let (client, server) = client(cx).await?;
            // Errors (the check could not judge) name the cluster they could not reach.
            self.execute(cx, &client).await.map_err(|e| match e {
                StepError::Error(m) => StepError::Error(format!("{m} (API server {server})")),
                failure => failure,
            })
        })
    }
}

impl KubernetesAction {
    async fn execute(&self, cx: &StepContext<'_>, client: &Client) -> Result<Value, StepError> {
        let client = client.clone();
        let ns = |n: &Option<String>| -> Result<String, StepError> {
            match n {
                Some(n) => cx.render(n),
                None => Ok(cx.endpoint.param_or("namespace", "default").to_string()),
            }
        };
        match self {
            Self::Deployment(w) => {
                let ns = ns(&w.namespace)?;
                let d: Deployment = get(&client, &ns, &cx.render(&w.name)?, "deployment").await?;
                let selector = d.spec.as_ref().map(|s| selector_query(&s.selector));
                workload(
                    &client,
                    &ns,
                    "deployment",
                    &d.metadata.name,
                    health::deployment_replicas(&d),
                    w.replicas,
                    selector,
                )
                .await
            }
            Self::Statefulset(w) => {
                let ns = ns(&w.namespace)?;
                let s: StatefulSet = get(&client, &ns, &cx.render(&w.name)?, "statefulset").await?;
                let selector = s.spec.as_ref().map(|s| selector_query(&s.selector));
                workload(
                    &client,
                    &ns,
                    "statefulset",
                    &s.metadata.name,
                    health::statefulset_replicas(&s),
                    w.replicas,
                    selector,
                )
                .await
            }
            Self::Pods(p) => {
                let ns = ns(&p.namespace)?;
                let selector = cx.render(&p.selector)?;
                let pods = pods(&client, &ns, &selector).await?;
                let ready = pods.iter().filter(|p| p.ready).count();
                let out = json!({
                    "count": pods.len(),
                    "ready": ready,
                    "pods": pods.iter().map(PodHealth::json).collect::<Vec<_>>(),
                });
                if pods.len() < p.min {
                    return Err(StepError::Failure(format!(
                        "{} pod(s) match `{selector}` in namespace {ns}, expected at least {}",
                        pods.len(),
                        p.min
                    )));
                }
                if ready < pods.len() {
                    return Err(StepError::Failure(format!(
                        "{ready}/{} pods matching `{selector}` in namespace {ns} ready: {}",
                        pods.len(),
                        problems(&pods)
                    )));
                }
                Ok(out)
            }
            Self::Service(s) => {
                let ns = ns(&s.namespace)?;
                let name = cx.render(&s.name)?;
                let _: Service = get(&client, &ns, &name, "service").await?;
                let slices = call(
                    Api::<EndpointSlice>::namespaced(client, &ns).list(
                        &ListParams::default()
                            .labels(&format!("kubernetes.io/service-name={name}")),
                    ),
                    "listing the endpoint slices",
                )
                .await?;
                let addresses: Vec<String> = slices
                    .items
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    // The API: a missing `ready` means ready (unknown state counts as ready).
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                    .flat_map(|e| e.addresses.clone())
                    .collect();
                if addresses.len() < s.min_ready {
                    return Err(StepError::Failure(format!(
                        "service {ns}/{name} has {} ready endpoint(s), expected at least {}",
                        addresses.len(),
                        s.min_ready
                    )));
                }
                Ok(json!({ "ready_endpoints": addresses.len(), "addresses": addresses }))
            }
            Self::Pvc(p) => {
                let ns = ns(&p.namespace)?;
                let name = cx.render(&p.name)?;
                let pvc: PersistentVolumeClaim =
                    get(&client, &ns, &name, "persistentvolumeclaim").await?;
                let status = pvc.status.unwrap_or_default();
                let phase = status.phase.unwrap_or_else(|| "Unknown".into());
                let spec = pvc.spec.unwrap_or_default();
                if phase != "Bound" {
                    return Err(StepError::Failure(format!(
                        "persistentvolumeclaim {ns}/{name} is {phase}, not Bound (storage class {})",
                        spec.storage_class_name.as_deref().unwrap_or("(default)")
                    )));
                }
                Ok(json!({
                    "phase": phase,
                    "capacity": status.capacity.and_then(|c| c.get("storage").map(|q| q.0.clone())),
                    "storage_class": spec.storage_class_name,
                    "volume": spec.volume_name,
                }))
            }
            Self::Nodeport(n) => nodeport(&client, cx, &ns(&n.namespace)?, n).await,
        }
    }
}

/// A client from the endpoint's kubeconfig (and `context`), and the server it talks to.
async fn client(cx: &StepContext<'_>) -> Result<(Client, String), StepError> {
    let path = cx.endpoint.param("kubeconfig")?;
    let context = cx.endpoint.params.get("context").cloned();
    crate::clients::kube::client(std::path::Path::new(path), context, Some(TIMEOUT))
        .await
        .map_err(StepError::Error)
}

/// One API call, bounded; transport and permission problems are errors (the check could
/// not judge), which callers turn into failures where the answer is the verdict.
async fn call<T>(
    f: impl std::future::Future<Output = kube::Result<T>>,
    doing: &str,
) -> Result<T, StepError> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(StepError::Error(format!(
            "{doing}: the API server answered {} {}: {}",
            s.code, s.reason, s.message
        ))),
        Ok(Err(e)) => Err(StepError::Error(format!("{doing}: {}", error_chain(&e)))),
        Err(_) => Err(StepError::Error(format!(
            "{doing}: no answer from the API server within {TIMEOUT:?}"
        ))),
    }
}

/// A namespaced object that must exist: a missing one is a failure, not an error.
async fn get<K>(client: &Client, ns: &str, name: &str, what: &str) -> Result<K, StepError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    call(api.get_opt(name), &format!("reading {what} {ns}/{name}"))
        .await?
        .ok_or_else(|| StepError::Failure(format!("{what} {ns}/{name} does not exist")))
}

async fn pods(client: &Client, ns: &str, selector: &str) -> Result<Vec<PodHealth>, StepError> {
    let list = call(
        Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)),
        &format!("listing pods `{selector}` in namespace {ns}"),
    )
    .await?;
    Ok(list.items.iter().map(pod_health).collect())
}

fn problems(pods: &[PodHealth]) -> String {
    pods.iter()
        .filter(|p| !p.ready)
        .map(|p| format!("pod {}: {}", p.name, p.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn workload(
    client: &Client,
    ns: &str,
    what: &str,
    name: &Option<String>,
    replicas: Replicas,
    expected: Option<i32>,
    selector: Option<String>,
) -> Result<Value, StepError> {
    let name = name.as_deref().unwrap_or_default();
    if let Some(e) = expected.filter(|e| *e != replicas.desired) {
        return Err(StepError::Failure(format!(
            "{what} {ns}/{name} declares {} replicas, expected {e}",
            replicas.desired
        )));
    }
    if replicas.all_available() {
        return Ok(replicas.json());
    }
    // Why not: the pods behind it, as `pods` would report them.
    let why = match selector.filter(|s| !s.is_empty()) {
        Some(s) => {
            let pods = pods(client, ns, &s).await?;
            if pods.is_empty() {
                "no pods".to_string()
            } else {
                problems(&pods)
            }
        }
        None => "no selector".into(),
    };
    Err(StepError::Failure(format!(
        "{what} {ns}/{name}: {}; {why}",
        replicas.describe()
    )))
}

async fn nodeport(
    client: &Client,
    cx: &StepContext<'_>,
    ns: &str,
    n: &NodePortSpec,
) -> Result<Value, StepError> {
    let name = cx.render(&n.service)?;
    let svc: Service = get(client, ns, &name, "service").await?;
    let ports: Vec<_> = svc
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.node_port.is_some())
        .collect();
    let port = match &n.port {
        Some(want) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(want.as_str())),
        None if ports.len() == 1 => ports.first(),
        None => None,
    }
    .and_then(|p| p.node_port)
    .ok_or_else(|| {
        StepError::Failure(format!(
            "service {ns}/{name} has {} NodePort(s){}",
            ports.len(),
            n.port
                .as_ref()
                .map(|p| format!(", none named `{p}`"))
                .unwrap_or_else(|| ", name one with `port`".into())
        ))
    })?;
    let host = node_host(client, cx).await?;
    let addr = format!("{host}:{port}");
    let started = Instant::now();
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(StepError::Failure(format!(
                "NodePort {port} of service {ns}/{name}: connecting to {addr}: {e}"
            )))
        }
        Err(_) => {
            return Err(StepError::Failure(format!(
            "NodePort {port} of service {ns}/{name}: no connection to {addr} within {TIMEOUT:?}"
        )))
        }
    }
    let connect_ms = started.elapsed().as_millis() as u64;
    let status = match &n.http_path {
        Some(path) => {
            let url = format!("http://{addr}{}", cx.render(path)?);
            let resp = reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .map_err(|e| StepError::Error(error_chain(&e)))?
                .get(&url)
                .send()
                .await
                .map_err(|e| StepError::Failure(format!("GET {url}: {}", error_chain(&e))))?;
            Some(resp.status().as_u16())
        }
        None => None,
    };
    Ok(json!({ "host": host, "node_port": port, "connect_ms": connect_ms, "status": status }))
}

/// The endpoint's host, else the first node's InternalIP.
async fn node_host(client: &Client, cx: &StepContext<'_>) -> Result<String, StepError> {
    if !cx.endpoint.host.is_empty() {
        return Ok(cx.endpoint.host.clone());
    }
    let nodes = call(
        Api::<Node>::all(client.clone()).list(&ListParams::default()),
        "listing nodes",
    )
    .await?;
    nodes
        .items
        .iter()
        .flat_map(|n| n.status.iter().flat_map(|s| s.addresses.iter().flatten()))
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .ok_or_else(|| {
            StepError::Error("no node has an InternalIP; set the endpoint's host".into())
        })
}
