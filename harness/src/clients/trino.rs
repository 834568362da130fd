//! A small client for Trino's HTTP client protocol (POST /v1/statement, then follow
//! `nextUri`), on reqwest.
//!
//! Why not a crate: no well-kept Rust client fits. `prusto` (few, irregular releases) and
//! its 2024 fork `trino-rust-client` decode rows into structs derived at compile time and
//! bring bigdecimal, chrono-tz and proc-macros along; checks want the opposite: rows as the
//! JSON Trino sends (decimals as text), whatever the query, plus the raw error fields. The
//! protocol is a loop over JSON pages, so the lines here are easier to keep right than a
//! dependency.
//!
//! What it does: submits one statement, follows `nextUri` until it is absent, collects
//! `columns` and `data`, surfaces `error` with its name; keeps the session headers the
//! server sets (X-Trino-Set-Session/Clear-Session, Set-Catalog/Schema) for the client's next
//! statements; reruns a statement refused because the server is still starting; cancels the
//! query (DELETE nextUri) when its deadline passes or its future is dropped. Not covered:
//! transactions (X-Trino-Started-Transaction-Id), prepared statements, spooled results.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::clients::error_chain;

/// Error names that mean "the server is up but not serving yet": right after start a
/// single-node Trino may answer these for a few seconds (its node registers itself after
/// /v1/info says it has started), at submission or when the query is scheduled.
const STARTING: &[&str] = &["SERVER_STARTING_UP", "NO_NODES_AVAILABLE"];
/// Tries of a statement while the server is starting, one second apart.
const START_ATTEMPTS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Trino's type as text: `bigint`, `varchar(25)`, `decimal(12, 2)`.
    pub r#type: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub query_id: String,
    pub columns: Vec<Column>,
    /// Values as Trino's JSON gives them (decimals and dates are strings).
    pub rows: Vec<Vec<Value>>,
    /// `CREATE TABLE`, `INSERT`, ... for statements that are not queries.
    pub update_type: Option<String>,
    pub update_count: Option<u64>,
}

/// The protocol's `error` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryError {
    pub message: String,
    #[serde(default)]
    pub error_name: String,
    #[serde(default)]
    pub error_type: String,
    pub sql_state: Option<String>,
    /// The server's Java exception with its causes; absent from older servers and proxies.
    #[serde(default)]
    pub failure_info: Option<FailureInfo>,
}

/// Trino's `ExecutionFailureInfo`: a Java exception, its cause and suppressed exceptions.
/// Only what a message needs (the stack traces stay on the server).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FailureInfo {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub message: Option<String>,
    pub cause: Option<Box<FailureInfo>>,
    #[serde(default)]
    pub suppressed: Vec<FailureInfo>,
}

impl QueryError {
    /// Every cause below the top exception, deepest last: `caused by T: m` for each
    /// cause, `suppressed T: m` for each suppressed exception, at the level it was
    /// attached. Empty when Trino gave no `failureInfo` or no cause.
    pub fn causes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(top) = &self.failure_info else {
            return out;
        };
        let mut level = Some(top);
        // Bounded: a malformed (or hostile) document cannot make a message unbounded.
        const MAX_LEVELS: usize = 20;
        for depth in 0..MAX_LEVELS {
            let Some(f) = level else { break };
            if depth > 0 {
                out.push(format!("caused by {}", f.describe()));
            }
            for s in f.suppressed.iter().take(MAX_LEVELS) {
                out.push(format!("suppressed {}", s.describe()));
            }
            level = f.cause.as_deref();
        }
        out
    }

    /// `NAME (TYPE): message; caused by ...; caused by ...`.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} ({}): {}",
            self.error_name, self.error_type, self.message
        );
        for c in self.causes() {
            out.push_str("; ");
            out.push_str(&c);
        }
        out
    }
}

