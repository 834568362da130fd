//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};

use futures::future::BoxFuture;

use serde_json::{json, Value};

use crate::kinds::http::client;

use crate::clients::error_chain;

impl Run for PrometheusAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

impl PrometheusAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        match self {
            Self::Targets(t) => {
                let data = api(cx, "/api/v1/targets", &[("state", "active".into())]).await?;
                targets(&data, t.all_up)
            }
            Self::Query(q) => {
                let query = cx.render(&q.query)?;
                let data = match q.range {
                    None => api(cx, "/api/v1/query", &[("query", query)]).await?,
                    Some(range) => {
                        let end = now_s();
                        let params = [
                            ("query", query),
                            ("start", format!("{:.3}", end - range.as_secs_f64())),
                            ("end", format!("{end:.3}")),
                            ("step", format!("{}", q.step.as_secs_f64())),
                        ];
                        api(cx, "/api/v1/query_range", &params).await?
                    }
                };
                Ok(samples(data))
            }
            Self::Rules(_) => api(cx, "/api/v1/rules", &[]).await,
            Self::Alerts(_) => api(cx, "/api/v1/alerts", &[]).await,
        }
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// GET an API path; the `data` of a success, Prometheus's own `errorType: error` otherwise.
async fn api(
    cx: &StepContext<'_>,
    path: &str,
    params: &[(&str, String)],
) -> Result<Value, StepError> {
    let url = format!("{}{path}", cx.endpoint.base_url("http")?);
    let resp = client()
        .get(&url)
        .query(params)
        .send()
        .await
        .map_err(|e| StepError::Error(format!("GET {url}: {}", error_chain(&e))))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| {
        StepError::Error(format!(
            "GET {url}: HTTP {status}, not JSON: {}",
            error_chain(&e)
        ))
    })?;
    if body["status"] != "success" {
        return Err(StepError::Failure(format!(
            "GET {path}: HTTP {status}, {}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("(no message)")
        )));
    }
    Ok(body["data"].clone())
}

fn targets(data: &Value, all_up: bool) -> Result<Value, StepError> {
    let list: Vec<Value> = data["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            json!({
                "job": t["labels"]["job"],
                "instance": t["labels"]["instance"],
                "health": t["health"],
                "last_error": t["lastError"],
                "scrape_url": t["scrapeUrl"],
            })
        })
        .collect();
    let down: Vec<&Value> = list.iter().filter(|t| t["health"] != "up").collect();
    if all_up && (list.is_empty() || !down.is_empty()) {
        let why = if list.is_empty() {
            "no active targets".to_string()
        } else {
            down.iter()
                .map(|t| {
                    format!(
                        "{} {} is {} ({})",
                        t["job"].as_str().unwrap_or("?"),
                        t["instance"].as_str().unwrap_or("?"),
                        t["health"].as_str().unwrap_or("?"),
                        t["last_error"]
                            .as_str()
                            .filter(|e| !e.is_empty())
                            .unwrap_or("no error yet")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(StepError::Failure(format!("not every target is up: {why}")));
    }
    Ok(json!({
        "total": list.len(),
        "up": list.len() - down.len(),
        "down": down.len(),
        "targets": list,
    }))
}

/// Prometheus writes sample values as strings ("1"); expectations want numbers.
fn samples(mut data: Value) -> Value {
    let number = |v: &mut Value| {
        if let Some(pair) = v.as_array_mut() {
            if let Some(n) = pair
                .get(1)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok())
            {
                pair[1] = json!(n);
            }
        }
    };
    if let Some(result) = data["result"].as_array_mut() {
        for series in result {
            number(&mut series["value"]);
            if let Some(values) = series["values"].as_array_mut() {
                values.iter_mut().for_each(number);
            }
        }
    }
    json!({ "result_type": data["resultType"], "result": data["result"] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(job: &str, health: &str, error: &str) -> Value {
        json!({ "labels": { "job": job, "instance": format!("{job}:1") }, "health": health, "lastError": error, "scrapeUrl": "http://x" })
    }

    #[test]
    fn all_up_names_each_target_down_with_its_error() {
        let data = json!({ "activeTargets": [
            target("postgres", "up", ""),
            target("redis", "down", "connection refused"),
        ]});
        let ok = targets(&data, false).unwrap();
        assert_eq!((ok["up"].clone(), ok["down"].clone()), (json!(1), json!(1)));
        let err = targets(&data, true).unwrap_err();
        assert_eq!(
            err.message(),
            "not every target is up: redis redis:1 is down (connection refused)"
        );
        assert!(targets(&json!({ "activeTargets": [] }), true).is_err());
    }

    #[test]
    fn sample_values_become_numbers() {
        let data = json!({ "resultType": "vector", "result": [
            { "metric": { "job": "a" }, "value": [1.5, "1"] },
        ]});
        assert_eq!(samples(data)["result"][0]["value"][1], json!(1.0));
        let range = json!({ "resultType": "matrix", "result": [
            { "metric": {}, "values": [[1, "2.5"], [2, "3"]] },
        ]});
        assert_eq!(samples(range)["result"][0]["values"][1][1], json!(3.0));
    }
}
