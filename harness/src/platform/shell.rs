//! Commands in a service's container for `exec` steps: stdout and stderr kept apart, and a
//! deadline, after which the command is abandoned (Docker has no way to cancel an exec;
//! the container goes at the end of the run anyway).

use std::time::Duration;

use futures::StreamExt;
use testcontainers::bollard::container::LogOutput;
use testcontainers::bollard::exec::{CreateExecOptions, StartExecResults};
use testcontainers::bollard::Docker;

use crate::kinds::ExecOutput;

pub async fn exec(
    docker: &Docker,
    container_id: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, String> {
    tokio::time::timeout(timeout, exec_unbounded(docker, container_id, argv))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "did not finish within {} (abandoned)",
                humantime::format_duration(timeout)
            ))
        })
}

pub(super) async fn exec_unbounded(
    docker: &Docker,
    container_id: &str,
    argv: &[String],
) -> Result<ExecOutput, String> {
    let created = docker
        .create_exec(
            container_id,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out = ExecOutput::default();
    if let StartExecResults::Attached { output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| e.to_string())?
    {
        let mut output = output;
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|e| e.to_string())? {
                LogOutput::StdErr { message } => {
                    out.stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => out.stdout.push_str(&other.to_string()),
            }
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| e.to_string())?;
    // A program that does not exist in the image: Docker says so in the output and
    // exits 126/127; keep the code, the message is in the output.
    out.exit_code = inspect.exit_code.unwrap_or(-1);
    Ok(out)
}
