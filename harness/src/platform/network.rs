//! Which network a run's containers start on.

use std::collections::BTreeSet;

use super::containers::Attached;
use crate::spec::platform::PlatformSpec;

/// The engine's default network, which every Docker engine has and nobody removes.
pub const DEFAULT_BRIDGE: &str = "bridge";

/// Where the services of a run live.
pub enum RunNetwork {
    /// A network of the run's own, made at its start and removed with it: the services
    /// reach one another by name on it.
    Own,
    /// The engine's default bridge, for services that talk to none of the others: no
    /// network to create and remove (0.07 s and 0.2 s on this machine's engine, a fifth
    /// of a `-- postgres` run). Each still resolves its own name, its hostname.
    DefaultBridge,
    /// An `up` platform's network, beside the services it already runs.
    Attached(Attached),
}

impl RunNetwork {
    /// The run's own network when one of `services` depends on or uses another, the
    /// default bridge when none does (the selection is closed over both, so an edge of
    /// the spec is an edge between services of the run).
    pub fn for_services(spec: &PlatformSpec, services: &BTreeSet<String>) -> Self {
        let talks = services.iter().any(|s| {
            spec.services
                .get(s)
                .is_some_and(|svc| !svc.depends_on.is_empty() || !svc.uses.is_empty())
        });
        if talks {
            Self::Own
        } else {
            Self::DefaultBridge
        }
    }

    /// A platform that stays up always gets its own: later runs may start services
    /// beside it that must find it by name.
    pub fn for_up(attached: Option<Attached>) -> Self {
        attached.map_or(Self::Own, Self::Attached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    /// Five services: `mlflow` depends on `postgres`, `trino` uses `minio`.
    fn spec() -> PlatformSpec {
        let services = [
            ("postgres", ""),
            ("kafka", ""),
            ("minio", ""),
            ("mlflow", r#"depends_on = ["postgres"]"#),
            ("trino", r#"uses = ["minio"]"#),
        ];
        let toml: String = services
            .iter()
            .map(|(name, extra)| {
                format!(
                    "[services.{name}]\nimage = \"{name}\"\nports = {{ p = 1 }}\n\
                     ready = [{{ tcp = \"p\" }}]\n{extra}\n"
                )
            })
            .collect();
        PlatformSpec::parse(Path::new("platform.toml"), &toml).expect("spec parses")
    }

    #[rstest]
    #[case::one_alone(&["postgres"], false)]
    #[case::two_that_never_talk(&["kafka", "postgres"], false)]
    #[case::a_dependency(&["mlflow", "postgres"], true)]
    #[case::a_service_it_uses(&["minio", "trino"], true)]
    #[case::the_whole_platform(&["kafka", "minio", "mlflow", "postgres", "trino"], true)]
    fn own_network_only_when_services_talk(#[case] services: &[&str], #[case] own: bool) {
        let services = services.iter().map(|s| s.to_string()).collect();
        let got = RunNetwork::for_services(&spec(), &services);
        assert_eq!(matches!(got, RunNetwork::Own), own);
        assert_eq!(matches!(got, RunNetwork::DefaultBridge), !own);
    }
}
