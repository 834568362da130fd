//! A platform service as Kubernetes objects (pure, no client): a Deployment of one pod with
//! the service's image, environment, arguments, ports, memory limit and readiness probe, a
//! Service with its named ports, and a ConfigMap with the files `copy` puts in.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use crate::spec::platform::{ReadyCondition, ServiceSpec};

/// The label naming a run's service on its pods (the Service's selector).
pub const LABEL_SERVICE: &str = "org.platform-harness.service";

/// A service, rendered: what the backend gives the API server.
#[derive(Debug, Clone)]
pub struct Workload {
    pub deployment: Deployment,
    pub service: Service,
    /// Present when the service copies files in.
    pub config_map: Option<ConfigMap>,
}

/// `env` and `args` are rendered (secrets in); `files` are `render::copies`' output.
pub fn workload(
    svc: &ServiceSpec,
    env: &BTreeMap<String, String>,
    args: &[String],
    files: &[(String, Vec<u8>)],
    labels: &BTreeMap<String, String>,
) -> Workload {
    let mut pod_labels = labels.clone();
    pod_labels.insert(LABEL_SERVICE.into(), svc.name.clone());
    let selector = json!({ LABEL_SERVICE: svc.name });
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|(name, port)| json!({ "name": name, "containerPort": port }))
        .collect();
    let mut container = json!({
        "name": svc.name,
        "image": svc.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect::<Vec<_>>(),
        "ports": ports,
    });
    // The platform file's `command` replaces the image's CMD and keeps its entrypoint, as
    // Docker's does: Kubernetes calls that `args`.
    if !args.is_empty() {
        container["args"] = json!(args);
    }
    if let Some(bytes) = svc.memory {
        container["resources"] = json!({ "limits": { "memory": bytes.to_string() } });
    }
    if let Some(probe) = svc.ready.iter().find_map(|r| probe(r, &svc.ports)) {
        container["readinessProbe"] = probe;
    }
    let name = svc.name.clone();
    let mut pod_spec = json!({ "containers": [container], "terminationGracePeriodSeconds": 5 });
    let config_map = (!files.is_empty()).then(|| {
        // ConfigMap keys allow no `/`: numbered keys, each mounted at its path by subPath.
        let data: BTreeMap<String, ByteString> = files
            .iter()
            .enumerate()
            .map(|(i, (_, bytes))| (format!("f{i}"), ByteString(bytes.clone())))
            .collect();
        pod_spec["containers"][0]["volumeMounts"] = files
            .iter()
            .enumerate()
            .map(|(i, (path, _))| json!({ "name": "copy", "mountPath": path, "subPath": format!("f{i}") }))
            .collect();
        pod_spec["volumes"] = json!([{ "name": "copy", "configMap": { "name": format!("{name}-copy") } }]);
        ConfigMap {
            metadata: meta(&format!("{name}-copy"), labels),
            binary_data: Some(data),
            ..Default::default()
        }
    });
    let deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": selector },
            "template": { "metadata": { "labels": pod_labels }, "spec": pod_spec },
        },
    }))
    .expect("a Deployment built from typed parts");
    let service = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "selector": selector,
            "ports": svc.ports.iter().map(|(n, p)| json!({ "name": n, "port": p, "targetPort": p })).collect::<Vec<_>>(),
        },
    }))
    .expect("a Service built from typed parts");
    Workload {
        deployment,
        service,
        config_map,
    }
}

fn meta(
    name: &str,
    labels: &BTreeMap<String, String>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        labels: Some(labels.clone()),
        ..Default::default()
    }
}

