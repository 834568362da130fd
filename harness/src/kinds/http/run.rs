//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::clients::error_chain;
use futures::future::BoxFuture;

impl HttpAction {
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

impl Run for HttpAction {
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
