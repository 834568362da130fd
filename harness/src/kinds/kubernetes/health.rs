//! How Kubernetes objects read as healthy or not, as pure functions over the API's types
//! (no client): a pod's readiness with what keeps it from it, a workload's replica counts,
//! a label selector as the API's query string.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

/// A pod as a check reports it: ready or not, and why not in words an operator knows
/// (CrashLoopBackOff, restarts, the last exit code and reason).
#[derive(Debug, Clone, PartialEq)]
pub struct PodHealth {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// Empty when ready.
    pub problem: String,
}

impl PodHealth {
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "phase": self.phase,
            "ready": self.ready,
            "restarts": self.restarts,
            "problem": self.problem,
        })
    }
}

pub fn pod_health(pod: &Pod) -> PodHealth {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let containers: Vec<&ContainerStatus> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect();
    let restarts = containers.iter().map(|c| c.restart_count).sum();
    let problem = if ready {
        String::new()
    } else {
        let mut parts: Vec<String> = containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| container_problem(c))
            .collect();
        if parts.is_empty() {
            // Not scheduled or not started yet: the pod's own conditions say why.
            parts.extend(
                status
                    .conditions
                    .iter()
                    .flatten()
                    .filter(|c| c.status != "True")
                    .map(|c| {
                        let why = [c.reason.as_deref(), c.message.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(": ");
                        format!("{} false{}", c.type_, colon(&why))
                    }),
            );
        }
        format!("phase {phase}; {}", parts.join("; "))
    };
    PodHealth {
        name,
        phase,
        ready,
        restarts,
        problem,
    }
}

fn colon(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" ({s})")
    }
}

/// `container app: waiting CrashLoopBackOff (back-off 20s ...), restarts 3, last exit 3 (Error)`
fn container_problem(c: &ContainerStatus) -> String {
    let state = c.state.clone().unwrap_or_default();
    let now = if let Some(w) = state.waiting {
        let reason = w.reason.unwrap_or_else(|| "waiting".into());
        format!(
            "waiting {reason}{}",
            colon(&crate::mask::clip(&w.message.unwrap_or_default(), 200))
        )
    } else if let Some(t) = state.terminated {
        format!(
            "terminated with exit {} ({})",
            t.exit_code,
            t.reason.unwrap_or_default()
        )
    } else if state.running.is_some() {
        "running, not ready (readiness probe)".into()
    } else {
        "no state yet".into()
    };
    let last = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| {
            format!(
                ", last exit {} ({})",
                t.exit_code,
                t.reason.clone().unwrap_or_default()
            )
        })
        .unwrap_or_default();
    format!(
        "container {}: {now}, restarts {}{last}",
        c.name, c.restart_count
    )
}

/// Replica counts of a Deployment or StatefulSet as the check compares them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

impl Replicas {
    pub fn all_available(&self) -> bool {
        self.ready >= self.desired && self.available >= self.desired && self.updated >= self.desired
    }

    pub fn json(&self) -> Value {
        json!({
            "replicas": self.desired,
            "ready_replicas": self.ready,
            "available_replicas": self.available,
            "updated_replicas": self.updated,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{}/{} available ({} ready, {} updated)",
            self.available, self.desired, self.ready, self.updated
        )
    }
}

pub fn deployment_replicas(d: &Deployment) -> Replicas {
    let s = d.status.clone().unwrap_or_default();
    Replicas {
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: s.ready_replicas.unwrap_or(0),
        available: s.available_replicas.unwrap_or(0),
        updated: s.updated_replicas.unwrap_or(0),
    }
}

pub fn statefulset_replicas(s: &StatefulSet) -> Replicas {
    let st = s.status.clone().unwrap_or_default();
    Replicas {
        desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: st.ready_replicas.unwrap_or(0),
        available: st.available_replicas.unwrap_or(0),
        updated: st.updated_replicas.unwrap_or(0),
    }
}

/// A LabelSelector as `labelSelector=` text (`app=x,tier in (a,b),!legacy`).
pub fn selector_query(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use rstest::rstest;

    fn pod(ready: bool, container: ContainerStatus) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("web-1".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![container]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(ready: bool, restarts: i32, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            ready,
            restart_count: restarts,
            state: Some(state),
            ..Default::default()
        }
    }

    #[test]
    fn a_crash_looping_pod_names_the_back_off_restarts_and_last_exit() {
        let mut c = container(
            false,
            4,
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some("back-off 40s restarting failed container".into()),
                }),
                ..Default::default()
            },
        );
        c.last_state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 3,
                reason: Some("Error".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let h = pod_health(&pod(false, c));
        assert!(!h.ready);
        assert_eq!(h.restarts, 4);
        assert_eq!(
            h.problem,
            "phase Running; container app: waiting CrashLoopBackOff (back-off 40s restarting failed container), restarts 4, last exit 3 (Error)"
        );
    }

    #[rstest]
    #[case(true, "")]
    #[case(
        false,
        "phase Running; container app: running, not ready (readiness probe), restarts 0"
    )]
    fn a_running_pod_is_ready_or_waits_for_its_probe(#[case] ready: bool, #[case] problem: &str) {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        let h = pod_health(&pod(ready, container(ready, 0, running)));
        assert_eq!((h.ready, h.problem.as_str()), (ready, problem));
    }

    #[rstest]
    #[case(Replicas { desired: 2, ready: 2, available: 2, updated: 2 }, true)]
    #[case(Replicas { desired: 2, ready: 2, available: 1, updated: 2 }, false)]
    #[case(Replicas { desired: 2, ready: 2, available: 2, updated: 1 }, false)]
    #[case(Replicas { desired: 0, ready: 0, available: 0, updated: 0 }, true)]
    fn replicas_are_available_only_when_every_count_reaches_the_desired(
        #[case] r: Replicas,
        #[case] expected: bool,
    ) {
        assert_eq!(r.all_available(), expected);
    }

    #[test]
    fn selectors_render_labels_then_expressions() {
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "legacy".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(selector_query(&s), "app=web,tier in (a,b),!legacy");
    }
}
