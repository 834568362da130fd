//! Commands in a service's pod through the API server's exec (a websocket): `after_start`,
//! `command` readiness judged by the harness, and `exec` steps.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, ListParams};
use kube::Api;
use tokio::io::AsyncReadExt;

use super::manifests::LABEL_SERVICE;
use super::{bounded, KubePlatform};
use crate::clients::error_chain;
use crate::kinds::ExecOutput;

impl KubePlatform {
    /// The name of the service's running pod.
    pub async fn running_pod(&self, service: &str) -> Result<String, String> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{LABEL_SERVICE}={service}");
        let list = bounded(
            pods.list(&ListParams::default().labels(&selector)),
            &format!("service `{service}`: listing its pod"),
        )
        .await?;
        list.items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .and_then(|p| p.metadata.name)
            .ok_or_else(|| format!("service `{service}` has no running pod"))
    }

    /// Runs `argv` in the service's pod; gives up after `timeout`.
    pub async fn exec(
        &self,
        service: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, String> {
        let pod = self.running_pod(service).await?;
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let run = async {
            let mut p = pods
                .exec(&pod, argv.to_vec(), &AttachParams::default())
                .await
                .map_err(|e| error_chain(&e))?;
            let (mut out, mut err) = (String::new(), String::new());
            let (o, e) = (p.stdout(), p.stderr());
            let read_out = async {
                if let Some(mut o) = o {
                    let _ = o.read_to_string(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(mut e) = e {
                    let _ = e.read_to_string(&mut err).await;
                }
            };
            let status = p.take_status();
            tokio::join!(read_out, read_err);
            // No status means the stream ended early: never taken for a success.
            let status = match status {
                Some(s) => s.await,
                None => None,
            }
            .ok_or("the API server closed the exec without an exit status")?;
            Ok::<_, String>(ExecOutput {
                exit_code: exit_code(&status),
                stdout: out,
                stderr: err,
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r.map_err(|e| format!("service `{service}`: exec `{}`: {e}", argv.join(" "))),
            Err(_) => Err(format!(
                "service `{service}`: `{}` did not finish within {timeout:?}",
                argv.join(" ")
            )),
        }
    }
}

/// The exit code the API server reports: `Success`, or a failure whose cause `ExitCode`
/// carries it; a failure without one (the command not found) is 126, as a shell says.
fn exit_code(s: &Status) -> i64 {
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_ref()?.parse().ok())
        .unwrap_or(126)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[rstest::rstest]
    #[case(json!({ "status": "Success" }), 0)]
    #[case(json!({ "status": "Failure", "details": { "causes": [{ "reason": "ExitCode", "message": "3" }] } }), 3)]
    #[case(json!({ "status": "Failure", "message": "executable file not found" }), 126)]
    fn the_exit_code_comes_from_the_status(#[case] status: serde_json::Value, #[case] code: i64) {
        let s: Status = serde_json::from_value(status).unwrap();
        assert_eq!(exit_code(&s), code);
    }
}
