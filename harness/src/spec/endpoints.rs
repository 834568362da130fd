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

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::{SpecError, SpecErrors};
use crate::kinds::Endpoint;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    #[schemars(with = "BTreeMap<String, ServiceEndpoint>")]
    services: BTreeMap<String, Spanned<ServiceEndpoint>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ServiceEndpoint {
    host: String,
    ports: BTreeMap<String, u16>,
    // Both taken as raw values and checked here: serde's own "invalid type" message
    // quotes the value, and a value typed where a credential belongs is one.
    /// Plain parameters (user, database, region...); credentials never go here.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    params: BTreeMap<String, Spanned<toml::Value>>,
    /// Where each credential is read from: `{ env = "VAR" }` or `{ file = "path" }`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, CredentialSchema>")]
    credentials: BTreeMap<String, Spanned<toml::Value>>,
}

/// The shape `credentials` values are checked against (by hand, so no message quotes a
/// value typed in their place); here for the schema.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CredentialSchema {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Debug)]
struct CredentialSource {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct ExternalPlatform {
    pub file: PathBuf,
    pub endpoints: BTreeMap<String, Endpoint>,
    secrets: Vec<String>,
}

/// Endpoints redact their credentials; the resolved values are only counted.
impl std::fmt::Debug for ExternalPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalPlatform")
            .field("file", &self.file)
            .field("endpoints", &self.endpoints)
            .field("secrets", &format_args!("{} value(s)", self.secrets.len()))
            .finish()
    }
}

/// The schema of endpoints files (`fixtures/endpoints.example.toml`).
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(EndpointsFile).to_value()
}

impl ExternalPlatform {
    pub fn load(file: &Path) -> Result<Self, SpecErrors> {
        let source = std::fs::read_to_string(file)
            .map_err(|e| SpecError::file(file, format!("cannot read endpoints file: {e}")))?;
        Self::parse(file, &source)
    }

    /// Parses and resolves credentials; a credential that cannot be read, or a value
    /// written inline where a credential belongs, is an error at its line, before any
    /// check runs. No error quotes a value.
    pub fn parse(file: &Path, source: &str) -> Result<Self, SpecErrors> {
        let raw: EndpointsFile =
            toml::from_str(source).map_err(|e| SpecError::from_toml_redacted(file, source, &e))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let mut endpoints = BTreeMap::new();
        let mut secrets = Vec::new();
        for (name, spanned) in raw.services {
            let svc = spanned.into_inner();
            let mut params = BTreeMap::new();
            for (key, value) in svc.params {
                match param(&key, value.get_ref()) {
                    Ok(v) => {
                        params.insert(key, v);
                    }
                    Err(m) => errors.push(SpecError::at(
                        file,
                        source,
                        value.span(),
                        format!("service `{name}`, field `params.{key}`: {m}"),
                    )),
                }
            }
            for (key, cred) in svc.credentials {
                let span = cred.span();
                let resolved = credential_source(cred.get_ref()).and_then(|c| {
                    let v = resolve(&c, base)?;
                    crate::mask::check_maskable(&format!("the value ({})", c.origin()), &v)?;
                    Ok(v)
                });
                match resolved {
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

    /// Values read from credentials, for the masker.
    pub fn credential_values_secret(&self) -> Vec<String> {
        self.secrets.clone()
    }
}

/// Refused rather than masked: masking would hide the value in reports, but the
/// endpoints file itself (committed, shared) would still hold it in plain text.
fn param(key: &str, value: &toml::Value) -> Result<String, String> {
    if crate::mask::looks_like_credential(key) {
        return Err(format!(
            "`{key}` looks like a credential, and credentials are never written inline: \
             move it to `credentials = {{ {key} = {{ env = \"VAR\" }} }}` (or `{{ file = \"PATH\" }}`); \
             the value is not shown"
        ));
    }
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        other => Err(format!("must be a string, found {}", other.type_str())),
    }
}

/// By hand, so that no message quotes what was typed (it may be the password itself).
fn credential_source(value: &toml::Value) -> Result<CredentialSource, String> {
    let table = value.as_table().ok_or_else(|| {
        format!(
            "must be a table `{{ env = \"VAR\" }}` or `{{ file = \"PATH\" }}`, found {} \
             (the value is not shown; a credential is never written inline)",
            value.type_str()
        )
    })?;
    let mut source = CredentialSource {
        env: None,
        file: None,
    };
    for (k, v) in table {
        let text = v
            .as_str()
            .ok_or_else(|| format!("`{k}` must be a string, found {}", v.type_str()));
        match k.as_str() {
            "env" => source.env = Some(text?.to_string()),
            "file" => source.file = Some(PathBuf::from(text?)),
            _ => return Err(format!("unknown field `{k}`, expected `env` or `file`")),
        }
    }
    Ok(source)
}

impl CredentialSource {
    fn origin(&self) -> String {
        match (&self.env, &self.file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(f)) => format!("file {}", f.display()),
            (None, None) => "nowhere".into(),
        }
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
    #[case::inline_credential_param(
        "[services.pg]\nhost = \"h\"\nports = {}\nparams = { user = \"u\", password = \"Hunter2-inline\" }",
        "e.toml:4:35: service `pg`, field `params.password`: `password` looks like a credential"
    )]
    #[case::inline_token_param(
        "[services.t]\nhost = \"h\"\nports = {}\nparams = { api_token = \"Hunter2-inline\" }",
        "field `params.api_token`: `api_token` looks like a credential"
    )]
    #[case::credential_typed_inline(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = \"Hunter2-inline\" }",
        "e.toml:4:28: service `pg`, credential `password`: must be a table"
    )]
    #[case::credential_as_number(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = 77123456 }",
        "must be a table `{ env = \"VAR\" }` or `{ file = \"PATH\" }`, found integer"
    )]
    #[case::credential_unknown_field(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { value = \"Hunter2-inline\" } }",
        "unknown field `value`, expected `env` or `file`"
    )]
    #[case::env_name_as_number(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { env = 77123456 } }",
        "`env` must be a string, found integer"
    )]
    #[case::param_as_number(
        "[services.pg]\nhost = \"h\"\nports = {}\nparams = { database = 77123456 }",
        "field `params.database`: must be a string, found integer"
    )]
    #[case::host_as_number(
        "[services.pg]\nhost = 77123456\nports = {}",
        "e.toml:2:8: invalid type: integer, expected a string"
    )]
    #[case::short_credential(
        "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { file = \"short-pw\" } }",
        "credential `password`: the value (file short-pw) is 3 character(s) long"
    )]
    fn rejects_bad_endpoint_files(#[case] src: &str, #[case] expected: &str) {
        let dir = std::env::temp_dir().join(format!("harness-endpoints-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("short-pw"), "abc\n").unwrap();
        let err = ExternalPlatform::parse(&dir.join("e.toml"), src)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        for value in ["Hunter2-inline", "77123456", "abc"] {
            assert!(!err.contains(value), "the value leaked: {err}");
        }
    }

    #[test]
    fn debug_shows_no_credential() {
        let src = "[services.pg]\nhost = \"h\"\nports = {}\ncredentials = { password = { env = \"PATH\" } }";
        let p = ExternalPlatform::parse(Path::new("e.toml"), src).unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains(&std::env::var("PATH").unwrap()), "{shown}");
        assert!(shown.contains("1 value(s)"), "{shown}");
    }
}
