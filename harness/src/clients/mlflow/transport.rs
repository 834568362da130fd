//! The client's HTTP side: base URL, timeouts and basic auth, one request with its
//! error mapped, and JSON calls under `/api/2.0/mlflow/`.

use std::time::Duration;

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{api_error, snippet, Error};

#[derive(Debug, Clone)]
pub struct Client {
    pub(super) base: Url,
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
                cause: crate::clients::error_chain(&e),
            })?;
        Ok(Self {
            base,
            http,
            basic_auth,
        })
    }

    /// `base` joined with `path` (already escaped), plus query parameters.
    pub(super) fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Body,
    ) -> Result<Vec<u8>, Error> {
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
            cause: crate::clients::error_chain(&e.without_url()),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Transport {
            url: shown.clone(),
            cause: format!(
                "reading the answer: {}",
                crate::clients::error_chain(&e.without_url())
            ),
        })?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let (error_code, message) = api_error(status.as_u16(), &bytes);
        Err(Error::Api {
            method: method.to_string(),
            url: shown,
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    pub(super) async fn call<T: DeserializeOwned>(
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
}

pub(super) enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

/// URLs in messages without the query string's noise: the path is what names the call.
pub(super) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_api_urls_under_a_prefix() {
        let c = Client::new("https://ml.example/mlflow", None).unwrap();
        let url = c.url("/api/2.0/mlflow/runs/get", &[("run_id", "a&b")]);
        assert_eq!(
            url.as_str(),
            "https://ml.example/mlflow/api/2.0/mlflow/runs/get?run_id=a%26b"
        );
    }
}
