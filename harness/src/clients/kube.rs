//! A kube-rs client from a kubeconfig file, shared by the `kubernetes` check kind and the
//! Kubernetes backend: both read the same files and must bound every call the same way.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::error_chain;

/// A client of the cluster `path` describes (its `context`, else the current one), and that
/// cluster's URL. With `timeout`, connections, reads and writes each give up after it (for
/// one-shot calls); without, kube-rs's defaults stay (streams: logs, exec, port-forwards).
pub async fn client(
    path: &Path,
    context: Option<String>,
    timeout: Option<Duration>,
) -> Result<(Client, String), String> {
    let shown = path.display();
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| format!("reading kubeconfig {shown}: {}", error_chain(&e)))?;
    let options = KubeConfigOptions {
        context,
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("kubeconfig {shown}: {}", error_chain(&e)))?;
    if let Some(t) = timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
    }
    let server = config.cluster_url.to_string();
    Client::try_from(config)
        .map(|c| (c, server))
        .map_err(|e| format!("kubeconfig {shown}: {}", error_chain(&e)))
}
