//! The physical baseline: a service's image started with the docker CLI (`create`, `cp`,
//! `start`: what `docker run` does, with the same environment, command, files, ports,
//! tmpfs mounts and memory as the platform spec), its readiness conditions polled from the
//! host every 100 ms. No testcontainers, no scheduler: what any hand-written script could do.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform_harness::platform::docker;
use platform_harness::platform::readiness::{self, Pace, Probe};
use platform_harness::platform::{render, up};
use platform_harness::secrets::Secrets;
use platform_harness::spec::platform::{PlatformSpec, ServiceSpec};
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
        let secret = render::secrets_only(secrets);
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
            create.extend([
                "-e".into(),
                format!("{k}={}", template::render(v, &secret)?),
            ]);
        }
        for path in &svc.tmpfs {
            create.extend(["--mount".into(), format!("type=tmpfs,destination={path}")]);
        }
        if let Some(m) = svc.memory {
            create.extend(["--memory".into(), m.to_string()]);
        }
        create.push(svc.image.clone());
        for c in &svc.command {
            create.push(template::render(c, &secret)?);
        }
        let staged = stage_copies(spec, svc, secrets)?;

        let started = Instant::now();
        let id = docker_cli(&create)?;
        staged.copy_into(&id)?;
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
        let vars = render::started(&host_ports, secrets);
        for argv in &svc.after_start {
            let mut exec = vec!["exec".to_string(), id.clone()];
            for a in argv {
                exec.push(template::render(a, &vars)?);
            }
            docker_cli(&exec)?;
        }
        let endpoint = up::endpoint_of(svc, &host_ports, secrets).map_err(|e| e.to_string())?;
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

/// Files a service gets copied in (rendered as the harness renders them), written below a
/// scratch directory at their paths in the container.
struct Staged {
    files: Vec<String>,
    dir: tempfile::TempDir,
}

fn stage_copies(
    spec: &PlatformSpec,
    svc: &ServiceSpec,
    secrets: &Secrets,
) -> Result<Staged, String> {
    let dir = scratch_dir()?;
    let mut files = Vec::new();
    for (to, data) in render::copies(spec.base_dir(), &svc.copy, secrets)? {
        let rel = to.trim_start_matches('/').to_string();
        let path = dir.path().join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, data).map_err(|e| e.to_string())?;
        files.push(rel);
    }
    Ok(Staged { files, dir })
}

impl Staged {
    /// One `docker cp -` of a tar that holds the files and no directory entries: the
    /// engine makes the directories a file needs (`docker cp FILE` refuses a path whose
    /// directory the image lacks, as Spark's jobs/) and leaves existing ones as they are.
    fn copy_into(&self, id: &str) -> Result<(), String> {
        if self.files.is_empty() {
            return Ok(());
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(self.dir.path())
            .args(["--no-recursion", "-cf", "-"])
            .args(&self.files)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tar: {e}"))?;
        let stdout = tar.stdout.take().ok_or("tar: no output")?;
        let cp = Command::new("docker")
            .args(["cp", "-", &format!("{id}:/")])
            .stdin(stdout)
            .output();
        // Waited for whatever docker did, so no tar is left behind.
        let tarred = tar.wait().map_err(|e| format!("tar: {e}"))?;
        let cp = cp.map_err(|e| format!("docker cp: {e}"))?;
        if !cp.status.success() {
            return Err(format!(
                "docker cp: {}",
                String::from_utf8_lossy(&cp.stderr).trim()
            ));
        }
        if !tarred.success() {
            return Err(format!("tar of {} failed: {tarred}", self.files.join(", ")));
        }
        Ok(())
    }
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
