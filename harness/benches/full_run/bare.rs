//! The physical baseline: a service's image started with the docker CLI (`create`, `cp`,
//! `start`: what `docker run` does, with the same environment, command, files, ports and
//! memory as the platform spec), its readiness conditions polled from the host every
//! 100 ms. No testcontainers, no scheduler: what any hand-written script could do.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use platform_harness::kinds::Endpoint;
use platform_harness::platform::docker;
use platform_harness::platform::readiness::{self, Pace, Probe};
use platform_harness::secrets::Secrets;
use platform_harness::spec::platform::{files_below, PlatformSpec, ServiceSpec};
use platform_harness::spec::template;
use testcontainers::bollard::Docker;

/// Bare containers of one benchmark run, on their own network, removed when dropped (the
/// harness's run labels also let its reaper remove them after a killed benchmark).
pub struct BareRun {
    pub run_id: String,
    network: String,
    docker: Docker,
    rt: tokio::runtime::Handle,
}

impl BareRun {
    pub fn new(rt: &tokio::runtime::Runtime) -> Result<Self, String> {
        let run_id = format!("bare{}", &uuid_hex()[..8]);
        let network = format!("platform-{run_id}");
        let docker = docker::connect()?;
        rt.block_on(docker::create_network(&docker, &network, &run_id))?;
        Ok(Self {
            run_id,
            network,
            docker,
            rt: rt.handle().clone(),
        })
    }

    /// Starts `svc` and waits until ready; returns the time from `docker create` to ready.
    pub fn start(
        &self,
        spec: &PlatformSpec,
        svc: &ServiceSpec,
        secrets: &Secrets,
    ) -> Result<Duration, String> {
        let secret = |k: &str| {
            k.strip_prefix("secret.")
                .and_then(|s| secrets.get(s))
                .map(str::to_string)
        };
        let name = format!("{}-{}", svc.name, self.run_id);
        let mut create: Vec<String> = ["create", "--name", &name, "--network", &self.network]
            .map(String::from)
            .into();
        create.extend(["--network-alias".into(), svc.name.clone()]);
        create.extend(["--hostname".into(), svc.name.clone()]);
        for (k, v) in docker::run_labels(&self.run_id) {
            create.extend(["--label".into(), format!("{k}={v}")]);
        }
        for p in svc.ports.values() {
            create.extend(["-p".into(), format!("127.0.0.1::{p}")]);
        }
        for (k, v) in &svc.env {
            create.extend(["-e".into(), format!("{k}={}", template::render(v, secret)?)]);
        }
        if let Some(m) = svc.memory {
            create.extend(["--memory".into(), m.to_string()]);
        }
        create.push(svc.image.clone());
        for c in &svc.command {
            create.push(template::render(c, secret)?);
        }
        let staged = stage_copies(spec, svc, secrets)?;

        let started = Instant::now();
        let id = docker_cli(&create)?;
        for (from, to) in &staged.copies {
            docker_cli(&["cp".into(), from.clone(), format!("{id}:{to}")])?;
        }
        docker_cli(&["start".into(), id.clone()])?;

        let mut host_ports = BTreeMap::new();
        for (pname, p) in &svc.ports {
            let out = docker_cli(&["port".into(), id.clone(), format!("{p}/tcp")])?;
            let port = out
                .lines()
                .find_map(|l| l.rsplit(':').next()?.trim().parse::<u16>().ok())
                .ok_or_else(|| format!("{}: port {p} not published: {out}", svc.name))?;
            host_ports.insert(pname.clone(), port);
        }
        let vars = |k: &str| match k.strip_prefix("port.") {
            Some(p) => host_ports.get(p).map(u16::to_string),
            None if k == "host" => Some("127.0.0.1".into()),
            None => secret(k),
        };
        for argv in &svc.after_start {
            let mut exec = vec!["exec".to_string(), id.clone()];
            for a in argv {
                exec.push(template::render(a, vars)?);
            }
            docker_cli(&exec)?;
        }
        let params = svc
            .endpoint
            .iter()
            .map(|(k, v)| Ok((k.clone(), template::render(v, vars)?)))
            .collect::<Result<_, String>>()?;
        let endpoint = Endpoint {
            service: svc.name.clone(),
            host: "127.0.0.1".into(),
            ports: host_ports.clone(),
            params,
        };
        let probe = Probe {
            docker: &self.docker,
            container_id: &id,
            host_ports: &host_ports,
            container_ports: &svc.ports,
            network: &self.network,
            endpoint: &endpoint,
        };
        let (_stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let deadline = Instant::now() + svc.startup_timeout;
        self.rt
            .block_on(readiness::wait_ready(
                &probe,
                &svc.ready,
                deadline,
                svc.startup_timeout,
                &mut stop,
                Pace::every(Duration::from_millis(100)),
            ))
            .map_err(|e| format!("{} (bare): {e}", svc.name))?;
        Ok(started.elapsed())
    }

    /// CPU time of the service's bare container so far.
    pub fn cpu(&self, service: &str) -> Option<Duration> {
        let name = format!("{service}-{}", self.run_id);
        let id = docker_cli(&["inspect".into(), "-f".into(), "{{.Id}}".into(), name]).ok()?;
        self.rt.block_on(platform_harness::platform::cpu::container(
            &self.docker,
            &id,
        ))
    }
}

impl Drop for BareRun {
    fn drop(&mut self) {
        let cleanup = self
            .rt
            .block_on(docker::remove_run(&self.docker, &self.run_id));
        for p in cleanup.problems {
            eprintln!("bare baseline cleanup: {p}");
        }
    }
}

/// Files a service gets copied in, rendered into a scratch directory (templates need the
/// secrets) as `(host path, container path)` pairs for `docker cp`.
struct Staged {
    copies: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

fn stage_copies(
    spec: &PlatformSpec,
    svc: &ServiceSpec,
    secrets: &Secrets,
) -> Result<Staged, String> {
    let dir = scratch_dir()?;
    let mut copies = Vec::new();
    for (n, c) in svc.copy.iter().enumerate() {
        let from = spec.base_dir().join(&c.from);
        let files = files_below(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        let stage = dir.path().join(n.to_string());
        for file in files {
            let rel = file.strip_prefix(&from).unwrap_or(Path::new(""));
            let target = if rel.as_os_str().is_empty() {
                stage.join(from.file_name().unwrap_or_default())
            } else {
                stage.join(rel)
            };
            std::fs::create_dir_all(target.parent().unwrap_or(&stage))
                .map_err(|e| e.to_string())?;
            let text = std::fs::read(&file).map_err(|e| e.to_string())?;
            let data = if c.template {
                let t = String::from_utf8(text).map_err(|e| e.to_string())?;
                template::render(&t, |k| {
                    k.strip_prefix("secret.")
                        .and_then(|s| secrets.get(s))
                        .map(str::to_string)
                })?
                .into_bytes()
            } else {
                text
            };
            std::fs::write(&target, data).map_err(|e| e.to_string())?;
        }
        let source = if from.is_file() {
            stage.join(from.file_name().unwrap_or_default())
        } else {
            stage.join(".")
        };
        copies.push((source.display().to_string(), c.to.clone()));
    }
    Ok(Staged { copies, _dir: dir })
}

/// A scratch directory removed when dropped.
pub fn scratch_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("platform-bench-")
        .tempdir()
        .map_err(|e| e.to_string())
}

pub fn uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Runs the docker CLI; its trimmed stdout, or its stderr as the error.
pub fn docker_cli(args: &[String]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {}: {e}", args.first().map_or("", |a| a.as_str())))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.first().map_or("", |a| a.as_str()),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