impl FailureInfo {
    /// `java.lang.ArithmeticException: / by zero`; the type alone when there is no message.
    fn describe(&self) -> String {
        let kind = if self.kind.is_empty() {
            "(no type)"
        } else {
            &self.kind
        };
        // Java messages may span lines (Jackson's add ` at [Source: ...]`): one line here.
        let message = self
            .message
            .as_deref()
            .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
        match message.filter(|m| !m.is_empty()) {
            Some(m) => format!("{kind}: {}", crate::mask::clip(&m, 300)),
            None => kind.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No HTTP answer: connection refused, DNS, TLS, a reset.
    #[error("{method} {url}: {cause}")]
    Transport {
        method: Method,
        url: String,
        cause: String,
    },
    /// An HTTP status the protocol does not expect (401, 404, 500, ...).
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    /// The query ran and failed; Trino's own error. `update_type` is set for statements
    /// that write (`INSERT`, `CREATE TABLE`, ...), even when they failed.
    #[error("query {query_id} failed with {}", .error.describe())]
    Query {
        query_id: String,
        error: Box<QueryError>,
        update_type: Option<String>,
    },
    /// The deadline passed; `cancel` says whether the DELETE went through.
    #[error("query {} did not finish within {}; {cancel}",
        .query_id.as_deref().unwrap_or("(not yet accepted)"), humantime::format_duration(*.within))]
    Deadline {
        query_id: Option<String>,
        within: Duration,
        cancel: String,
    },
    /// An answer that is not the protocol's JSON.
    #[error("{url}: unexpected answer: {detail}")]
    Protocol { url: String, detail: String },
}

/// One page of the protocol (`QueryResults`); only the fields this client reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    id: String,
    next_uri: Option<String>,
    columns: Option<Vec<PageColumn>>,
    data: Option<Vec<Vec<Value>>>,
    error: Option<QueryError>,
    update_type: Option<String>,
    update_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct PageColumn {
    name: String,
    r#type: String,
}

/// A client session: user, default catalog and schema, and the session properties the
/// server set on earlier statements.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    user: String,
    password: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    /// Session properties as the server sent them (values still URL-encoded), echoed back.
    pub session: BTreeMap<String, String>,
    /// How often a statement is sent while the server says it is still starting.
    start_attempts: usize,
}

