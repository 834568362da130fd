//! What a running service was started from, as one hash: its spec, the files copied
//! into it, its image (by ID, so a rebuilt image counts as a change) and the secrets'
//! values, salted so the hash cannot be tested against guessed secrets without the state.

use sha2::{Digest, Sha256};

use crate::secrets::Secrets;
use crate::spec::platform::{files_below, PlatformSpec};

pub fn fingerprint(
    spec: &PlatformSpec,
    service: &str,
    image_id: &str,
    secrets: &Secrets,
    salt: &str,
) -> Result<String, String> {
    let svc = spec
        .services
        .get(service)
        .ok_or_else(|| format!("the platform has no service `{service}`"))?;
    let mut h = Sha256::new();
    let mut part = |label: &str, bytes: &[u8]| {
        // Length-prefixed, so no two different inputs concatenate to the same bytes.
        h.update(label.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("salt", salt.as_bytes());
    part("spec", format!("{svc:?}").as_bytes());
    part("image", image_id.as_bytes());
    for copy in &svc.copy {
        let from = spec.base_dir().join(&copy.from);
        let mut files =
            files_below(&from).map_err(|e| format!("{service}: copy {}: {e}", from.display()))?;
        files.sort();
        for f in files {
            let bytes =
                std::fs::read(&f).map_err(|e| format!("{service}: {}: {e}", f.display()))?;
            part(
                "file",
                f.strip_prefix(&from)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            part("bytes", &bytes);
        }
    }
    for name in spec.secrets.keys() {
        part("secret", name.as_bytes());
        part("value", secrets.get(name).unwrap_or_default().as_bytes());
    }
    Ok(super::state::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::BTreeMap;
    use std::path::Path;

    const SPEC: &str = r#"
[secrets]
pw = { env = "HARNESS_FP_UNSET", default = "pw-default-1" }
[services.db]
image = "db:1"
env = { PASSWORD = "${secret.pw}" }
ports = { sql = 5432 }
ready = [{ tcp = "sql" }]
"#;

    fn fp(spec: &str, image_id: &str, pw: &str, salt: &str) -> String {
        let spec = PlatformSpec::parse(Path::new("p.toml"), spec).unwrap();
        let secrets = Secrets::from_values(BTreeMap::from([("pw".into(), pw.into())]));
        fingerprint(&spec, "db", image_id, &secrets, salt).unwrap()
    }

    #[rstest]
    #[case::same(SPEC, "sha256:1", "pw-default-1", "s1", true)]
    #[case::spec_changed(&SPEC.replace("5432", "5433"), "sha256:1", "pw-default-1", "s1", false)]
    #[case::image_rebuilt(SPEC, "sha256:2", "pw-default-1", "s1", false)]
    #[case::secret_changed(SPEC, "sha256:1", "pw-other-22", "s1", false)]
    #[case::other_salt(SPEC, "sha256:1", "pw-default-1", "s2", false)]
    fn changes_with_what_the_service_was_started_from(
        #[case] spec: &str,
        #[case] image_id: &str,
        #[case] pw: &str,
        #[case] salt: &str,
        #[case] same: bool,
    ) {
        let base = fp(SPEC, "sha256:1", "pw-default-1", "s1");
        assert_eq!(fp(spec, image_id, pw, salt) == base, same);
        assert!(!base.contains("pw-default"), "{base}");
    }
}
