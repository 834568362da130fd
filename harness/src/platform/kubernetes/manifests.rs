//! A platform service as Kubernetes objects (pure, no client): a Deployment of one pod with
//! the service's image, environment, arguments, ports, memory limit and readiness probe, a
//! Service with its named ports, and a ConfigMap with the files `copy` puts in; secrets
//! (env values and `command` arguments with `${secret.…}`, templated files) go in Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
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
    /// Present when the service copies files in and none is a template.
    pub config_map: Option<ConfigMap>,
    /// `<name>-env` (secret env values) and `<name>-copy` when a copied file is a template
    /// (rendered with secrets).
    pub secrets: Vec<Secret>,
}

/// What a service's templates rendered to, secrets kept apart.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub env: BTreeMap<String, String>,
    /// Environment variables from the `<name>-env` Secret (also what `$(VAR)` in `args`
    /// refers to).
    pub secret_env: BTreeMap<String, String>,
    pub args: Vec<String>,
    pub files: Vec<(String, Vec<u8>)>,
    /// The files hold secrets (a `copy` with `template = true`): a Secret, not a ConfigMap.
    pub files_secret: bool,
}

/// `env` and `args` are rendered (secrets in); `files` are `render::copies`' output.
pub fn workload(
    svc: &ServiceSpec,
    env: &BTreeMap<String, String>,
    args: &[String],
    files: &[(String, Vec<u8>)],
    labels: &BTreeMap<String, String>,
) -> Workload {
    let r = Rendered {
        env: env.clone(),
        args: args.to_vec(),
        files: files.to_vec(),
        ..Default::default()
    };
    workload_of(svc, &r, labels)
}

/// Appends to a JSON array, making it if the key was unset.
fn push(list: &mut Value, item: Value) {
    match list {
        Value::Array(items) => items.push(item),
        _ => *list = json!([item]),
    }
}

/// As `workload`, with secrets as Secrets.
pub fn workload_of(svc: &ServiceSpec, r: &Rendered, labels: &BTreeMap<String, String>) -> Workload {
    let (env, args, files) = (&r.env, &r.args, &r.files);
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
        "env": env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            // Secret values first: `$(VAR)` in args and in later values sees only earlier ones.
            .chain(r.secret_env.keys().map(|k| json!({
                "name": k,
                "valueFrom": { "secretKeyRef": { "name": format!("{}-env", svc.name), "key": k } },
            })))
            .collect::<Vec<_>>(),
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
    let mut secrets = Vec::new();
    if !r.secret_env.is_empty() {
        secrets.push(Secret {
            metadata: meta(&format!("{name}-env"), labels),
            string_data: Some(r.secret_env.clone()),
            ..Default::default()
        });
    }
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
        if r.files_secret {
            pod_spec["volumes"] = json!([{ "name": "copy", "secret": { "secretName": format!("{name}-copy") } }]);
            secrets.push(Secret {
                metadata: meta(&format!("{name}-copy"), labels),
                data: Some(data),
                ..Default::default()
            });
            return None;
        }
        pod_spec["volumes"] = json!([{ "name": "copy", "configMap": { "name": format!("{name}-copy") } }]);
        Some(ConfigMap {
            metadata: meta(&format!("{name}-copy"), labels),
            binary_data: Some(data),
            ..Default::default()
        })
    }).flatten();
    // In memory, as with Docker's tmpfs: an emptyDir of medium Memory, counted in the limit.
    for (i, path) in svc.tmpfs.iter().enumerate() {
        let volume = format!("tmpfs{i}");
        push(
            &mut pod_spec["containers"][0]["volumeMounts"],
            json!({ "name": volume, "mountPath": path }),
        );
        push(
            &mut pod_spec["volumes"],
            json!({ "name": volume, "emptyDir": { "medium": "Memory" } }),
        );
    }
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
        secrets,
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
            uses: Vec::new(),
            ready,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            memory: Some(256 * 1024 * 1024),
            after_start: Vec::new(),
            endpoint: BTreeMap::new(),
            expected_ready: DEFAULT_STARTUP_TIMEOUT,
            start_cores: 0.0,
            tmpfs: Vec::new(),
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
    fn tmpfs_paths_are_memory_volumes_beside_the_copied_files() {
        let mut svc = spec(vec![]);
        svc.tmpfs = vec!["/data".into()];
        let files = vec![("/etc/a.conf".to_string(), b"a".to_vec())];
        let w = workload(&svc, &BTreeMap::new(), &[], &files, &BTreeMap::new());
        let d = serde_json::to_value(&w.deployment).unwrap();
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([
                { "name": "copy", "mountPath": "/etc/a.conf", "subPath": "f0" },
                { "name": "tmpfs0", "mountPath": "/data" },
            ])
        );
        assert_eq!(
            pod["volumes"],
            json!([
                { "name": "copy", "configMap": { "name": "redis-copy" } },
                { "name": "tmpfs0", "emptyDir": { "medium": "Memory" } },
            ])
        );
    }

    #[test]
    fn secrets_are_secrets_referenced_by_env_and_templated_files_a_secret_volume() {
        let r = Rendered {
            env: BTreeMap::from([("PLAIN".to_string(), "x".to_string())]),
            secret_env: BTreeMap::from([("PW".to_string(), "s3cret".to_string())]),
            args: vec!["--password=$(PW)".into()],
            files: vec![("/etc/a.conf".to_string(), b"pw=s3cret".to_vec())],
            files_secret: true,
        };
        let w = workload_of(&spec(vec![]), &r, &BTreeMap::new());
        assert!(w.config_map.is_none());
        let names: Vec<_> = w
            .secrets
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["redis-env", "redis-copy"]);
        let d = serde_json::to_value(&w.deployment).unwrap();
        assert!(!d.to_string().contains("s3cret"), "{d}");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"],
            json!({ "name": "redis-env", "key": "PW" })
        );
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "redis-copy");
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
