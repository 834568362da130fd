//! What the tests against the kit's Kubernetes cluster share: its client, or a printed
//! reason to skip when no cluster runs (fixtures/k8s/cluster up starts one).
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("PLATFORM_K8S_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/platform-k8s/admin.kubeconfig"))
}

/// A client of the kit's cluster, or None (printed) when none runs.
pub async fn cluster() -> Option<Client> {
    let path = kubeconfig();
    let skip = |why: String| {
        eprintln!(
            "skipped: no Kubernetes cluster ({why}); start the kit's with `fixtures/k8s/cluster up` or set PLATFORM_K8S_KUBECONFIG"
        );
        None
    };
    let kc = match Kubeconfig::read_from(&path) {
        Ok(kc) => kc,
        Err(e) => return skip(format!("{}: {e}", path.display())),
    };
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("the kubeconfig is usable");
    let client = Client::try_from(config).expect("a client");
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Some(client),
        Ok(Err(e)) => skip(format!("{}: {e}", path.display())),
        Err(_) => skip(format!("{}: no answer within 5 s", path.display())),
    }
}

/// The images of `wanted` (Docker names, `platform-kit/x:tag`) no node holds.
pub async fn images_missing(client: &Client, wanted: &[&str]) -> Vec<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("the API lists nodes");
    let held: Vec<String> = nodes
        .items
        .into_iter()
        .filter_map(|n| n.status?.images)
        .flatten()
        .flat_map(|i| i.names.unwrap_or_default())
        .collect();
    wanted
        .iter()
        .filter(|w| !held.iter().any(|h| h.ends_with(&format!("/{w}"))))
        .map(|w| w.to_string())
        .collect()
}
