//! A small typed client for MLflow's tracking REST API (`/api/2.0/mlflow/...`) and its
//! artifact proxy (`/api/2.0/mlflow-artifacts/...`), over reqwest.
//!
//! No well-kept Rust MLflow client exists (the crates on crates.io are unmaintained or
//! cover a fraction of the API), and the REST API is small and documented, so this speaks
//! it directly. Only the endpoints the checks use are here.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

/// Why a call did not give what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// No answer: connection refused, timeout, TLS, a bad URL.
    Transport { url: String, cause: String },
    /// The server answered with an error status; MLflow's body is `{error_code, message}`.
    Api {
        method: String,
        url: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// An answer that is not what the API documents.
    Protocol { url: String, cause: String },
}

impl Error {
    /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`, ...), when the server gave one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Api { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport { url, cause } => write!(f, "{url}: {cause}"),
            Self::Api {
                method,
                url,
                status,
                error_code,
                message,
            } => {
                write!(f, "{method} {url}: HTTP {status}")?;
                if let Some(code) = error_code {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::Protocol { url, cause } => write!(f, "{url}: unexpected answer: {cause}"),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub artifact_location: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
    /// `inputs`, `outputs` and whatever a newer server adds, kept for the step's output.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Metric {
    pub key: String,
    /// Protobuf JSON writes NaN and the infinities as strings.
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default)]
    pub file_size: Option<i64>,
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }
    match Num::deserialize(d)? {
        Num::F(f) => Ok(f),
        Num::S(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

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

#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    basic_auth: Option<(String, String)>,
}

impl Client {
    /// `base` is the server's root, e.g. `http://127.0.0.1:5000`.
    pub fn new(base: &str, basic_auth: Option<(String, String)>) -> Result<Self, Error> {
        let base = Url::parse(base).map_err(|e| Error::Transport {
            url: base.to_string(),
            cause: format!("not a URL: {e}"),
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Transport {
                url: base.to_string(),
                cause: crate::checks::http::error_chain(&e),
            })?;
        Ok(Self {
            base,
            http,
            basic_auth,
        })
    }

    /// `base` joined with `path` (already escaped), plus query parameters.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

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

    async fn send(&self, method: Method, url: Url, body: Body) -> Result<Vec<u8>, Error> {
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some((user, password)) = &self.basic_auth {
            req = req.basic_auth(user, Some(password));
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Bytes(b) => req
                .header("content-type", "application/octet-stream")
                .body(b),
        };
        let shown = display_url(&url);
        // The URL is in the message already; reqwest's own copy would add the query.
        let resp = req.send().await.map_err(|e| Error::Transport {
            url: shown.clone(),
            cause: crate::checks::http::error_chain(&e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Transport {
            url: shown.clone(),
            cause: format!(
                "reading the answer: {}",
                crate::checks::http::error_chain(&e.without_url())
            ),
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (error_code, message) = api_error(&bytes);
        Err(Error::Api {
            method: method.to_string(),
            url: shown,
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T, Error> {
        let url = self.url(&format!("/api/2.0/mlflow/{endpoint}"), query);
        let shown = display_url(&url);
        let bytes = self
            .send(method, url, body.map_or(Body::None, Body::Json))
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            url: shown,
            cause: format!("{e} in {}", snippet(&bytes)),
        })
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, Error> {
        #[derive(Deserialize)]
        struct Resp {
            experiment: Experiment,
        }
        let r: Resp = self
            .call(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
            )
            .await?;
        Ok(r.experiment)
    }

    pub async fn create_experiment(&self, name: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Resp {
            experiment_id: String,
        }
        let r: Resp = self
            .call(
                Method::POST,
                "experiments/create",
                &[],
                Some(json!({ "name": name })),
            )
            .await?;
        Ok(r.experiment_id)
    }

    pub async fn restore_experiment(&self, experiment_id: &str) -> Result<(), Error> {
        let _: Value = self
            .call(
                Method::POST,
                "experiments/restore",
                &[],
                Some(json!({ "experiment_id": experiment_id })),
            )
            .await?;
        Ok(())
    }

    /// Finds the experiment or creates it; a concurrent creator winning the race
    /// (`RESOURCE_ALREADY_EXISTS`) is fine. A deleted experiment of that name is restored,
    /// since MLflow will not create a second one with the same name. The flag says whether
    /// this call created it.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<(Experiment, bool), Error> {
        match self.get_experiment_by_name(name).await {
            Ok(e) if e.lifecycle_stage == "deleted" => {
                self.restore_experiment(&e.experiment_id).await?;
                Ok((self.get_experiment_by_name(name).await?, false))
            }
            Ok(e) => Ok((e, false)),
            Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => {
                match self.create_experiment(name).await {
                    Ok(_) => Ok((self.get_experiment_by_name(name).await?, true)),
                    Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                        Ok((self.get_experiment_by_name(name).await?, false))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<Run, Error> {
        #[derive(Deserialize)]
        struct Resp {
            run: Run,
        }
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time,
            "tags": tags,
        });
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        let r: Resp = self
            .call(Method::POST, "runs/create", &[], Some(body))
            .await?;
        Ok(r.run)
    }

    /// One `runs/log-batch`: the server stores all of it or none.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Metric],
        tags: &[KeyValue],
    ) -> Result<(), Error> {
        let _: Value = self
            .call(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(
                    json!({ "run_id": run_id, "params": params, "metrics": metrics, "tags": tags }),
                ),
            )
            .await?;
        Ok(())
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run, Error> {
        #[derive(Deserialize)]
        struct Resp {
            run: Run,
        }
        let r: Resp = self
            .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
            .await?;
        Ok(r.run)
    }

    /// Sets the run's status; `end_time` (ms) marks it terminated.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: Option<i64>,
    ) -> Result<Value, Error> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.call(Method::POST, "runs/update", &[], Some(body))
            .await
    }

    /// Every point of one metric, following pages. `max_results` is always sent: MLflow
    /// 3.5 reads a missing one as 0 and answers an empty page with a token it then rejects.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, Error> {
        const PAGE: &str = "1000";
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            metrics: Vec<Metric>,
            next_page_token: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", PAGE),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let r: Resp = self
                .call(Method::GET, "metrics/get-history", &query, None)
                .await?;
            let empty = r.metrics.is_empty();
            all.extend(r.metrics);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                // A token after an empty page would loop forever.
                Some(_) if empty => {
                    return Err(Error::Protocol {
                        url: display_url(&self.url("/api/2.0/mlflow/metrics/get-history", &[])),
                        cause: "an empty page of metric history with a next_page_token".into(),
                    })
                }
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// One page of `runs/search` (up to `max_results`).
    pub async fn search_runs(
        &self,
        experiment_ids: &[&str],
        filter: &str,
        max_results: u32,
        order_by: &[String],
    ) -> Result<Vec<Run>, Error> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            runs: Vec<Run>,
        }
        let r: Resp = self
            .call(
                Method::POST,
                "runs/search",
                &[],
                Some(json!({
                    "experiment_ids": experiment_ids,
                    "filter": filter,
                    "max_results": max_results,
                    "order_by": order_by,
                })),
            )
            .await?;
        Ok(r.runs)
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

enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

/// URLs in messages without the query string's noise: the path is what names the call.
fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// `{error_code, message}` from an error body; otherwise a short snippet of whatever the
/// server (or a proxy in front of it) sent.
fn api_error(body: &[u8]) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct ApiError {
        error_code: Option<String>,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if e.error_code.is_some() || !e.message.is_empty() => (e.error_code, e.message),
        _ => (None, html_title(body).unwrap_or_else(|| snippet(body))),
    }
}

/// An unhandled exception in the server (e.g. the artifact store failing) gives Flask's
/// HTML error page; its title says what happened, the server's log says why.
fn html_title(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = text[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Some(format!(
        "{title} (an HTML error page: the server's log has the cause)"
    ))
}

fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
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

    #[test]
    fn builds_api_urls_under_a_prefix() {
        let c = Client::new("https://ml.example/mlflow", None).unwrap();
        let url = c.url("/api/2.0/mlflow/runs/get", &[("run_id", "a&b")]);
        assert_eq!(
            url.as_str(),
            "https://ml.example/mlflow/api/2.0/mlflow/runs/get?run_id=a%26b"
        );
    }

    #[rstest]
    #[case(
        br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"}"#.as_slice(),
        Some("RESOURCE_DOES_NOT_EXIST"),
        "Run 'x' not found"
    )]
    #[case(b"<html>\n<h1>Internal   Server Error</h1></html>".as_slice(), None, "<html> <h1>Internal Server Error</h1></html>")]
    #[case(
        b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>".as_slice(),
        None,
        "500 Internal Server Error (an HTML error page: the server's log has the cause)"
    )]
    #[case(b"".as_slice(), None, "")]
    fn reads_api_errors(#[case] body: &[u8], #[case] code: Option<&str>, #[case] message: &str) {
        assert_eq!(
            api_error(body),
            (code.map(str::to_string), message.to_string())
        );
    }

    #[test]
    fn api_errors_show_code_and_message() {
        let e = Error::Api {
            method: "GET".into(),
            url: "http://h/api/2.0/mlflow/runs/get".into(),
            status: 404,
            error_code: Some("RESOURCE_DOES_NOT_EXIST".into()),
            message: "Run 'x' not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "GET http://h/api/2.0/mlflow/runs/get: HTTP 404 RESOURCE_DOES_NOT_EXIST: Run 'x' not found"
        );
    }

    #[test]
    fn reads_metrics_with_special_values() {
        let m: Vec<Metric> = serde_json::from_value(json!([
            {"key": "a", "value": 0.5, "timestamp": 1, "step": 2},
            {"key": "b", "value": "NaN", "timestamp": 1},
            {"key": "c", "value": "-Infinity", "timestamp": 1, "step": 0},
        ]))
        .unwrap();
        assert_eq!(m[0].value, 0.5);
        assert!(m[1].value.is_nan());
        assert_eq!(m[2].value, f64::NEG_INFINITY);
    }
}
