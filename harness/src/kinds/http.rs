//! HTTP checks (health endpoints, REST APIs) with reqwest.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Action, KindInfo, StepContext, StepError};
use crate::clients::error_chain;
use futures::future::BoxFuture;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAction {
    Get(RequestSpec),
    Post(RequestSpec),
    Put(RequestSpec),
    Delete(RequestSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Path on the service, with `${var}`s.
    pub path: String,
    /// Name of the service's port (default `http`).
    #[serde(default = "default_port")]
    pub port: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent with content-type application/json).
    #[schemars(with = "Option<serde_json::Value>")]
    pub json: Option<toml::Value>,
    /// A text body.
    pub body: Option<String>,
}

fn default_port() -> String {
    "http".into()
}

impl HttpAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Get(_) => "get",
            Self::Post(_) => "post",
            Self::Put(_) => "put",
            Self::Delete(_) => "delete",
        }
    }

    fn spec(&self) -> &RequestSpec {
        match self {
            Self::Get(s) | Self::Post(s) | Self::Put(s) | Self::Delete(s) => s,
        }
    }

    /// Output: `{status, headers, body}`, the body parsed as JSON when it is JSON.
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let spec = self.spec();
        let url = format!(
            "{}{}",
            cx.endpoint.base_url(&spec.port)?,
            cx.render(&spec.path)?
        );
        let method = match self {
            Self::Get(_) => reqwest::Method::GET,
            Self::Post(_) => reqwest::Method::POST,
            Self::Put(_) => reqwest::Method::PUT,
            Self::Delete(_) => reqwest::Method::DELETE,
        };
        let mut req = client().request(method, &url);
        for (k, v) in &spec.headers {
            req = req.header(k, cx.render(v)?);
        }
        if let Some(body) = &spec.json {
            let text = cx.render(
                &serde_json::to_string(body).map_err(|e| StepError::Error(e.to_string()))?,
            )?;
            req = req.header("content-type", "application/json").body(text);
        } else if let Some(body) = &spec.body {
            req = req.body(cx.render(body)?);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| StepError::Error(format!("{url}: {}", error_chain(&e))))?;
        response_json(resp).await
    }
}

impl KindInfo for HttpAction {
    const NAMESPACE: &'static str = "http";
    const DEFAULT_SERVICE: Option<&'static str> = None;
}

impl Action for HttpAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }

    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

async fn response_json(resp: reqwest::Response) -> Result<Value, StepError> {
    let status = resp.status().as_u16();
    let headers: serde_json::Map<String, Value> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    let text = resp
        .text()
        .await
        .map_err(|e| StepError::Error(format!("reading the body: {}", error_chain(&e))))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(json!({"status": status, "headers": headers, "body": body}))
}
