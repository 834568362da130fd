//! The `kubernetes` kind against the kit's cluster (fixtures/k8s/cluster up): the kit's own
//! suite passes; workloads in a scratch namespace pass; a crash-looping Deployment, a
//! Service without ready endpoints, a Pending claim and a wrong replica count fail with
//! their cause. Without a running cluster those tests say so and return; an unreachable
//! API server is tested always.

mod kube_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Service};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use platform_harness::checks::{run_check, CheckRun, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};

use kube_common::{cluster, kubeconfig};
use serde_json::json;

fn endpoint(kubeconfig: &Path) -> Endpoint {
    Endpoint {
        service: "kubernetes".into(),
        host: String::new(),
        ports: BTreeMap::new(),
        params: BTreeMap::from([("kubeconfig".into(), kubeconfig.display().to_string())]),
    }
}

/// Every check of `suite` against `endpoint`, each bounded so a hang fails the test.
async fn run_suite(endpoint: &Endpoint, suite: &str, bound: Duration) -> Vec<(String, CheckRun)> {
    let platform =
        PlatformSpec::of_endpoints(Path::new("endpoints.toml"), ["kubernetes".to_string()]);
    let suite =
        Suite::parse(Path::new("kubernetes.toml"), suite, &platform).expect("the suite parses");
    let endpoints = BTreeMap::from([("kubernetes".to_string(), endpoint.clone())]);
    let mut runs = Vec::new();
    for check in &suite.checks {
        let run = tokio::time::timeout(bound, run_check(check, &endpoints, Vars::new()))
            .await
            .unwrap_or_else(|_| panic!("check {} did not finish within {bound:?}", check.name));
        runs.push((check.name.clone(), run));
    }
    runs
}

/// The failure message of check `name`, without the runner's `step N `...` on kubernetes: `.
fn failure(runs: &[(String, CheckRun)], name: &str) -> String {
    match &runs
        .iter()
        .find(|(n, _)| n == name)
        .expect("the check ran")
        .1
        .outcome
    {
        Outcome::Failed(m) => m
            .split_once(" on kubernetes: ")
            .unwrap_or_else(|| panic!("{name}: no step prefix in {m}"))
            .1
            .to_string(),
        other => panic!("{name}: expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_kit_cluster_suite_passes() {
    if cluster().await.is_none() {
        return;
    }
    let suite = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/k8s/suites/cluster.toml"
    ))
    .unwrap();
    let runs = run_suite(&endpoint(&kubeconfig()), &suite, Duration::from_secs(90)).await;
    assert_eq!(runs.len(), 3);
    for (name, run) in runs {
        assert_eq!(run.outcome, Outcome::Passed, "{name}");
    }
}

/// Deletes the scratch namespace and volume even when an assertion fails.
struct Scratch {
    kubeconfig: PathBuf,
    namespace: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (kubeconfig, ns) = (self.kubeconfig.clone(), self.namespace.clone());
        // Drop cannot await, and the test's runtime is blocked here: a client of its own on a
        // runtime of its own (one made on the test's runtime would wait for it forever).
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(kc) = Kubeconfig::read_from(&kubeconfig) else {
                    return;
                };
                let Ok(config) =
                    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
                else {
                    return;
                };
                let Ok(client) = Client::try_from(config) else {
                    return;
                };
                let dp = DeleteParams::default();
                let bound = Duration::from_secs(20);
                let _ = tokio::time::timeout(
                    bound,
                    Api::<Namespace>::all(client.clone()).delete(&ns, &dp),
                )
                .await;
                let _ = tokio::time::timeout(
                    bound,
                    Api::<PersistentVolume>::all(client).delete(&ns, &dp),
                )
                .await;
            });
        })
        .join()
        .unwrap();
    }
}

fn pod_template(
    app: &str,
    image: &str,
    command: serde_json::Value,
    probe: serde_json::Value,
) -> serde_json::Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": image, "imagePullPolicy": "Never",
                "command": command, "readinessProbe": probe,
            }],
        },
    })
}

async fn create<K>(client: &Client, ns: &str, manifest: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = serde_json::from_value(manifest).expect("a valid manifest");
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("the object is created");
}

