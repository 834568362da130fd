//! Connect's REST API: JSON in, JSON out, its `{error_code, message}` in every failure.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::clients::error_chain;
use crate::kinds::{Endpoint, StepError};

/// How long a worker may answer 409 ("rebalance in progress") before a write gives up.
const REBALANCE_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

pub(super) struct Rest {
    http: reqwest::Client,
    base: String,
}

/// A REST answer that was not a success.
struct Refused {
    status: StatusCode,
    message: String,
}

impl Rest {
    pub(super) fn new(ep: &Endpoint) -> Result<Self, StepError> {
        Ok(Self {
            http: crate::kinds::http::client(),
            base: ep.base_url("http")?,
        })
    }

    /// An error status is a failure with the worker's own message.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, StepError> {
        match self.send(method.clone(), path, body).await? {
            Ok(v) => Ok(v),
            Err(r) => Err(StepError::Failure(format!(
                "kafka-connect at {}: {method} {path}: HTTP {}: {}",
                self.base, r.status, r.message
            ))),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Result<Value, Refused>, StepError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            StepError::Error(format!(
                "kafka-connect at {}: {method} {path}: {}",
                self.base,
                error_chain(&e)
            ))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Ok(value));
        }
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| crate::kinds::show(&value));
        Ok(Err(Refused { status, message }))
    }

    /// Creates or reconfigures `name`; retried while the worker's group rebalances (409).
    pub(super) async fn put_config(
        &self,
        name: &str,
        config: &Map<String, Value>,
    ) -> Result<Value, StepError> {
        let path = format!("/connectors/{name}/config");
        let started = Instant::now();
        loop {
            match self
                .send(Method::PUT, &path, Some(Value::Object(config.clone())))
                .await?
            {
                Ok(v) => return Ok(v),
                Err(r)
                    if r.status == StatusCode::CONFLICT && started.elapsed() < REBALANCE_WAIT =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(r) => {
                    return Err(StepError::Failure(format!(
                        "kafka-connect at {}: creating connector `{name}`: HTTP {}: {}",
                        self.base, r.status, r.message
                    )))
                }
            }
        }
    }

    /// Deletes `name`: `true` if it existed.
    pub(super) async fn delete(&self, name: &str) -> Result<bool, StepError> {
        let path = format!("/connectors/{name}");
        let started = Instant::now();
        loop {
            match self.send(Method::DELETE, &path, None).await? {
                Ok(_) => return Ok(true),
                Err(r) if r.status == StatusCode::NOT_FOUND => return Ok(false),
                Err(r)
                    if r.status == StatusCode::CONFLICT && started.elapsed() < REBALANCE_WAIT =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(r) => {
                    return Err(StepError::Failure(format!(
                        "kafka-connect at {}: deleting connector `{name}`: HTTP {}: {}",
                        self.base, r.status, r.message
                    )))
                }
            }
        }
    }

    /// Polls `GET /connectors/NAME/status` until the connector and every task (at least
    /// one) run; a FAILED one ends the wait at once with the worker's trace.
    pub(super) async fn wait_running(
        &self,
        name: &str,
        within: Duration,
    ) -> Result<Value, StepError> {
        let path = format!("/connectors/{name}/status");
        let started = Instant::now();
        loop {
            let last = match self.send(Method::GET, &path, None).await? {
                Ok(status) => {
                    if let Some(failed) = failure(&status) {
                        return Err(StepError::Failure(format!(
                            "kafka-connect at {}: connector `{name}`: {failed}",
                            self.base
                        )));
                    }
                    let states = states(&status);
                    if states.iter().all(|(_, s)| s == "RUNNING") && states.len() > 1 {
                        return Ok(json!({
                            "name": name,
                            "state": "RUNNING",
                            "tasks": states.len() - 1,
                            "worker_id": status["connector"]["worker_id"],
                            "seconds": (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
                        }));
                    }
                    describe_states(&states)
                }
                // Not there (yet, or at all): said in the timeout message.
                Err(r) => format!("HTTP {}: {}", r.status, r.message),
            };
            if started.elapsed() >= within {
                return Err(StepError::Failure(format!(
                    "kafka-connect at {}: connector `{name}` not RUNNING within {} s ({last})",
                    self.base,
                    within.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `[(who, state)]`: the connector first, then each task.
fn states(status: &Value) -> Vec<(String, String)> {
    let mut out = vec![(
        "connector".to_string(),
        status["connector"]["state"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
    )];
    for t in status["tasks"].as_array().into_iter().flatten() {
        out.push((
            format!("task {}", t["id"]),
            t["state"].as_str().unwrap_or("?").to_string(),
        ));
    }
    out
}

fn describe_states(states: &[(String, String)]) -> String {
    let mut parts: Vec<String> = states.iter().map(|(w, s)| format!("{w} {s}")).collect();
    if states.len() == 1 {
        parts.push("no tasks".into());
    }
    parts.join(", ")
}

/// The first FAILED part (connector, then tasks) as "task 0 FAILED: <trace summary>".
fn failure(status: &Value) -> Option<String> {
    let connector = std::iter::once(("connector".to_string(), &status["connector"]));
    let tasks = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (format!("task {}", t["id"]), t));
    connector.chain(tasks).find_map(|(who, s)| {
        (s["state"] == "FAILED").then(|| {
            format!(
                "{who} FAILED on {}: {}",
                s["worker_id"].as_str().unwrap_or("?"),
                trace_summary(s["trace"].as_str().unwrap_or("(no trace)"))
            )
        })
    })
}

/// A Java stack trace cut to what says why: its first line and every `Caused by:` line.
pub(super) fn trace_summary(trace: &str) -> String {
    let mut lines = trace.lines();
    let mut out: Vec<&str> = lines.next().into_iter().map(str::trim).collect();
    out.extend(lines.map(str::trim).filter(|l| l.starts_with("Caused by:")));
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "org.apache.kafka.connect.errors.ConnectException: Error while starting\n\tat io.debezium.X.start(X.java:1)\nCaused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"platform\"\n\tat org.postgresql.Y(Y.java:2)\n";

    #[test]
    fn a_trace_keeps_its_first_line_and_causes() {
        assert_eq!(
            trace_summary(TRACE),
            "org.apache.kafka.connect.errors.ConnectException: Error while starting; Caused by: org.postgresql.util.PSQLException: FATAL: password authentication failed for user \"platform\""
        );
    }

    #[test]
    fn a_failed_task_is_named_with_its_trace() {
        let status = json!({
            "connector": {"state": "RUNNING", "worker_id": "w:8083"},
            "tasks": [{"id": 0, "state": "FAILED", "worker_id": "w:8083", "trace": TRACE}],
        });
        let f = failure(&status).unwrap();
        assert!(f.starts_with("task 0 FAILED on w:8083: "), "{f}");
        assert!(f.contains("password authentication failed"), "{f}");
    }

    #[rstest::rstest]
    #[case(json!({"connector": {"state": "RUNNING"}, "tasks": []}), "connector RUNNING, no tasks")]
    #[case(json!({"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "UNASSIGNED"}]}), "connector RUNNING, task 0 UNASSIGNED")]
    fn waiting_states_are_described(#[case] status: Value, #[case] text: &str) {
        assert!(failure(&status).is_none());
        assert_eq!(describe_states(&states(&status)), text);
    }
}
