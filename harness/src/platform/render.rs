//! What a service's templates see, and the files copied into its container, rendered the
//! same way wherever a service is started (the container backend, `up`, the benchmark's
//! bare baseline).

use std::collections::BTreeMap;
use std::path::Path;

use crate::secrets::Secrets;
use crate::spec::platform::{files_below, CopySpec};
use crate::spec::template;

/// `${secret.NAME}`: what `env`, `command` and templated files see before the container exists.
pub fn secrets_only(secrets: &Secrets) -> impl Fn(&str) -> Option<String> + '_ {
    |key| {
        key.strip_prefix("secret.")
            .and_then(|s| secrets.get(s))
            .map(str::to_string)
    }
}

/// Also `${port.NAME}` (the published host port) and `${host}`: what `after_start` and
/// `endpoint` see once the ports are known.
pub fn started<'a>(
    ports: &'a BTreeMap<String, u16>,
    secrets: &'a Secrets,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |key| match key.strip_prefix("port.") {
        Some(p) => ports.get(p).map(u16::to_string),
        None if key == "host" => Some("127.0.0.1".into()),
        None => secrets_only(secrets)(key),
    }
}

/// Each file `copies` puts in the container, as (path in the container, contents): a
/// directory's files land below its `to`; templates are rendered with the secrets.
pub fn copies(
    base_dir: &Path,
    copies: &[CopySpec],
    secrets: &Secrets,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for c in copies {
        let from = base_dir.join(&c.from);
        let files = files_below(&from).map_err(|e| format!("copy {}: {e}", from.display()))?;
        for path in files {
            let rel = path.strip_prefix(&from).unwrap_or(&path);
            let target = if rel.as_os_str().is_empty() {
                c.to.clone()
            } else {
                format!("{}/{}", c.to.trim_end_matches('/'), rel.display())
            };
            let bytes =
                std::fs::read(&path).map_err(|e| format!("copy {}: {e}", path.display()))?;
            let data = if c.template {
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("copy {}: a template must be UTF-8 text", path.display())
                })?;
                template::render(&text, secrets_only(secrets))
                    .map_err(|e| format!("copy {}: {e}", path.display()))?
                    .into_bytes()
            } else {
                bytes
            };
            out.push((target, data));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_services_see_ports_host_and_secrets() {
        let secrets = Secrets::from_values(BTreeMap::from([("pw".into(), "s3cret-value".into())]));
        let ports = BTreeMap::from([("sql".to_string(), 5433u16)]);
        let vars = started(&ports, &secrets);
        assert_eq!(vars("port.sql").as_deref(), Some("5433"));
        assert_eq!(vars("host").as_deref(), Some("127.0.0.1"));
        assert_eq!(vars("secret.pw").as_deref(), Some("s3cret-value"));
        assert_eq!(vars("port.nope"), None);
        assert_eq!(secrets_only(&secrets)("port.sql"), None);
    }

    #[test]
    fn a_directory_lands_below_its_target_and_templates_are_rendered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf/sub")).unwrap();
        std::fs::write(dir.path().join("conf/a.properties"), "key=${secret.pw}").unwrap();
        std::fs::write(dir.path().join("conf/sub/b.sql"), "SELECT 1").unwrap();
        let secrets = Secrets::from_values(BTreeMap::from([("pw".into(), "s3cret-value".into())]));
        let spec = CopySpec {
            from: "conf".into(),
            to: "/etc/x/".into(),
            template: true,
        };
        let mut got = copies(dir.path(), &[spec], &secrets).unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "/etc/x/a.properties".to_string(),
                    b"key=s3cret-value".to_vec()
                ),
                ("/etc/x/sub/b.sql".to_string(), b"SELECT 1".to_vec()),
            ]
        );
    }
}
