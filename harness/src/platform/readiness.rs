//! Waiting until a started container is ready. The harness polls its own conditions
//! (rather than testcontainers' `WaitFor`) so a timeout can say which condition was
//! missing, for how long, and what the service logged. Every probe is bounded: one that
//! hangs counts as "not ready yet".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use testcontainers::bollard::Docker;
use tokio::sync::watch;

use super::docker::{self, seconds};
use super::log_watch::LogWatch;
use crate::kinds::{Endpoint, StepContext, Vars};
use crate::spec::platform::ReadyCondition;

/// Pauses between polls: the first, and the longest it grows to (a quarter longer each
/// time).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub first: Duration,
    pub max: Duration,
}

impl Pace {
    /// A fast service is seen within a tenth of a second; a slow one is not probed ten
    /// times a second for half a minute.
    pub const BACKOFF: Self = Self {
        first: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };

    /// The same pause every time (the benchmark's bare baseline polls at 100 ms).
    pub const fn every(pause: Duration) -> Self {
        Self {
            first: pause,
            max: pause,
        }
    }
}
/// One probe (a command, an HTTP request) may take this long before it is abandoned.
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// What the readiness loop needs to probe one container.
pub struct Probe<'a> {
    pub docker: &'a Docker,
    pub container_id: &'a str,
    /// Named port -> port mapped on 127.0.0.1.
    pub host_ports: &'a BTreeMap<String, u16>,
    /// Named port -> container port, reached on the container's address for `tcp`
    /// (the host's port proxy accepts connections even when nothing listens behind it).
    pub container_ports: &'a BTreeMap<String, u16>,
    pub network: &'a str,
    /// What a `step` condition's action talks to.
    pub endpoint: &'a Endpoint,
}