impl Client {
    pub fn new(base_url: &str, user: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent("platform-harness")
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            user: user.to_string(),
            password: None,
            catalog: None,
            schema: None,
            session: BTreeMap::new(),
            start_attempts: START_ATTEMPTS,
        }
    }

    /// One attempt while the server is starting: its refusal is the answer (for a
    /// readiness probe, whose loop asks again).
    pub fn without_start_reruns(mut self) -> Self {
        self.start_attempts = 1;
        self
    }

    /// Basic authentication (Trino accepts passwords over HTTPS only).
    pub fn with_password(mut self, password: Option<&str>) -> Self {
        self.password = password.map(str::to_string);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs one statement to completion, or cancels it once `within` has passed. A query
    /// that fails because the server is still starting (no node to schedule on yet) is run
    /// again; a statement that writes is not: it may have done part of its work (the memory
    /// connector creates a CTAS's table before scheduling fails).
    pub async fn run(&mut self, sql: &str, within: Duration) -> Result<QueryResult, Error> {
        let deadline = Instant::now() + within;
        let mut guard = CancelOnDrop {
            http: self.http.clone(),
            next_uri: None,
        };
        let mut query_id = None;
        let attempts = async {
            let mut attempt = 1;
            loop {
                match self.follow(sql, &mut guard, &mut query_id).await {
                    Err(e) if rerun_when_starting(&e) && attempt < self.start_attempts => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(result) => result,
            Err(_) => {
                let cancel = match guard.next_uri.take() {
                    Some(uri) => match cancel(&self.http, &uri).await {
                        Ok(()) => "cancelled it (DELETE nextUri)".to_string(),
                        Err(e) => format!("cancelling it failed: {e}"),
                    },
                    None => "nothing to cancel".to_string(),
                };
                Err(Error::Deadline {
                    query_id,
                    within,
                    cancel,
                })
            }
        }
    }

    async fn follow(
        &mut self,
        sql: &str,
        guard: &mut CancelOnDrop,
        query_id: &mut Option<String>,
    ) -> Result<QueryResult, Error> {
        let mut page = self.submit(sql).await?;
        *query_id = Some(page.id.clone());
        let mut result = QueryResult {
            query_id: page.id.clone(),
            ..QueryResult::default()
        };
        loop {
            guard.next_uri.clone_from(&page.next_uri);
            if let Some(error) = page.error.take() {
                return Err(Error::Query {
                    query_id: result.query_id,
                    error: Box::new(error),
                    update_type: page.update_type,
                });
            }
            absorb(&mut result, &mut page);
            let Some(next) = page.next_uri.take() else {
                return Ok(result);
            };
            page = self.get(&next).await?;
        }
    }

    /// POST /v1/statement; a 503 (the server is not accepting queries yet) is retried.
    async fn submit(&mut self, sql: &str) -> Result<Page, Error> {
        let url = format!("{}/v1/statement", self.base_url);
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .post(&url)
                .header("X-Trino-User", &self.user)
                .header("X-Trino-Source", "platform-harness")
                .body(sql.to_string());
            if let Some(c) = &self.catalog {
                req = req.header("X-Trino-Catalog", c);
            }
            if let Some(s) = &self.schema {
                req = req.header("X-Trino-Schema", s);
            }
            if let Some(h) = session_header(&self.session) {
                req = req.header("X-Trino-Session", h);
            }
            if let Some(pw) = &self.password {
                req = req.basic_auth(&self.user, Some(pw));
            }
            let resp = req.send().await.map_err(|e| Error::Transport {
                method: Method::POST,
                url: url.clone(),
                cause: error_chain(&e),
            })?;
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE && attempt < self.start_attempts {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            self.update_session(resp.headers());
            return read_page(Method::POST, &url, resp).await;
        }
    }

    /// GET nextUri; 502/503/504 mean "try again" in this protocol.
    async fn get(&mut self, url: &str) -> Result<Page, Error> {
        loop {
            let resp = self
                .http
                .get(url)
                .header("X-Trino-User", &self.user)
                .send()
                .await
                .map_err(|e| Error::Transport {
                    method: Method::GET,
                    url: url.to_string(),
                    cause: error_chain(&e),
                })?;
            if matches!(resp.status().as_u16(), 502..=504) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.update_session(resp.headers());
            return read_page(Method::GET, url, resp).await;
        }
    }

    fn update_session(&mut self, headers: &HeaderMap) {
        apply_session_headers(
            headers,
            &mut self.session,
            &mut self.catalog,
            &mut self.schema,
        );
    }
}

/// A query (no `updateType`) refused because the server is still starting.
fn rerun_when_starting(e: &Error) -> bool {
    matches!(e, Error::Query { error, update_type: None, .. }
        if STARTING.contains(&error.error_name.as_str()))
}

/// Adds a page's columns (the first page that has them), rows and update count.
fn absorb(result: &mut QueryResult, page: &mut Page) {
    if result.columns.is_empty() {
        if let Some(cols) = page.columns.take() {
            result.columns = cols
                .into_iter()
                .map(|c| Column {
                    name: c.name,
                    r#type: c.r#type,
                })
                .collect();
        }
    }
    if let Some(data) = page.data.take() {
        result.rows.extend(data);
    }
    if page.update_type.is_some() {
        result.update_type = page.update_type.take();
    }
    if page.update_count.is_some() {
        result.update_count = page.update_count;
    }
}

async fn read_page(method: Method, url: &str, resp: reqwest::Response) -> Result<Page, Error> {
    let status = resp.status();
    let text = resp.text().await.map_err(|e| Error::Transport {
        method: method.clone(),
        url: url.to_string(),
        cause: error_chain(&e),
    })?;
    if !status.is_success() {
        return Err(Error::Status {
            method,
            url: url.to_string(),
            status,
            body: shorten(text.trim(), 500),
        });
    }
    serde_json::from_str(&text).map_err(|e| Error::Protocol {
        url: url.to_string(),
        detail: format!("{e}: {}", shorten(&text, 200)),
    })
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// `X-Trino-Session: a=1,b=2` from the properties the server set.
fn session_header(session: &BTreeMap<String, String>) -> Option<String> {
    (!session.is_empty()).then(|| {
        session
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// What `SET SESSION`, `RESET SESSION` and `USE` ask the client to remember.
fn apply_session_headers(
    headers: &HeaderMap,
    session: &mut BTreeMap<String, String>,
    catalog: &mut Option<String>,
    schema: &mut Option<String>,
) {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .collect::<Vec<_>>()
    };
    for set in values("X-Trino-Set-Session") {
        if let Some((k, v)) = set.split_once('=') {
            session.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    for clear in values("X-Trino-Clear-Session") {
        session.remove(&clear);
    }
    if let Some(c) = values("X-Trino-Set-Catalog").pop() {
        *catalog = Some(c);
    }
    if let Some(s) = values("X-Trino-Set-Schema").pop() {
        *schema = Some(s);
    }
}

async fn cancel(http: &reqwest::Client, uri: &str) -> Result<(), String> {
    let resp = http
        .delete(uri)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    // 204 when cancelled; 404/410 when the query is already gone, which is as good.
    match resp.status().as_u16() {
        200..=299 | 404 | 410 => Ok(()),
        s => Err(format!("DELETE answered HTTP {s}")),
    }
}

/// Cancels the query when the future running it is dropped mid-way (a check's timeout, a
/// step's retry deadline), so an abandoned query does not keep running on the server.
struct CancelOnDrop {
    http: reqwest::Client,
    next_uri: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let (Some(uri), Ok(rt)) = (self.next_uri.take(), tokio::runtime::Handle::try_current()) {
            let http = self.http.clone();
            rt.spawn(async move {
                let _ = cancel(&http, &uri).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use rstest::rstest;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn page(v: Value) -> Page {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn collects_columns_rows_and_update_counts_across_pages() {
        let mut result = QueryResult::default();
        let pages = [
            json!({"id": "q1", "nextUri": "http://x/1"}),
            json!({"id": "q1", "nextUri": "http://x/2",
                   "columns": [{"name": "n", "type": "bigint", "typeSignature": {}}],
                   "data": [[1]]}),
            json!({"id": "q1", "columns": [{"name": "n", "type": "bigint"}],
                   "data": [[2], [3]], "updateType": "INSERT", "updateCount": 3}),
        ];
        for p in pages {
            absorb(&mut result, &mut page(p));
        }
        assert_eq!(
            result.columns,
            vec![Column {
                name: "n".into(),
                r#type: "bigint".into()
            }]
        );
        assert_eq!(
            result.rows,
            vec![vec![json!(1)], vec![json!(2)], vec![json!(3)]]
        );
        assert_eq!(result.update_type.as_deref(), Some("INSERT"));
        assert_eq!(result.update_count, Some(3));
    }

    #[test]
    fn reads_the_protocol_error() {
        let p = page(json!({"id": "q2", "error": {
            "message": "line 1:15: Table 'tpch.tiny.nope' does not exist",
            "errorCode": 46, "errorName": "TABLE_NOT_FOUND", "errorType": "USER_ERROR",
            "sqlState": "42S02", "failureInfo": {}}}));
        let e = Error::Query {
            query_id: p.id,
            error: Box::new(p.error.unwrap()),
            update_type: p.update_type,
        };
        assert_eq!(
            e.to_string(),
            "query q2 failed with TABLE_NOT_FOUND (USER_ERROR): line 1:15: Table 'tpch.tiny.nope' does not exist"
        );
    }

    /// An error document as Trino 435 sends it for `SELECT json_parse('{')` (stacks cut),
    /// with a suppressed exception and a third level added to cover those branches.
    const CHAINED: &str = r#"{"id": "q3", "error": {
        "message": "Cannot convert value to JSON: '{'",
        "errorCode": 7, "errorName": "INVALID_FUNCTION_ARGUMENT", "errorType": "USER_ERROR",
        "failureInfo": {
            "type": "io.trino.spi.TrinoException",
            "message": "Cannot convert value to JSON: '{'",
            "suppressed": [],
            "stack": ["io.trino.operator.scalar.JsonFunctions.jsonParse(JsonFunctions.java:142)"],
            "cause": {
                "type": "com.fasterxml.jackson.core.io.JsonEOFException",
                "message": "Unexpected end-of-input: expected close marker for Object (start marker at [Source: (InputStreamReader); line: 1, column: 1])\n at [Source: (InputStreamReader); line: 1, column: 2]",
                "suppressed": [{"type": "java.io.IOException", "message": "closing the parser", "suppressed": [], "stack": []}],
                "stack": [],
                "cause": {"type": "java.lang.IllegalStateException", "suppressed": [], "stack": []}
            },
            "errorLocation": {"lineNumber": 1, "columnNumber": 8}
        }}}"#;

    #[test]
    fn query_errors_carry_the_cause_chain_deepest_last() {
        let p = page(serde_json::from_str(CHAINED).unwrap());
        let error = p.error.unwrap();
        assert_eq!(
            error.causes(),
            [
                "caused by com.fasterxml.jackson.core.io.JsonEOFException: Unexpected end-of-input: expected close marker for Object (start marker at [Source: (InputStreamReader); line: 1, column: 1]) at [Source: (InputStreamReader); line: 1, column: 2]",
                "suppressed java.io.IOException: closing the parser",
                "caused by java.lang.IllegalStateException",
            ]
        );
        let e = Error::Query {
            query_id: p.id,
            error: Box::new(error),
            update_type: None,
        };
        assert_eq!(
            e.to_string(),
            "query q3 failed with INVALID_FUNCTION_ARGUMENT (USER_ERROR): Cannot convert value to JSON: '{'; \
             caused by com.fasterxml.jackson.core.io.JsonEOFException: Unexpected end-of-input: expected close marker for Object \
             (start marker at [Source: (InputStreamReader); line: 1, column: 1]) at [Source: (InputStreamReader); line: 1, column: 2]; \
             suppressed java.io.IOException: closing the parser; \
             caused by java.lang.IllegalStateException"
        );
    }

    #[test]
    fn a_cause_chain_is_bounded() {
        let mut info = FailureInfo {
            kind: "E".into(),
            message: Some("m".into()),
            cause: None,
            suppressed: vec![],
        };
        for _ in 0..100 {
            info = FailureInfo {
                cause: Some(Box::new(info.clone())),
                ..info
            };
        }
        let error = QueryError {
            message: "top".into(),
            error_name: "X".into(),
            error_type: "INTERNAL_ERROR".into(),
            sql_state: None,
            failure_info: Some(info),
        };
        assert_eq!(error.causes().len(), 19);
    }

    #[rstest]
    #[case(
        Some("20240101_000000_00001_abcde"),
        "cancelled it (DELETE nextUri)",
        "query 20240101_000000_00001_abcde did not finish within 2s; cancelled it (DELETE nextUri)"
    )]
    #[case(
        None,
        "nothing to cancel",
        "query (not yet accepted) did not finish within 2s; nothing to cancel"
    )]
    fn deadline_messages_name_the_query(
        #[case] id: Option<&str>,
        #[case] cancel: &str,
        #[case] expected: &str,
    ) {
        let e = Error::Deadline {
            query_id: id.map(str::to_string),
            within: Duration::from_secs(2),
            cancel: cancel.into(),
        };
        assert_eq!(e.to_string(), expected);
    }

    #[test]
    fn remembers_what_the_server_sets_and_clears() {
        let mut session = BTreeMap::from([("old".to_string(), "1".to_string())]);
        let (mut catalog, mut schema) = (None, None);
        let mut h = HeaderMap::new();
        h.append(
            "X-Trino-Set-Session",
            HeaderValue::from_static("query_max_run_time=10s"),
        );
        h.append("X-Trino-Set-Session", HeaderValue::from_static("a=x%3Dy"));
        h.append("X-Trino-Clear-Session", HeaderValue::from_static("old"));
        h.append("X-Trino-Set-Catalog", HeaderValue::from_static("tpch"));
        h.append("X-Trino-Set-Schema", HeaderValue::from_static("tiny"));
        apply_session_headers(&h, &mut session, &mut catalog, &mut schema);
        assert_eq!(
            session_header(&session).as_deref(),
            Some("a=x%3Dy,query_max_run_time=10s")
        );
        assert_eq!(
            (catalog.as_deref(), schema.as_deref()),
            (Some("tpch"), Some("tiny"))
        );
        assert_eq!(session_header(&BTreeMap::new()), None);
    }

    #[rstest]
    #[case("NO_NODES_AVAILABLE", None, true)]
    #[case("SERVER_STARTING_UP", None, true)]
    #[case("NO_NODES_AVAILABLE", Some("CREATE TABLE"), false)]
    #[case("TABLE_NOT_FOUND", None, false)]
    fn reruns_only_queries_refused_while_starting(
        #[case] name: &str,
        #[case] update_type: Option<&str>,
        #[case] rerun: bool,
    ) {
        let e = Error::Query {
            query_id: "q".into(),
            error: Box::new(QueryError {
                message: String::new(),
                error_name: name.into(),
                error_type: "INTERNAL_ERROR".into(),
                sql_state: None,
                failure_info: None,
            }),
            update_type: update_type.map(str::to_string),
        };
        assert_eq!(rerun_when_starting(&e), rerun);
    }

    #[rstest]
    #[case("short", 10, "short")]
    #[case("ééééé", 3, "ééé...")]
    fn shortens_on_char_boundaries(#[case] text: &str, #[case] max: usize, #[case] want: &str) {
        assert_eq!(shorten(text, max), want);
    }

    /// Answers every POST /v1/statement: "still starting" the first `refusals` times,
    /// then one row. Returns its URL and the POSTs it got.
    async fn starting_server(refusals: usize) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let posts = Arc::new(AtomicUsize::new(0));
        let seen = posts.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let body = if n < refusals {
                    json!({"id": format!("q{n}"), "error": {"message": "Trino server is still initializing",
                        "errorName": "SERVER_STARTING_UP", "errorType": "INTERNAL_ERROR"}})
                } else {
                    json!({"id": format!("q{n}"), "columns": [{"name": "n", "type": "bigint"}], "data": [[5]]})
                }
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (url, posts)
    }

    #[tokio::test]
    async fn a_check_waits_out_a_starting_server_and_a_probe_does_not() {
        let (url, posts) = starting_server(2).await;
        let rows = Client::new(&url, "u")
            .run("SELECT 5", Duration::from_secs(30))
            .await
            .expect("the third attempt answers");
        assert_eq!(rows.rows, vec![vec![json!(5)]]);
        assert_eq!(posts.load(Ordering::SeqCst), 3);

        let (url, posts) = starting_server(2).await;
        let refused = Client::new(&url, "u")
            .without_start_reruns()
            .run("SELECT 5", Duration::from_secs(30))
            .await
            .expect_err("the probe's one attempt is refused");
        assert!(rerun_when_starting(&refused), "{refused}");
        assert_eq!(posts.load(Ordering::SeqCst), 1);
    }
}