/// The kubelet's probe for a readiness condition it can judge itself; log lines and check
/// steps are judged by the harness (logs through the API, steps through a port-forward).
fn probe(r: &ReadyCondition, ports: &BTreeMap<String, u16>) -> Option<Value> {
    let every = |p: Value| {
        let mut p = p;
        p["periodSeconds"] = json!(1);
        p["failureThreshold"] = json!(1);
        Some(p)
    };
    match r {
        ReadyCondition::Tcp { port } => every(json!({ "tcpSocket": { "port": ports.get(port)? } })),
        // The kubelet accepts any 2xx/3xx; a specific status or body is left to the harness.
        ReadyCondition::Http {
            port,
            path,
            status,
            body_matches: None,
        } if (200..400).contains(status) => {
            every(json!({ "httpGet": { "port": ports.get(port)?, "path": path } }))
        }
        ReadyCondition::Command { argv } => every(json!({ "exec": { "command": argv } })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::platform::DEFAULT_STARTUP_TIMEOUT;

    fn spec(ready: Vec<ReadyCondition>) -> ServiceSpec {
        ServiceSpec {
            name: "redis".into(),
            image: "platform-kit/redis:7.0.15".into(),
            upstream_image: None,
            env: BTreeMap::new(),
            command: Vec::new(),
            ports: BTreeMap::from([("redis".into(), 6379)]),
            copy: Vec::new(),
            depends_on: Vec::new(),
            ready,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            memory: Some(256 * 1024 * 1024),
            after_start: Vec::new(),
            endpoint: BTreeMap::new(),
            expected_ready: DEFAULT_STARTUP_TIMEOUT,
            start_cores: 0.0,
        }
    }

    #[test]
    fn a_service_becomes_a_deployment_and_a_service_with_its_ports_limit_and_probe() {
        let labels = BTreeMap::from([("org.platform-harness.run".to_string(), "r1".to_string())]);
        let env = BTreeMap::from([("REDIS_PASSWORD".to_string(), "pw".to_string())]);
        let w = workload(
            &spec(vec![ReadyCondition::Tcp {
                port: "redis".into(),
            }]),
            &env,
            &["--maxmemory".into(), "100mb".into()],
            &[],
            &labels,
        );
        let d = serde_json::to_value(&w.deployment).unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "platform-kit/redis:7.0.15");
        assert_eq!(c["args"], json!(["--maxmemory", "100mb"]));
        assert_eq!(
            c["env"],
            json!([{ "name": "REDIS_PASSWORD", "value": "pw" }])
        );
        assert_eq!(c["resources"]["limits"]["memory"], "268435456");
        assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 6379);
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"][LABEL_SERVICE],
            "redis"
        );
        assert_eq!(d["metadata"]["labels"]["org.platform-harness.run"], "r1");
        let s = serde_json::to_value(&w.service).unwrap();
        assert_eq!(
            s["spec"]["ports"],
            json!([{ "name": "redis", "port": 6379, "targetPort": 6379 }])
        );
        assert_eq!(s["spec"]["selector"][LABEL_SERVICE], "redis");
        assert!(w.config_map.is_none());
    }

    #[test]
    fn copied_files_are_a_config_map_mounted_file_by_file() {
        let files = vec![
            ("/etc/a.conf".to_string(), b"a".to_vec()),
            ("/etc/b/c.conf".to_string(), b"c".to_vec()),
        ];
        let w = workload(
            &spec(vec![]),
            &BTreeMap::new(),
            &[],
            &files,
            &BTreeMap::new(),
        );
        let cm = w.config_map.expect("a ConfigMap");
        assert_eq!(cm.metadata.name.as_deref(), Some("redis-copy"));
        assert_eq!(cm.binary_data.unwrap()["f1"].0, b"c");
        let d = serde_json::to_value(&w.deployment).unwrap();
        let mounts = &d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert_eq!(
            mounts[1],
            json!({ "name": "copy", "mountPath": "/etc/b/c.conf", "subPath": "f1" })
        );
    }

    #[test]
    fn log_line_readiness_leaves_no_probe_to_the_kubelet() {
        let ready = vec![ReadyCondition::Log {
            line: "Ready".into(),
            times: 1,
        }];
        let w = workload(&spec(ready), &BTreeMap::new(), &[], &[], &BTreeMap::new());
        let d = serde_json::to_value(&w.deployment).unwrap();
        assert!(d["spec"]["template"]["spec"]["containers"][0]
            .get("readinessProbe")
            .is_none());
    }
}