/// `Err` says what was still missing when `deadline` (the end of the service's
/// `timeout`) passed, that the container exited, or that the run is stopping.
pub async fn wait_ready(
    probe: &Probe<'_>,
    conditions: &[ReadyCondition],
    deadline: Instant,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
    pace: Pace,
) -> Result<(), String> {
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..conditions.len()).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    // Log conditions are counted from one followed stream; `log_index[i]` is condition
    // i's needle in it.
    let needles: Vec<String> = conditions
        .iter()
        .filter_map(|c| match c {
            ReadyCondition::Log { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    let logs =
        (!needles.is_empty()).then(|| LogWatch::follow(probe.docker, probe.container_id, needles));
    let mut log_index = BTreeMap::new();
    for (i, c) in conditions.iter().enumerate() {
        if matches!(c, ReadyCondition::Log { .. }) {
            log_index.insert(i, log_index.len());
        }
    }
    let mut last: BTreeMap<usize, String> = BTreeMap::new();
    let mut polls = 0u32;
    let mut pause = pace.first;
    loop {
        // Made before probing, so output that arrives meanwhile still wakes the pause.
        let log_output = logs.as_ref().map(LogWatch::changed);
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = left.min(PROBE_LIMIT).max(Duration::from_millis(100));
        let mut still = Vec::new();
        for i in pending {
            let c = &conditions[i];
            // A probe given only what was left before the deadline, and cut off: its
            // "did not answer" says less than the answer the probe before it got.
            let mut cut_by_deadline = false;
            let status = match (c, &logs) {
                (ReadyCondition::Log { times, .. }, Some(logs)) => {
                    let seen = logs.count(log_index[&i]);
                    if seen >= *times {
                        Ok(())
                    } else {
                        Err(format!("seen {seen} of {times} times"))
                    }
                }
                _ => match tokio::time::timeout(limit, holds(probe, c, &http, limit)).await {
                    Ok(s) => s,
                    Err(_) => {
                        cut_by_deadline = limit < PROBE_LIMIT;
                        Err(format!(
                            "last probe did not answer within {}",
                            seconds(limit)
                        ))
                    }
                },
            };
            match status {
                Err(_) if cut_by_deadline && last.contains_key(&i) => still.push(i),
                Err(status) => {
                    last.insert(i, format!("{}: {status}", waiting_for(c)));
                    still.push(i);
                }
                Ok(()) => {
                    last.remove(&i);
                }
            }
        }
        pending = still;
        polls += 1;
        tracing::debug!(
            poll = polls,
            elapsed_ms = started.elapsed().as_millis() as u64,
            pending = pending.len(),
            last = %last.values().cloned().collect::<Vec<_>>().join("; "),
            "readiness poll"
        );
        if pending.is_empty() {
            tracing::debug!(
                polls,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ready"
            );
            return Ok(());
        }
        let missing = || last.values().cloned().collect::<Vec<_>>().join("; ");
        if let Ok(state) = docker::container_state(probe.docker, probe.container_id).await {
            if let Some(exit) = docker::describe_exit(&state) {
                return Err(format!(
                    "its container stopped before it was ready ({exit}), after {}; it was waiting for {}",
                    seconds(started.elapsed()),
                    missing()
                ));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready: waited {} (its startup timeout) for {}",
                seconds(timeout),
                missing()
            ));
        }
        // Only log conditions left: new output is the only thing that can change them.
        let logs_only = pending
            .iter()
            .all(|i| matches!(conditions[*i], ReadyCondition::Log { .. }));
        let woken = async {
            match log_output {
                Some(n) if logs_only => n.await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = woken => {}
            _ = stop.wait_for(|s| *s) => return Err("not ready: the run is stopping".into()),
        }
        pause = (pause * 5 / 4).min(pace.max);
    }
}

/// The condition as the message names it: "log line `X`", "GET /v1/info to answer 200".
fn waiting_for(c: &ReadyCondition) -> String {
    match c {
        ReadyCondition::Log { line, .. } => format!("log line `{line}`"),
        ReadyCondition::Http {
            port,
            path,
            status,
            body_matches,
        } => {
            let mut s = format!("GET {path} on port `{port}` to answer {status}");
            if let Some(re) = body_matches {
                s.push_str(&format!(" with a body matching /{re}/"));
            }
            s
        }
        ReadyCondition::Tcp { port } => format!("a TCP connection to port `{port}`"),
        ReadyCondition::Command { argv } => format!("command `{}` to exit 0", argv.join(" ")),
        ReadyCondition::Step(step) => format!("step `{}` to succeed", step.name),
    }
}

async fn holds(
    probe: &Probe<'_>,
    c: &ReadyCondition,
    http: &reqwest::Client,
    limit: Duration,
) -> Result<(), String> {
    match c {
        ReadyCondition::Log { .. } => Err("its log is not followed".into()),
        ReadyCondition::Step(step) => {
            let endpoints =
                BTreeMap::from([(probe.endpoint.service.clone(), probe.endpoint.clone())]);
            let vars = Vars::new();
            let cx = StepContext {
                endpoint: probe.endpoint,
                endpoints: &endpoints,
                vars: &vars,
                shell: None,
                probe: true,
            };
            step.action
                .run(&cx)
                .await
                .map(|_| ())
                .map_err(|e| format!("last attempt: {}", crate::mask::clip(e.message(), 300)))
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
                .map_err(|e| format!("last attempt: {}", error_chain(&e)))?;
            let got = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let snippet: String = body.trim().chars().take(200).collect();
            if got != *status {
                return Err(format!("last answer {got} {snippet:?}"));
            }
            match body_matches {
                Some(re) if !regex::Regex::new(re).is_ok_and(|r| r.is_match(&body)) => {
                    Err(format!("last answer {got} {snippet:?}"))
                }
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
                Ok(Err(e)) => Err(format!("last attempt on {addr}: {e}")),
                Err(_) => Err(format!("last attempt on {addr}: connect timed out")),
            }
        }
        ReadyCondition::Command { argv } => {
            match docker::exec(probe.docker, probe.container_id, argv, limit).await {
                Ok((0, _)) => Ok(()),
                Ok((code, out)) => Err(format!("last run exited {code}: {}", out.trim())),
                Err(e) => Err(format!("last run: {e}")),
            }
        }
    }
}

/// reqwest's top line ("error sending request") hides the cause; its sources say it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

async fn container_ip(probe: &Probe<'_>) -> Result<String, String> {
    let info = probe
        .docker
        .inspect_container(probe.container_id, None)
        .await
        .map_err(|e| e.to_string())?;
    info.network_settings
        .and_then(|n| n.networks)
        // Engines name their default network differently (Podman: `podman`); a container
        // of the run has one network, so its only address will do.
        .and_then(|mut n| n.remove(probe.network).or_else(|| n.into_values().next()))
        .and_then(|n| n.ip_address)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| "the container has no address on the run's network yet".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(ReadyCondition::Log { line: "X".into(), times: 1 }, "log line `X`")]
    #[case(
        ReadyCondition::Http { port: "http".into(), path: "/v1/info".into(), status: 200, body_matches: None },
        "GET /v1/info on port `http` to answer 200"
    )]
    #[case(ReadyCondition::Command { argv: vec!["pg_isready".into(), "-q".into()] }, "command `pg_isready -q` to exit 0")]
    fn names_what_it_waits_for(#[case] c: ReadyCondition, #[case] named: &str) {
        assert_eq!(waiting_for(&c), named);
    }
}
