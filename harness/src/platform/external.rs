//! An already-running platform (staging, a shared compose host, Kubernetes NodePorts),
//! described by an endpoints file. Nothing is started; checks get these endpoints.
//!
//! ```toml
//! [services.postgres]
//! host = "db.staging.internal"
//! ports = { sql = 5432 }
//! params = { user = "platform", database = "platform" }
//! credentials = { password = { env = "STAGING_PG_PASSWORD" } }
//! ```
//! Credentials are never inline: each names an environment variable or a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{Endpoint, ServiceFailure};
use crate::spec::{SpecError, SpecErrors};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    services: BTreeMap<String, Spanned<ServiceEndpoint>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEndpoint {
    host: String,
    ports: BTreeMap<String, u16>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    credentials: BTreeMap<String, Spanned<CredentialSource>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialSource {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ExternalPlatform {
    pub file: PathBuf,
    pub endpoints: BTreeMap<String, Endpoint>,
    secrets: Vec<String>,
}

impl ExternalPlatform {
    pub fn load(file: &Path) -> Result<Self, SpecErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| SpecError::file(file, format!("cannot read endpoints file: {e}")))?;
        Self::parse(file, &source)
    }

    /// Parses and resolves credentials; a credential that cannot be read is an error at
    /// its line, before any check runs.
    pub fn parse(file: &Path, source: &str) -> Result<Self, SpecErrors> {
        let raw: EndpointsFile =
            toml::from_str(source).map_err(|e| SpecError::from_toml(file, source, &e))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let mut endpoints = BTreeMap::new();
        let mut secrets = Vec::new();
        for (name, spanned) in raw.services {
            let svc = spanned.into_inner();
            let mut params = svc.params;
            for (key, cred) in svc.credentials {
                let span = cred.span();
                match resolve(cred.get_ref(), base) {
                    Ok(v) => {
                        secrets.push(v.clone());
                        params.insert(key, v);
                    }
                    Err(m) => errors.push(SpecError::at(
                        file,
                        source,
                        span,
                        format!("service `{name}`, credential `{key}`: {m}"),
                    )),
                }
            }
            endpoints.insert(
                name.clone(),
                Endpoint {
                    service: name,
                    host: svc.host,
                    ports: svc.ports,
                    params,
                },
            );
        }
        if errors.is_empty() {
            Ok(Self {
                file: file.to_path_buf(),
                endpoints,
                secrets,
            })
        } else {
            Err(SpecErrors(errors))
        }
    }

    pub fn endpoint(&self, service: &str) -> Result<Endpoint, Arc<ServiceFailure>> {
        self.endpoints.get(service).cloned().ok_or_else(|| {
            Arc::new(ServiceFailure {
                service: service.to_string(),
                message: format!("has no endpoint in {}", self.file.display()),
                log_tail: String::new(),
            })
        })
    }

    /// Values read from credentials, for the masker.
    pub fn credential_values_secret(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

fn resolve(c: &CredentialSource, base: &Path) -> Result<String, String> {
    match (&c.env, &c.file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
        }
        (None, Some(f)) => {
            let path = base.join(f);
            std::fs::read_to_string(&path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        _ => Err("give exactly one of `env`, `file`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn resolves_credentials_from_the_environment() {
        let src = r#"
[services.postgres]
host = "db.example"
ports = { sql = 6432 }
params = { user = "app" }
credentials = { password = { env = "PATH" } }
"#;
        let p = ExternalPlatform::parse(Path::new("e.toml"), src).unwrap();
        let ep = p.endpoint("postgres").unwrap();
        assert_eq!(ep.host, "db.example");
        assert_eq!(ep.port("sql").unwrap(), 6432);
        assert_eq!(ep.params["password"], std::env::var("PATH").unwrap());
        let missing = p.endpoint("kafka").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "service `kafka` has no endpoint in e.toml"
        );
    }

    #[rstest]
    #[case::inline_password(
        "[services.pg]\nhost = \"h\"\nports = {}\npassword = \"x\"",
        "e.toml:4:1: unknown field `password`"
    )]
    #[case::unset_env(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { env = \"HARNESS_UNSET_VAR\" } }",
        "e.toml:4:28: service `pg`, credential `password`: environment variable HARNESS_UNSET_VAR is not set"
    )]
    #[case::both_sources(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { env = \"A\", file = \"f\" } }",
        "exactly one of `env`, `file`"
    )]
    fn rejects_bad_endpoint_files(#[case] src: &str, #[case] expected: &str) {
        let err = ExternalPlatform::parse(Path::new("e.toml"), src)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}
