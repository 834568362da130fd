//! The state file of an `up` platform (`target/platform-up/<up id>/state.toml`): what
//! runs, where, and the fingerprint each service had when it started. No secret is in
//! it: runs re-read credentials from the platform spec's own sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::UpError;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const STATE_FILE: &str = "state.toml";
pub const ENDPOINTS_FILE: &str = "endpoints.toml";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpState {
    pub version: u32,
    /// The value of `LABEL_UP` on every container and network of the platform.
    pub up_id: String,
    /// The platform file, canonical.
    pub platform: PathBuf,
    /// The Docker network, or on the Kubernetes backend the namespace.
    pub network: String,
    /// Set when the platform runs on the Kubernetes backend: its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Mixed into every fingerprint, so a fingerprint does not reveal a short secret.
    pub salt: String,
    /// The endpoints file written beside this one (the format `--endpoints` reads).
    pub endpoints: PathBuf,
    /// Labels every container and network of the platform carries (`down` removes by them).
    pub labels: BTreeMap<String, String>,
    pub services: BTreeMap<String, UpService>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpService {
    /// The container ID, or on the Kubernetes backend the pod `up` saw.
    pub container: String,
    /// The run (`LABEL_RUN`) that started it: `up` adds services in runs of their own.
    pub run: String,
    pub image: String,
    pub image_id: String,
    pub fingerprint: String,
    /// Named port -> the port checks reach: published on 127.0.0.1 (containers), or the
    /// Service's port (Kubernetes: warm runs forward to it from their own process).
    pub ports: BTreeMap<String, u16>,
    /// Kubernetes: the local ports `up` forwarded to the service and rendered into its
    /// start (Kafka advertises one); warm runs forward on the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forwarded: BTreeMap<String, u16>,
}

/// Where the state of `platform`'s up platform lives below `root`: named by its up id,
/// like its containers, so two platform files with one name (`a/platform.toml`,
/// `b/platform.toml`) never share a state: `down` of one deleted the other's.
pub fn dir(root: &Path, platform: &Path) -> PathBuf {
    root.join("target/platform-up").join(up_id(platform))
}

/// The platform's up id: its file's stem and a hash of its canonical path, so two
/// checkouts sharing one Docker engine never take each other's platform.
pub fn up_id(platform: &Path) -> String {
    let canonical = canonical(platform);
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let stem = platform
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{stem}-{}", hex(&digest[..4]))
}

pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl UpState {
    pub fn new(up_id: String, platform: &Path, network: String, salt: String) -> Self {
        Self {
            version: VERSION,
            labels: BTreeMap::from([(super::LABEL_UP.to_string(), up_id.clone())]),
            up_id,
            platform: canonical(platform),
            network,
            namespace: None,
            salt,
            endpoints: PathBuf::from(ENDPOINTS_FILE),
            services: BTreeMap::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, UpError> {
        let text = std::fs::read_to_string(path).map_err(|source| UpError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let state: Self = toml::from_str(&text).map_err(|e| UpError::Corrupt {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        if state.version != VERSION {
            return Err(UpError::OtherVersion {
                path: path.to_path_buf(),
                version: state.version,
            });
        }
        Ok(state)
    }

    pub fn save(&self, dir: &Path) -> Result<PathBuf, UpError> {
        let path = dir.join(STATE_FILE);
        let unwritable = |reason: String| UpError::Unwritable {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| unwritable(format!("creating {}: {e}", dir.display())))?;
        let text = toml::to_string_pretty(self).map_err(|e| unwritable(e.to_string()))?;
        let header = "# Written by `platform-verify up`; read by `cargo test --test platform` and\n\
                      # `platform-verify run`, which attach to this platform. No secret is stored here.\n";
        std::fs::write(&path, format!("{header}{text}")).map_err(|e| unwritable(e.to_string()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_reads_back_as_written() {
        let dir = std::env::temp_dir().join(format!("harness-up-state-{}", std::process::id()));
        let mut s = UpState::new(
            "platform-0a1b2c3d".into(),
            Path::new("fixtures/platform.toml"),
            "platform-upabc".into(),
            "5a17".into(),
        );
        s.services.insert(
            "postgres".into(),
            UpService {
                container: "c0ffee".into(),
                run: "upabc".into(),
                image: "platform-kit/postgres:15".into(),
                image_id: "sha256:1234".into(),
                fingerprint: "ab".repeat(32),
                ports: BTreeMap::from([("sql".into(), 32771)]),
                forwarded: BTreeMap::new(),
            },
        );
        let path = s.save(&dir).unwrap();
        assert_eq!(UpState::load(&path).unwrap(), s);
        std::fs::write(&path, "version = 1\n").unwrap();
        let err = UpState::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("run `platform-verify down`, then `up`"),
            "{err}"
        );
    }

    #[test]
    fn up_ids_differ_by_checkout_and_name_the_platform() {
        let a = up_id(Path::new("/a/fixtures/platform.toml"));
        let b = up_id(Path::new("/b/fixtures/platform.toml"));
        assert_ne!(a, b);
        assert!(
            a.starts_with("platform-") && a.len() == "platform-".len() + 8,
            "{a}"
        );
        let observability = Path::new("fixtures/platforms/observability.toml");
        assert_eq!(
            dir(Path::new("/r"), observability),
            Path::new("/r/target/platform-up").join(up_id(observability))
        );
        assert_ne!(
            dir(Path::new("/r"), Path::new("a/platform.toml")),
            dir(Path::new("/r"), Path::new("b/platform.toml")),
            "one stem, two files: two states"
        );
    }
}
