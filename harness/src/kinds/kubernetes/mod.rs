//! Kubernetes checks with kube-rs: what an operator checks with kubectl on a platform
//! deployed to a cluster. Workloads available with their replicas, every pod of a selector
//! ready (with CrashLoopBackOff, restarts and the last exit in the message when not),
//! services with ready endpoints, claims bound, a NodePort answering.
//!
//! Endpoint: param `kubeconfig` (a file), optional `context` and `namespace` (default
//! `default`); `host` is the node address NodePorts are reached on.

#[cfg(feature = "run")]
mod health;
#[cfg(feature = "run")]
mod run;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KubernetesAction {
    /// A Deployment available with its replicas (and `replicas` of them when given); when
    /// not, the message names what keeps its pods from ready. Output: `{replicas,
    /// ready_replicas, available_replicas, updated_replicas}`.
    Deployment(WorkloadSpec),
    /// The same for a StatefulSet.
    Statefulset(WorkloadSpec),
    /// Every pod matching `selector` ready, at least `min` of them. Output: `{count,
    /// ready, pods: [{name, phase, ready, restarts, problem}]}`.
    Pods(PodsSpec),
    /// A Service with at least `min_ready` ready endpoints (EndpointSlices). Output:
    /// `{ready_endpoints, addresses}`.
    Service(ServiceSpec),
    /// A PersistentVolumeClaim bound. Output: `{phase, capacity, storage_class, volume}`.
    Pvc(NamedSpec),
    /// A NodePort of a Service answering on the node: a TCP connection, and a GET of
    /// `http_path` when given. Output: `{host, node_port, connect_ms, status}`.
    Nodeport(NodePortSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub name: String,
    /// Default: the endpoint's `namespace`, else `default`.
    pub namespace: Option<String>,
    /// The replicas the workload must be declared with (and have available).
    pub replicas: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsSpec {
    /// A label selector as kubectl takes it: `app=web,tier in (a,b)`.
    pub selector: String,
    pub namespace: Option<String>,
    /// The fewest pods that must match (default 1).
    #[serde(default = "one")]
    pub min: usize,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub namespace: Option<String>,
    /// The fewest ready endpoints (default 1).
    #[serde(default = "one")]
    pub min_ready: usize,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedSpec {
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePortSpec {
    /// The Service.
    pub service: String,
    pub namespace: Option<String>,
    /// The Service port's name (default: its only NodePort).
    pub port: Option<String>,
    /// Also GET this path over HTTP; its status is in the output.
    pub http_path: Option<String>,
}

fn one() -> usize {
    1
}

impl KindInfo for KubernetesAction {
    const NAMESPACE: &'static str = "kubernetes";
    const DEFAULT_SERVICE: Option<&'static str> = Some("kubernetes");
}

impl Action for KubernetesAction {
    fn verb(&self) -> &'static str {
        match self {
            Self::Deployment(_) => "deployment",
            Self::Statefulset(_) => "statefulset",
            Self::Pods(_) => "pods",
            Self::Service(_) => "service",
            Self::Pvc(_) => "pvc",
            Self::Nodeport(_) => "nodeport",
        }
    }
}
