//! The endpoints file of an `up` platform, in the format `--endpoints` and
//! `PLATFORM_ENDPOINTS` read (`platform::external`), so other tools can use the platform.
//! Credentials go by reference, as that format demands: to the environment variable or
//! file the platform spec reads the secret from. A secret that came from its `default`
//! (a value already in the platform file) is written to `secrets/NAME` with mode 0600.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::state::UpService;
use crate::mask::looks_like_credential;
use crate::secrets::Secrets;
use crate::spec::platform::PlatformSpec;
use crate::template;

/// `host` gives the address of each service: 127.0.0.1 for published ports, a Service's
/// DNS name in the cluster.
pub fn write(
    dir: &Path,
    spec: &PlatformSpec,
    services: &BTreeMap<String, UpService>,
    secrets: &Secrets,
    host: &dyn Fn(&str) -> String,
) -> Result<PathBuf, String> {
    let mut root = toml::Table::new();
    let mut all = toml::Table::new();
    for (name, up) in services {
        let svc = &spec.services[name];
        let mut t = toml::Table::new();
        let address = host(name);
        t.insert("host".into(), address.clone().into());
        let ports: toml::Table = up
            .ports
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::Integer(i64::from(*v))))
            .collect();
        t.insert("ports".into(), ports.into());
        let mut params = toml::Table::new();
        let mut credentials = toml::Table::new();
        for (key, value) in &svc.endpoint {
            let vars = |k: &str| -> Option<String> {
                match k.strip_prefix("port.") {
                    Some(p) => up.ports.get(p).map(u16::to_string),
                    None if k == "host" => Some(address.clone()),
                    None => None,
                }
            };
            let is_secret = value.contains("${secret.");
            if !is_secret && !looks_like_credential(key) {
                let v = template::render(value, vars).map_err(|e| format!("{name}.{key}: {e}"))?;
                params.insert(key.clone(), v.into());
                continue;
            }
            let source = credential_source(dir, spec, secrets, name, key, value)?;
            credentials.insert(key.clone(), source.into());
        }
        t.insert("params".into(), params.into());
        if !credentials.is_empty() {
            t.insert("credentials".into(), credentials.into());
        }
        all.insert(name.clone(), t.into());
    }
    root.insert("services".into(), all.into());
    let text = toml::to_string(&root).map_err(|e| format!("writing the endpoints: {e}"))?;
    let path = dir.join(super::state::ENDPOINTS_FILE);
    let header = "#:schema ../../../harness/schema/endpoints.schema.json\n\
                  # The `up` platform, for `platform-verify run --endpoints` or PLATFORM_ENDPOINTS.\n\
                  # Credentials are references; `platform-verify down` removes this folder.\n";
    std::fs::write(&path, format!("{header}{text}"))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// `{ env = VAR }` when the secret comes from a variable set now, `{ file = PATH }` when
/// from a file; otherwise (a default, or a template mixing text and secrets) the value
/// goes to a 0600 file of its own.
fn credential_source(
    dir: &Path,
    spec: &PlatformSpec,
    secrets: &Secrets,
    service: &str,
    key: &str,
    template_text: &str,
) -> Result<toml::Table, String> {
    let whole = template_text
        .strip_prefix("${secret.")
        .and_then(|s| s.strip_suffix('}'))
        .filter(|s| !s.contains('$'));
    let mut t = toml::Table::new();
    if let Some(source) = whole.and_then(|n| spec.secrets.get(n)) {
        if let Some(var) = source
            .env
            .as_ref()
            .filter(|v| std::env::var_os(v).is_some())
        {
            t.insert("env".into(), var.clone().into());
            return Ok(t);
        }
        if let Some(f) = &source.file {
            let path = super::state::canonical(&spec.base_dir().join(f));
            t.insert("file".into(), path.to_string_lossy().into_owned().into());
            return Ok(t);
        }
    }
    let value = template::render(template_text, |k| {
        k.strip_prefix("secret.")
            .and_then(|s| secrets.get(s))
            .map(str::to_string)
    })
    .map_err(|e| format!("{service}.{key}: {e}"))?;
    let rel = PathBuf::from("secrets").join(match whole {
        Some(n) => n.to_string(),
        None => format!("{service}-{key}"),
    });
    write_private(&dir.join(&rel), &value)?;
    t.insert("file".into(), rel.to_string_lossy().into_owned().into());
    Ok(t)
}

/// Created with mode 0600 (never readable by others, not even for a moment).
fn write_private(path: &Path, value: &str) -> Result<(), String> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::external::ExternalPlatform;

    const SPEC: &str = r#"
[secrets]
from_env = { env = "PATH", default = "unused-default" }
from_default = { env = "HARNESS_EP_UNSET", default = "dflt-secret-9" }
[services.db]
image = "db:1"
ports = { sql = 5432, http = 8080 }
ready = [{ tcp = "sql" }]
endpoint = { user = "app", password = "${secret.from_env}", url = "http://${host}:${port.http}", secret_key = "${secret.from_default}", dsn = "u:${secret.from_default}@h" }
"#;

    #[test]
    fn the_endpoints_file_loads_with_credentials_by_reference() {
        let dir = std::env::temp_dir().join(format!("harness-up-ep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = PlatformSpec::parse(Path::new("p.toml"), SPEC).unwrap();
        let secrets = Secrets::resolve(&spec.secrets, Path::new(".")).unwrap();
        let up = UpService {
            container: "c".into(),
            run: "r".into(),
            image: "db:1".into(),
            image_id: "sha256:1".into(),
            fingerprint: String::new(),
            ports: BTreeMap::from([("sql".into(), 40001), ("http".into(), 40002)]),
            forwarded: BTreeMap::new(),
        };
        let path = write(
            &dir,
            &spec,
            &BTreeMap::from([("db".into(), up)]),
            &secrets,
            &|_| "127.0.0.1".into(),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("dflt-secret-9"), "{text}");
        assert!(text.contains("env = \"PATH\""), "{text}");
        let ep = ExternalPlatform::load(&path)
            .unwrap()
            .endpoint("db")
            .unwrap();
        assert_eq!(ep.port("sql").unwrap(), 40001);
        assert_eq!(ep.params["user"], "app");
        assert_eq!(ep.params["url"], "http://127.0.0.1:40002");
        assert_eq!(ep.params["password"], std::env::var("PATH").unwrap());
        assert_eq!(ep.params["secret_key"], "dflt-secret-9");
        assert_eq!(ep.params["dsn"], "u:dflt-secret-9@h");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secrets/from_default"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
