//! File formats: the platform spec and the suites, parsed and validated before anything
//! starts. Every error names file, line and column.

pub mod endpoints;
pub mod error;
pub mod expect;
pub mod graph;
pub mod named;
pub mod platform;
pub mod schema;
mod step_table;
pub mod suite;

pub use crate::template;

use std::collections::BTreeSet;
use std::path::Path;

pub use error::{SpecError, SpecErrors};
pub use platform::PlatformSpec;
pub use suite::{Check, Suite};

/// The platform and every suite found in a directory (`*.toml`, sorted by name).
#[derive(Debug, Clone)]
pub struct Spec {
    pub platform: PlatformSpec,
    pub suites: Vec<Suite>,
}

impl Spec {
    pub fn load(platform_file: &Path, suites_dir: &Path) -> Result<Self, SpecErrors> {
        Self::with_platform(PlatformSpec::load(platform_file)?, suites_dir)
    }

    /// The suites of `suites_dir` (and the platform's shared ones) against a platform
    /// already read, or made from an endpoints file (`PlatformSpec::of_endpoints`).
    pub fn with_platform(platform: PlatformSpec, suites_dir: &Path) -> Result<Self, SpecErrors> {
        let mut files: Vec<_> = std::fs::read_dir(suites_dir)
            .map_err(|e| SpecError::file(suites_dir, format!("cannot read suites directory: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for shared in &platform.include_suites {
            let same = |f: &std::path::PathBuf| f.canonicalize().ok() == shared.canonicalize().ok();
            if !files.iter().any(same) {
                files.push(shared.clone());
            }
        }
        let mut errors = Vec::new();
        let mut suites: Vec<Suite> = Vec::new();
        for f in &files {
            match Suite::load(f, &platform) {
                Ok(s) => {
                    if let Some(other) = suites.iter().find(|o| o.name == s.name) {
                        errors.push(SpecError::file(
                            f,
                            format!(
                                "suite name `{}` is already used by {}",
                                s.name,
                                other.file.display()
                            ),
                        ));
                    }
                    suites.push(s);
                }
                Err(e) => errors.extend(e.0),
            }
        }
        if errors.is_empty() {
            Ok(Self { platform, suites })
        } else {
            Err(SpecErrors(errors))
        }
    }

    /// The platform and suites of a run. With an endpoints file and no platform file, the
    /// endpoints file alone says which services exist (nothing is started anyway).
    pub fn load_for(
        platform: &Path,
        suites: &Path,
        endpoints: Option<&Path>,
    ) -> Result<Self, SpecErrors> {
        match endpoints {
            Some(file) if !platform.exists() => {
                let external = endpoints::ExternalPlatform::load(file)?;
                let services = external.endpoints.keys().cloned();
                Self::with_platform(PlatformSpec::of_endpoints(file, services), suites)
            }
            _ => Self::load(platform, suites),
        }
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.suites.iter().flat_map(|s| s.checks.iter())
    }

    /// For each service, the services all of whose `checks` wait for it ([`graph::waiters`]).
    pub fn waiters<'a>(checks: impl IntoIterator<Item = &'a Check>) -> graph::Waiters {
        let nodes = checks
            .into_iter()
            .map(|c| {
                let node = graph::CheckNode {
                    services: c.services(),
                    needs: c.needed_ids(),
                };
                (c.id(), node)
            })
            .collect();
        graph::waiters(&nodes)
    }

    /// The services `checks` use, with everything those depend on.
    pub fn services_for<'a>(
        &self,
        checks: impl IntoIterator<Item = &'a Check>,
    ) -> BTreeSet<String> {
        let wanted: BTreeSet<String> = checks.into_iter().flat_map(|c| c.services()).collect();
        graph::closure(
            wanted.iter().map(String::as_str),
            &self.platform.runs_with(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// The shipped platforms as the start scheduler sees them.
    #[rstest]
    // Trino's query needs the changes Kafka Connect lands: Connect is not held for Trino.
    #[case::cdc_connect_for_trino("cdc-lakehouse", "kafka-connect", "trino", true)]
    // Trino's own checks on the default platform wait for no Kafka check: Kafka still
    // leaves Trino's start the cores.
    #[case::default_kafka_not_for_trino("default", "kafka", "trino", false)]
    // Prometheus's checks lead to no check on Trino.
    #[case::cdc_prometheus_not_for_trino("cdc-lakehouse", "prometheus", "trino", false)]
    fn the_shipped_suites_say_who_waits(
        #[case] platform: &str,
        #[case] service: &str,
        #[case] waiter: &str,
        #[case] waits: bool,
    ) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (platform, suites) = named::locate(&root, platform).expect("a shipped platform");
        let spec = Spec::load(&platform, &suites).expect("it loads");
        let waiters = Spec::waiters(spec.checks());
        let got = waiters.get(service).is_some_and(|w| w.contains(waiter));
        assert_eq!(got, waits, "{service}: {:?}", waiters.get(service));
    }
}
