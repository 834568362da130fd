//! The same five services started by Docker Compose (`compose.yml` beside this file), timed
//! from `up -d` until every container reports healthy. Skipped, with a note, when neither
//! `docker compose` nor `docker-compose` is installed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use platform_harness::platform::render;
use platform_harness::secrets::Secrets;
use platform_harness::spec::platform::PlatformSpec;

use super::bare::{docker_cli, scratch_dir, uuid_hex};

const SERVICES: [&str; 5] = ["postgres", "minio", "kafka", "mlflow", "trino"];
const LIMIT: Duration = Duration::from_secs(240);

/// `docker compose` (v2) or `docker-compose` (v1), whichever answers.
fn compose_command() -> Option<Vec<String>> {
    let works = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose", "version"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose", "version"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

/// Time from `up -d` until all five are healthy; `Err` says why it was not measured.
pub fn all_ready(spec: &PlatformSpec, secrets: &Secrets) -> Result<Duration, String> {
    let compose = compose_command()
        .ok_or("neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)")?;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/full_run/compose.yml");
    // Trino's lake catalog as the harness renders it (a template with the MinIO secret).
    let catalog = scratch_dir()?;
    let trino = spec
        .services
        .get("trino")
        .ok_or("the platform has no `trino`")?;
    let lake = render::copies(spec.base_dir(), &trino.copy, secrets)?
        .into_iter()
        .find(|(to, _)| to.ends_with("/lake.properties"))
        .ok_or("trino's copies hold no lake.properties")?;
    std::fs::write(catalog.path().join("lake.properties"), lake.1).map_err(|e| e.to_string())?;
    let project = format!("bench{}", &uuid_hex()[..8]);
    let secret = |n: &str| secrets.get(n).unwrap_or_default().to_string();
    let kafka_port = free_port()?;
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(&compose[0])
            .args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(&file)
            .args(args)
            .env("PG_PASSWORD", secret("postgres_password"))
            .env("MINIO_PASSWORD", secret("minio_password"))
            .env("KAFKA_PORT", kafka_port.to_string())
            .env("TRINO_LAKE", catalog.path().join("lake.properties"))
            .output()
            .map_err(|e| format!("compose: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "compose {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> Result<(), String>);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            if let Err(e) = (self.0)(&["down", "-v", "--remove-orphans", "-t", "2"]) {
                eprintln!("compose cleanup: {e}");
            }
        }
    }
    let _down = Down(&run);
    let started = Instant::now();
    run(&["up", "-d"])?;
    loop {
        let healthy = SERVICES.iter().all(|s| {
            let name = format!("{project}_{s}_1");
            let v2 = format!("{project}-{s}-1");
            [name, v2].iter().any(|n| {
                docker_cli(&[
                    "inspect".into(),
                    "-f".into(),
                    "{{.State.Health.Status}}".into(),
                    n.clone(),
                ])
                .is_ok_and(|h| h == "healthy")
            })
        });
        if healthy {
            return Ok(started.elapsed());
        }
        if started.elapsed() > LIMIT {
            return Err(format!("not all healthy within {} s", LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kafka advertises a fixed host port under Compose: take one the system says is free.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