/// Redis (kit image) behind a NodePort, a StatefulSet with a claim bound to a hostPath
/// volume, a Pending claim, and a Deployment whose container exits 3 at once.
async fn scratch_namespace(client: &Client) -> Scratch {
    let namespace = format!(
        "harness-kind-{}",
        uuid::Uuid::new_v4().simple().to_string().split_at(8).0
    );
    let ns_object: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": namespace } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns_object)
        .await
        .expect("a namespace");
    let scratch = Scratch {
        kubeconfig: kubeconfig(),
        namespace: namespace.clone(),
    };
    let ns = namespace.as_str();
    let tcp = json!({ "tcpSocket": { "port": 6379 }, "periodSeconds": 1 });
    let redis = pod_template(
        "web",
        "platform-kit/redis:7.0.15",
        json!(["docker-entrypoint.sh", "redis-server"]),
        tcp,
    );
    create::<Deployment>(client, ns, json!({
        "metadata": { "name": "web" },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } }, "template": redis },
    })).await;
    create::<Service>(client, ns, json!({
        "metadata": { "name": "web" },
        "spec": { "type": "NodePort", "selector": { "app": "web" }, "ports": [{ "name": "redis", "port": 6379 }] },
    })).await;
    let exists = json!({ "exec": { "command": ["test", "-d", "/data"] }, "periodSeconds": 1 });
    let mut store = pod_template(
        "store",
        "platform-kit/base:bookworm",
        json!(["sleep", "infinity"]),
        exists,
    );
    store["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "data", "mountPath": "/data" }]);
    store["spec"]["volumes"] =
        json!([{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }]);
    // Static provisioning: the bare cluster has no provisioner; the PV is named like the namespace.
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": { "name": namespace },
        "spec": {
            "capacity": { "storage": "10Mi" }, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "harness-manual", "persistentVolumeReclaimPolicy": "Retain",
            // Under the kit's state directory: `cluster down` removes it.
            "hostPath": { "path": format!("/var/lib/platform-k8s/volumes/{namespace}"), "type": "DirectoryOrCreate" },
            "claimRef": { "namespace": namespace, "name": "data" },
        },
    })).unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .expect("a volume");
    for (name, class) in [
        ("data", "harness-manual"),
        ("pending", "harness-nothing-provisions"),
    ] {
        create::<PersistentVolumeClaim>(client, ns, json!({
            "metadata": { "name": name },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": class, "resources": { "requests": { "storage": "10Mi" } } },
        })).await;
    }
    create::<StatefulSet>(client, ns, json!({
        "metadata": { "name": "store" },
        "spec": { "replicas": 1, "serviceName": "store", "selector": { "matchLabels": { "app": "store" } }, "template": store },
    })).await;
    let crash = pod_template(
        "crashy",
        "platform-kit/base:bookworm",
        json!(["sh", "-c", "echo crashing; exit 3"]),
        json!(null),
    );
    create::<Deployment>(client, ns, json!({
        "metadata": { "name": "crashy" },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "crashy" } }, "template": crash },
    })).await;
    create::<Service>(
        client,
        ns,
        json!({
            "metadata": { "name": "crashy" },
            "spec": { "selector": { "app": "crashy" }, "ports": [{ "port": 80 }] },
        }),
    )
    .await;
    scratch
}

const PASSING: &str = r#"
service = "kubernetes"
[[check]]
name = "web"
[[check.step]]
kubernetes.deployment = { name = "web", namespace = "NS", replicas = 2 }
within = "120s"
expect = [{ path = "$.available_replicas", equals = 2 }]
[[check]]
name = "web_pods"
[[check.step]]
kubernetes.pods = { selector = "app=web", namespace = "NS", min = 2 }
within = "60s"
expect = [{ path = "$.ready", equals = 2 }]
[[check]]
name = "web_service"
[[check.step]]
kubernetes.service = { name = "web", namespace = "NS", min_ready = 2 }
within = "60s"
[[check]]
name = "web_nodeport"
[[check.step]]
kubernetes.nodeport = { service = "web", namespace = "NS" }
within = "60s"
expect = [{ path = "$.node_port", ge = 30000 }]
[[check]]
name = "store"
[[check.step]]
kubernetes.statefulset = { name = "store", namespace = "NS", replicas = 1 }
within = "120s"
[[check]]
name = "data_bound"
[[check.step]]
kubernetes.pvc = { name = "data", namespace = "NS" }
within = "60s"
expect = [{ path = "$.capacity", equals = "10Mi" }]
"#;

