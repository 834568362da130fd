//! Which image each service runs: the offline kit's image, or the upstream one.
//!
//! `PLATFORM_IMAGES=kit` uses the kit's images (built by `fixtures/images/build`);
//! `upstream` uses `upstream_image` (pulled from a registry when missing); `auto`, the
//! default, takes the kit's image when it is built here, else the upstream image when it
//! is present locally, and otherwise stops with the command that builds the kit's.

use std::collections::{BTreeMap, BTreeSet};

use testcontainers::bollard::Docker;

use super::docker;
use super::StartError;
use crate::spec::platform::PlatformSpec;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Kit,
    Upstream,
    Auto,
}

impl Mode {
    pub fn from_env() -> Result<Self, StartError> {
        match std::env::var("PLATFORM_IMAGES").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(Self::Auto),
            Ok("kit") => Ok(Self::Kit),
            Ok("upstream") => Ok(Self::Upstream),
            Ok(other) => Err(StartError::Setting(format!(
                "PLATFORM_IMAGES={other:?}: use `kit`, `upstream` or `auto`"
            ))),
        }
    }
}

pub async fn choose(
    docker: &Docker,
    spec: &PlatformSpec,
    services: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, StartError> {
    let mode = Mode::from_env()?;
    let mut chosen = BTreeMap::new();
    let mut missing = Vec::new();
    for name in services {
        let svc = &spec.services[name];
        let kit = svc.image.clone();
        let upstream = svc.upstream_image.clone();
        let pick = match mode {
            Mode::Kit => docker::image_exists(docker, &kit)
                .await
                .then_some(kit.clone()),
            // testcontainers pulls it when absent.
            Mode::Upstream => Some(upstream.clone().unwrap_or(kit.clone())),
            Mode::Auto => {
                if docker::image_exists(docker, &kit).await {
                    Some(kit.clone())
                } else {
                    match &upstream {
                        Some(u) if docker::image_exists(docker, u).await => Some(u.clone()),
                        _ => None,
                    }
                }
            }
        };
        match pick {
            Some(image) => {
                chosen.insert(name.clone(), image);
            }
            None => missing.push((name.clone(), kit)),
        }
    }
    if missing.is_empty() {
        return Ok(chosen);
    }
    let (services, images) = missing.into_iter().unzip();
    Err(StartError::ImagesMissing { images, services })
}

/// `registry:5000/name:tag` -> (`registry:5000/name`, `tag`); no tag means `latest`.
pub fn split_reference(image: &str) -> (String, String) {
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("postgres:15", ("postgres", "15"))]
    #[case("platform-kit/minio:RELEASE.2025-10-15T17-29-55Z", ("platform-kit/minio", "RELEASE.2025-10-15T17-29-55Z"))]
    #[case("localhost:5000/trino", ("localhost:5000/trino", "latest"))]
    #[case("localhost:5000/trino:435", ("localhost:5000/trino", "435"))]
    #[case("busybox", ("busybox", "latest"))]
    fn splits_references(#[case] image: &str, #[case] expected: (&str, &str)) {
        let (n, t) = split_reference(image);
        assert_eq!((n.as_str(), t.as_str()), expected);
    }
}
