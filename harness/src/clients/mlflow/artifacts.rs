//! Artifacts: where a run's artifacts live under the server's proxy, listing them, and
//! moving their bytes through the proxy.

use reqwest::{Method, Url};
use serde::Deserialize;

use super::transport::Body;
use super::{Client, Error, FileInfo};

/// Path of a run's artifacts under the server's artifact proxy, from the run's
/// `artifact_uri`: `mlflow-artifacts:/1/<run>/artifacts` (or with a `//host:port`), or an
/// `http(s)://.../api/2.0/mlflow-artifacts/artifacts/...` URL. Any other scheme means the
/// run's artifacts bypass the tracking server (no `--serve-artifacts`, or an experiment
/// created with a direct `s3://` location), and clients would need the store's credentials.
pub fn proxied_artifact_root(artifact_uri: &str) -> Result<String, String> {
    const ANCHOR: &str = "/api/2.0/mlflow-artifacts/artifacts/";
    let path = if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts://host:port/path` or `mlflow-artifacts:/path`.
        match rest.strip_prefix("//") {
            Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
            None => rest,
        }
    } else if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
        match artifact_uri.split_once(ANCHOR) {
            Some((_, p)) => p,
            None => return Err(format!("artifact_uri {artifact_uri} is not under {ANCHOR}")),
        }
    } else {
        return Err(format!(
            "the run's artifact_uri {artifact_uri} is not served by the tracking server \
             (expected mlflow-artifacts:/...; start the server with --serve-artifacts and \
             --artifacts-destination, and create the experiment without an explicit artifact location)"
        ));
    };
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(format!("artifact_uri {artifact_uri} has an empty path"));
    }
    Ok(path.to_string())
}

/// Splits an artifact path given by a user into segments, refusing what the server would
/// refuse anyway (absolute paths, `..`), so the error names the input.
pub fn artifact_segments(path: &str) -> Result<Vec<&str>, String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Err("the artifact path is empty".into());
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!(
            "artifact path {path:?} must not contain `.` or `..` segments"
        ));
    }
    Ok(segments)
}

impl Client {
    /// A URL under the artifact proxy, each segment escaped.
    fn artifact_url(&self, root: &str, path: &str) -> Result<Url, Error> {
        let segments = artifact_segments(path).map_err(|cause| Error::Protocol {
            url: self.base.to_string(),
            cause,
        })?;
        let mut url = self.url("/api/2.0/mlflow-artifacts/artifacts", &[]);
        url.path_segments_mut()
            .map_err(|()| Error::Transport {
                url: self.base.to_string(),
                cause: "the base URL cannot have a path".into(),
            })?
            .extend(root.split('/').filter(|s| !s.is_empty()))
            .extend(segments);
        Ok(url)
    }

    /// The files directly under `path` of a run's artifacts (the root when `None`).
    pub async fn list_artifacts(
        &self,
        run_id: &str,
        path: Option<&str>,
    ) -> Result<Vec<FileInfo>, Error> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let mut query = vec![("run_id", run_id)];
        if let Some(p) = path {
            query.push(("path", p));
        }
        let r: Resp = self
            .call(Method::GET, "artifacts/list", &query, None)
            .await?;
        Ok(r.files)
    }

    /// Uploads through the tracking server's artifact proxy; `root` comes from
    /// [`proxied_artifact_root`].
    pub async fn upload_artifact(
        &self,
        root: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        let url = self.artifact_url(root, path)?;
        self.send(Method::PUT, url, Body::Bytes(body)).await?;
        Ok(())
    }

    pub async fn download_artifact(&self, root: &str, path: &str) -> Result<Vec<u8>, Error> {
        let url = self.artifact_url(root, path)?;
        self.send(Method::GET, url, Body::None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("mlflow-artifacts:/1/abc/artifacts", Ok("1/abc/artifacts"))]
    #[case(
        "mlflow-artifacts://mlflow:5000/1/abc/artifacts",
        Ok("1/abc/artifacts")
    )]
    #[case(
        "http://h:5000/api/2.0/mlflow-artifacts/artifacts/7/r/artifacts",
        Ok("7/r/artifacts")
    )]
    #[case(
        "s3://bucket/1/abc/artifacts",
        Err("not served by the tracking server")
    )]
    #[case("mlflow-artifacts:/", Err("empty path"))]
    #[case("http://h:5000/elsewhere", Err("is not under"))]
    fn finds_the_proxied_root(#[case] uri: &str, #[case] expected: Result<&str, &str>) {
        match (proxied_artifact_root(uri), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
        }
    }

    #[rstest]
    #[case("model/weights.bin", Ok(vec!["model", "weights.bin"]))]
    #[case("/a//b/", Ok(vec!["a", "b"]))]
    #[case("", Err(()))]
    #[case("a/../b", Err(()))]
    fn splits_artifact_paths(#[case] path: &str, #[case] expected: Result<Vec<&str>, ()>) {
        assert_eq!(artifact_segments(path).map_err(|_| ()), expected);
    }

    #[test]
    fn escapes_artifact_url_segments() {
        let c = Client::new("http://127.0.0.1:5000/", None).unwrap();
        let url = c.artifact_url("1/r1/artifacts", "dir/a b#c.txt").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/r1/artifacts/dir/a%20b%23c.txt"
        );
    }
}
