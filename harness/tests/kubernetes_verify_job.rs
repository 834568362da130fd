//! Verification from inside the cluster: the default platform started on the kit's cluster
//! by the Kubernetes backend, then fixtures/k8s/verify-job.yaml applied as shipped with
//! `kubectl` in its namespace: the Job passes the default suites against the Services' DNS
//! names and leaves its JUnit on the node; with a wrong database password in its Secret the
//! Job fails, its JUnit says PostgreSQL's cause and never the password. The namespace goes
//! at the end. Without a running cluster, or without the images on its node
//! (`fixtures/k8s/cluster verify-image`, K8S_IMPORT_IMAGES), the test says so and returns.

mod kube_common;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use kube::{Api, Client};
use platform_harness::platform::kubernetes::reap;
use platform_harness::platform::kubernetes::run::start_all;
use platform_harness::secrets::Secrets;
use platform_harness::spec::{PlatformSpec, Spec};

use kube_common::{cluster, images_missing, kubeconfig};

const JOB: &str = "../fixtures/k8s/verify-job.yaml";
const REPORTS: &str = "/var/lib/platform-k8s/reports";
const WRONG_PASSWORD: &str = "not-the-password-4d1c";

fn kubectl(namespace: &str, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("kubectl runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {args:?}: {said}");
    said
}

/// The Secret the example's header says to create, with `password` for PostgreSQL.
fn credentials(namespace: &str, postgres: &str, minio: &str) {
    let _ = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
        .args(["-n", namespace, "delete", "secret", "platform-credentials"])
        .args(["--ignore-not-found"])
        .output();
    kubectl(
        namespace,
        &[
            "create",
            "secret",
            "generic",
            "platform-credentials",
            &format!("--from-literal=postgres-password={postgres}"),
            &format!("--from-literal=minio-secret-key={minio}"),
        ],
    );
}

/// Applies the example, waits (bounded) until its Job completes or fails; whether it
/// completed, its log, and the JUnit it left on the node.
async fn run_job(client: &Client, namespace: &str) -> (bool, String, String) {
    let _ = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
        .args(["-n", namespace, "delete", "job", "platform-verify"])
        .args(["--ignore-not-found", "--wait=true", "--timeout=60s"])
        .output();
    let junit = PathBuf::from(REPORTS)
        .join(namespace)
        .join("platform-junit.xml");
    let _ = std::fs::remove_file(&junit);
    kubectl(namespace, &["apply", "-f", JOB]);
    let jobs = Api::<Job>::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let completed = loop {
        let status = jobs
            .get("platform-verify")
            .await
            .expect("the Job is there")
            .status
            .unwrap_or_default();
        let done = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
        if let Some(c) = done {
            break c.type_ == "Complete";
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the Job did not finish within 10 min"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let log = kubectl(namespace, &["logs", "job/platform-verify"]);
    let junit = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("{}: {e}\nJob log:\n{log}", junit.display()));
    (completed, log, junit)
}

#[tokio::test]
async fn the_verify_job_passes_the_default_suites_in_the_cluster_and_fails_on_a_wrong_password() {
    let Some(client) = cluster().await else {
        return;
    };
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).unwrap();
    let mut images: Vec<&str> = platform
        .services
        .values()
        .map(|s| s.image.as_str())
        .collect();
    images.push("platform-kit/platform-verify:0.1.0");
    let missing = images_missing(&client, &images).await;
    if !missing.is_empty() {
        eprintln!(
            "skipped: the cluster's node lacks {missing:?}; run `fixtures/k8s/cluster verify-image` and `K8S_IMPORT_IMAGES=\"{}\" fixtures/k8s/cluster up`",
            missing.join(" ")
        );
        return;
    }
    let secrets = Secrets::resolve(&platform.secrets, platform.base_dir()).unwrap();
    let spec = Spec::load_for(
        Path::new("../fixtures/platform.toml"),
        Path::new("../suites"),
        None,
    )
    .unwrap();
    let expected: BTreeSet<String> = spec
        .checks()
        .filter(|c| !c.ignore && c.name != "psql_answers_in_its_container")
        .map(|c| c.name.clone())
        .collect();
    let everything: BTreeSet<String> = platform.services.keys().cloned().collect();
    let run = format!(
        "k8s-job-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // What an earlier run of this test left when its process died goes first.
    reap(&client).await.expect("reaping dead runs' namespaces");
    let started = start_all(client.clone(), &platform, &everything, &secrets, &run)
        .await
        .expect("the default platform starts on the cluster");
    eprintln!("ready on Kubernetes: {:?}", started.ready_in);
    let namespace = started.platform.namespace.clone();
    // The namespace and the node's report folder go even when an assertion fails.
    let verdict = AssertUnwindSafe(verify_with_the_job(
        &client, &namespace, &secrets, &expected,
    ))
    .catch_unwind()
    .await;
    started
        .platform
        .delete()
        .await
        .expect("the namespace is deleted");
    let _ = std::fs::remove_dir_all(PathBuf::from(REPORTS).join(&namespace));
    if let Err(panic) = verdict {
        std::panic::resume_unwind(panic);
    }
}

/// The Job as shipped passes with the right credentials and fails with a wrong password.
async fn verify_with_the_job(
    client: &Client,
    namespace: &str,
    secrets: &Secrets,
    expected: &BTreeSet<String>,
) {
    let password = |name: &str| {
        secrets
            .get(name)
            .unwrap_or_else(|| panic!("the platform's secret {name}"))
            .to_string()
    };

    credentials(
        namespace,
        &password("postgres_password"),
        &password("minio_password"),
    );
    let (completed, log, junit) = run_job(client, namespace).await;
    assert!(completed, "the Job failed:\n{log}");
    for name in expected {
        assert!(
            junit.contains(&format!("name=\"{name}\"")),
            "{name} not in the JUnit:\n{junit}"
        );
    }
    assert!(
        !junit.contains("<failure") && !junit.contains("<error"),
        "{junit}"
    );
    assert!(!junit.contains(&password("postgres_password")));

    credentials(namespace, WRONG_PASSWORD, &password("minio_password"));
    let (completed, log, junit) = run_job(client, namespace).await;
    assert!(!completed, "the Job passed with a wrong password:\n{log}");
    assert!(
        junit.contains("password authentication failed"),
        "PostgreSQL's cause in the JUnit:\n{junit}"
    );
    for text in [&log, &junit] {
        assert!(
            !text.contains(WRONG_PASSWORD),
            "the password printed:\n{text}"
        );
    }
}
