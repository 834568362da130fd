//! Waiting until a started container is ready. The harness polls its own conditions
//! (rather than testcontainers' `WaitFor`) so a timeout can say which condition was
//! missing, for how long, and what the service logged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testcontainers::bollard::Docker;
use testcontainers::{ContainerAsync, GenericImage};

use super::docker;
use crate::spec::platform::ReadyCondition;

const POLL: Duration = Duration::from_millis(250);

/// What the readiness loop needs to probe one container.
pub struct Probe<'a> {
    pub docker: &'a Docker,
    pub container: &'a ContainerAsync<GenericImage>,
    /// Named port -> port mapped on 127.0.0.1.
    pub host_ports: &'a BTreeMap<String, u16>,
    /// Named port -> container port, reached on the container's address for `tcp`
    /// (the host's port proxy accepts connections even when nothing listens behind it).
    pub container_ports: &'a BTreeMap<String, u16>,
    pub network: &'a str,
}

/// `Err` says what was still missing when the deadline passed, or that the container
/// exited.
pub async fn wait_ready(
    probe: &Probe<'_>,
    conditions: &[ReadyCondition],
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut pending: Vec<&ReadyCondition> = conditions.iter().collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    let mut last_status = String::new();
    loop {
        let logs = if pending
            .iter()
            .any(|c| matches!(c, ReadyCondition::Log { .. }))
        {
            docker::all_logs(probe.docker, probe.container.id()).await
        } else {
            String::new()
        };
        let mut still = Vec::new();
        for c in pending {
            match holds(probe, c, &logs, &http).await {
                Ok(()) => {}
                Err(status) => {
                    last_status = format!("{c} ({status})");
                    still.push(c);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        if let Ok(false) = probe.container.is_running().await {
            let code = probe.container.exit_code().await.ok().flatten();
            return Err(format!(
                "the container exited (code {}) before it was ready; waiting for {last_status}",
                code.map_or("unknown".to_string(), |c| c.to_string())
            ));
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "not ready within its startup timeout of {}: waiting for {last_status}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn holds(
    probe: &Probe<'_>,
    c: &ReadyCondition,
    logs: &str,
    http: &reqwest::Client,
) -> Result<(), String> {
    match c {
        ReadyCondition::Log { line, times } => {
            let seen = logs.matches(line.as_str()).count();
            if seen >= *times {
                Ok(())
            } else {
                Err(format!("seen {seen} of {times}"))
            }
        }
        ReadyCondition::Http {
            port,
            path,
            status,
            body_matches,
        } => {
            let host_port = probe.host_ports.get(port).ok_or("port not mapped")?;
            let url = format!("http://127.0.0.1:{host_port}{path}");
            let resp = http
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let got = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if got != *status {
                return Err(format!("last answer {got}"));
            }
            match body_matches {
                Some(re) if !regex::Regex::new(re).is_ok_and(|r| r.is_match(&body)) => Err(
                    format!("last body {:?}", body.chars().take(200).collect::<String>()),
                ),
                _ => Ok(()),
            }
        }
        ReadyCondition::Tcp { port } => {
            let container_port = probe.container_ports.get(port).ok_or("unknown port")?;
            let ip = container_ip(probe).await?;
            let addr = format!("{ip}:{container_port}");
            match tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("{addr}: {e}")),
                Err(_) => Err(format!("{addr}: connect timed out")),
            }
        }
        ReadyCondition::Command { argv } => {
            match docker::exec(probe.docker, probe.container.id(), argv).await? {
                (0, _) => Ok(()),
                (code, out) => Err(format!("exit code {code}: {}", out.trim())),
            }
        }
    }
}

async fn container_ip(probe: &Probe<'_>) -> Result<String, String> {
    let info = probe
        .docker
        .inspect_container(probe.container.id(), None)
        .await
        .map_err(|e| e.to_string())?;
    info.network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(probe.network))
        .and_then(|n| n.ip_address)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| "the container has no address on the run's network yet".to_string())
}
