//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};
use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::BoxFuture;

use serde_json::{json, Value};

use crate::kinds::http::client;

use crate::clients::error_chain;

const CATEGORIES: [&str; 3] = ["books", "games", "tools"];

impl Run for OpensearchAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

impl OpensearchAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let es = Rest::new(cx)?;
        match self {
            Self::Health(_) => {
                es.call(reqwest::Method::GET, "/_cluster/health", None)
                    .await
            }
            Self::Count(c) => {
                let path = format!("/{}/_count", cx.render(&c.index)?);
                let body = c.query.as_ref().map(|q| Body::Json(json!({ "query": q })));
                let found = es.call(reqwest::Method::POST, &path, body).await?;
                Ok(json!({ "count": found["count"] }))
            }
            Self::Roundtrip(r) => {
                let index = format!("harness-{}", crate::kinds::unique_id(10));
                let result = roundtrip(&es, &index, r.documents).await;
                // Deleted whatever happened; a missing index (creation failed) is fine.
                let _ = es
                    .call(reqwest::Method::DELETE, &format!("/{index}"), None)
                    .await;
                result
            }
        }
    }
}

/// The cluster's REST API: base URL from port `http`, basic auth when the endpoint has
/// `user` and `password` (secured clusters).
struct Rest {
    /// One client for the step's calls (a roundtrip makes seven).
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Rest {
    fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        let ep = cx.endpoint;
        let auth = match (ep.param("user"), ep.param("password")) {
            (Ok(u), Ok(p)) => Some((u.to_string(), p.to_string())),
            _ => None,
        };
        Ok(Self {
            http: client(),
            base: ep.base_url("http")?,
            auth,
        })
    }

    /// JSON in, JSON out; an error status is a failure with the cluster's own
    /// `error.type: error.reason`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, StepError> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::NdJson(text)) => req
                .header("content-type", "application/x-ndjson")
                .body(text),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| StepError::Error(format!("{method} {path}: {}", error_chain(&e))))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let reason = match &value["error"] {
                Value::Object(e) => format!(
                    "{}: {}",
                    e.get("type").and_then(Value::as_str).unwrap_or("error"),
                    e.get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("(no reason)")
                ),
                other => crate::kinds::show(other),
            };
            return Err(StepError::Failure(format!(
                "{method} {path}: HTTP {status}: {reason}"
            )));
        }
        Ok(value)
    }
}

enum Body {
    Json(Value),
    NdJson(String),
}

fn document(i: usize) -> Value {
    json!({ "seq": i, "category": CATEGORIES[i % CATEGORIES.len()], "amount": (i * 7) % 100 })
}

async fn roundtrip(es: &Rest, index: &str, n: usize) -> Result<Value, StepError> {
    use reqwest::Method;
    let mapping = json!({
        "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
        "mappings": { "properties": {
            "seq": { "type": "long" },
            "category": { "type": "keyword" },
            "amount": { "type": "long" },
        }},
    });
    es.call(Method::PUT, &format!("/{index}"), Some(Body::Json(mapping)))
        .await?;

    let mut bulk = String::new();
    for i in 0..n {
        bulk.push_str(&json!({ "index": { "_index": index, "_id": i.to_string() } }).to_string());
        bulk.push('\n');
        bulk.push_str(&document(i).to_string());
        bulk.push('\n');
    }
    let started = Instant::now();
    let sent = es
        .call(Method::POST, "/_bulk", Some(Body::NdJson(bulk)))
        .await?;
    let bulk_ms = started.elapsed().as_secs_f64() * 1e3;
    if sent["errors"] == true {
        let first = sent["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|i| i["index"]["error"]["reason"].as_str())
            .unwrap_or("(no reason)");
        return Err(StepError::Failure(format!(
            "bulk into {index}: some documents were refused: {first}"
        )));
    }
    es.call(Method::POST, &format!("/{index}/_refresh"), None)
        .await?;

    let count = es
        .call(Method::GET, &format!("/{index}/_count"), None)
        .await?["count"]
        .as_u64();
    if count != Some(n as u64) {
        return Err(StepError::Failure(format!(
            "{index}: counted {count:?} documents, sent {n}"
        )));
    }

    let mut expected: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for i in 0..n {
        let d = document(i);
        let e = expected
            .entry(CATEGORIES[i % CATEGORIES.len()])
            .or_default();
        e.0 += 1;
        e.1 += d["amount"].as_u64().unwrap_or_default();
    }
    let search = json!({
        "size": 0,
        "track_total_hits": true,
        "query": { "term": { "category": "games" } },
    });
    let hits = es
        .call(
            Method::POST,
            &format!("/{index}/_search"),
            Some(Body::Json(search)),
        )
        .await?;
    let games = hits["hits"]["total"]["value"].as_u64();
    let want_games = expected.get("games").map_or(0, |e| e.0);
    if games != Some(want_games) {
        return Err(StepError::Failure(format!(
            "{index}: term search category=games found {games:?} documents, sent {want_games}"
        )));
    }

    let aggs = json!({
        "size": 0,
        "aggs": { "by_category": {
            "terms": { "field": "category", "size": 10 },
            "aggs": { "amount": { "sum": { "field": "amount" } } },
        }},
    });
    let found = es
        .call(
            Method::POST,
            &format!("/{index}/_search"),
            Some(Body::Json(aggs)),
        )
        .await?;
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for b in found["aggregations"]["by_category"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
    {
        got.insert(
            b["key"].as_str().unwrap_or_default().to_string(),
            (
                b["doc_count"].as_u64().unwrap_or_default(),
                b["amount"]["value"].as_f64().unwrap_or_default() as u64,
            ),
        );
    }
    let want: BTreeMap<String, (u64, u64)> =
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    if got != want {
        return Err(StepError::Failure(format!(
            "{index}: per-category (count, sum of amount) was {got:?}, sent {want:?}"
        )));
    }
    Ok(json!({
        "index": index,
        "documents": n,
        "bulk_ms": (bulk_ms * 1e3).round() / 1e3,
        "games": want_games,
        "by_category": got.iter().map(|(k, (c, s))| (k.clone(), json!({ "count": c, "amount": s }))).collect::<serde_json::Map<_, _>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_spread_over_every_category() {
        let cats: std::collections::BTreeSet<String> = (0..6)
            .map(|i| document(i)["category"].to_string())
            .collect();
        assert_eq!(cats.len(), CATEGORIES.len());
    }

    #[rstest::rstest]
    #[case("opensearch.health = {}", "health")]
    #[case("opensearch.roundtrip = { documents = 10 }", "roundtrip")]
    fn parses_its_verbs(#[case] src: &str, #[case] verb: &str) {
        let t: toml::Table = toml::from_str(src).unwrap();
        let a: OpensearchAction = t["opensearch"].clone().try_into().unwrap();
        assert_eq!(a.verb(), verb);
    }
}