const FAILING: &str = r#"
service = "kubernetes"
[[check]]
name = "crashy"
[[check.step]]
kubernetes.deployment = { name = "crashy", namespace = "NS" }
[[check]]
name = "crashy_service"
[[check.step]]
kubernetes.service = { name = "crashy", namespace = "NS" }
[[check]]
name = "pending"
[[check.step]]
kubernetes.pvc = { name = "pending", namespace = "NS" }
[[check]]
name = "three_webs"
[[check.step]]
kubernetes.deployment = { name = "web", namespace = "NS", replicas = 3 }
[[check]]
name = "missing"
[[check.step]]
kubernetes.deployment = { name = "no-such-deployment", namespace = "NS" }
"#;

#[tokio::test]
async fn workloads_pass_and_a_crash_loop_fails_with_its_cause() {
    let Some(client) = cluster().await else {
        return;
    };
    let scratch = scratch_namespace(&client).await;
    let ep = endpoint(&kubeconfig());
    let ns = &scratch.namespace;

    for (name, run) in run_suite(&ep, &PASSING.replace("NS", ns), Duration::from_secs(150)).await {
        assert_eq!(run.outcome, Outcome::Passed, "{name}");
    }

    // The kubelet backs off after the second exit: wait (bounded) until it says so.
    let started = Instant::now();
    let runs = loop {
        let runs = run_suite(&ep, &FAILING.replace("NS", ns), Duration::from_secs(30)).await;
        if failure(&runs, "crashy").contains("CrashLoopBackOff")
            || started.elapsed() > Duration::from_secs(120)
        {
            break runs;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let m = failure(&runs, "crashy");
    assert!(
        m.starts_with(&format!(
            "deployment {ns}/crashy: 0/1 available (0 ready, 1 updated); pod crashy-"
        )),
        "{m}"
    );
    assert!(m.contains("waiting CrashLoopBackOff"), "{m}");
    assert!(m.contains("last exit 3 (Error)"), "{m}");
    let restarts: u32 = m
        .split("restarts ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(restarts >= 1, "{m}");
    let m = failure(&runs, "crashy_service");
    assert_eq!(
        m,
        format!("service {ns}/crashy has 0 ready endpoint(s), expected at least 1")
    );
    let m = failure(&runs, "pending");
    assert!(
        m.starts_with(&format!(
            "persistentvolumeclaim {ns}/pending is Pending, not Bound"
        )),
        "{m}"
    );
    let m = failure(&runs, "three_webs");
    assert_eq!(
        m,
        format!("deployment {ns}/web declares 2 replicas, expected 3")
    );
    let m = failure(&runs, "missing");
    assert_eq!(
        m,
        format!("deployment {ns}/no-such-deployment does not exist")
    );
}

/// No cluster needed: an API server nobody serves is an error (not a failure) naming it,
/// within the kind's bound; a missing kubeconfig is one naming the file.
#[tokio::test]
async fn an_unreachable_api_server_or_missing_kubeconfig_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubeconfig");
    std::fs::write(&file, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n").unwrap();
    let suite = "service = \"kubernetes\"\n[[check]]\nname = \"d\"\n[[check.step]]\nkubernetes.deployment = { name = \"web\" }\n";
    let started = Instant::now();
    let runs = run_suite(&endpoint(&file), suite, Duration::from_secs(30)).await;
    match &runs[0].1.outcome {
        Outcome::Errored(m) => {
            assert!(m.contains("reading deployment default/web: "), "{m}");
            assert!(m.contains("Connection refused"), "{m}");
            assert!(m.ends_with("(API server https://127.0.0.1:1/)"), "{m}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    let missing = dir.path().join("no-such-kubeconfig");
    let runs = run_suite(&endpoint(&missing), suite, Duration::from_secs(30)).await;
    match &runs[0].1.outcome {
        Outcome::Errored(m) => assert!(
            m.contains(&format!("reading kubeconfig {}: ", missing.display())),
            "{m}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
}
