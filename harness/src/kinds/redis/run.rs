//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};
use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
};

use serde_json::{json, Map, Value};

/// Every call to the server is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(10);

impl RedisAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let client = client(cx)?;
        let mut con = connect(&client, cx).await?;
        match self {
            Self::Ping(_) => {
                let started = Instant::now();
                let reply: String = call(&mut con, &redis::cmd("PING")).await?;
                Ok(json!({ "reply": reply, "latency_ms": ms(started) }))
            }
            Self::Info(_) => {
                let text: String = call(&mut con, &redis::cmd("INFO")).await?;
                Ok(info(&text))
            }
            Self::Command(c) => {
                let args = c
                    .args
                    .iter()
                    .map(|a| cx.render(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let (name, rest) = args
                    .split_first()
                    .ok_or_else(|| StepError::Error("`args` is empty: name a command".into()))?;
                let mut cmd = redis::cmd(name);
                cmd.arg(rest);
                let reply: redis::Value = call(&mut con, &cmd).await?;
                Ok(json!({ "reply": to_json(reply) }))
            }
            Self::Roundtrip(r) => roundtrip(&client, con, cx, r).await,
        }
    }
}

impl Run for RedisAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

/// Endpoint: port `redis`; optional params `password`, `user` (ACL) and `db`.
fn client(cx: &StepContext<'_>) -> Result<Client, StepError> {
    let ep = cx.endpoint;
    let mut settings = RedisConnectionInfo::default();
    if let Ok(user) = ep.param("user") {
        settings = settings.set_username(user);
    }
    if let Ok(pw) = ep.param("password") {
        settings = settings.set_password(pw);
    }
    if let Ok(db) = ep.param("db") {
        let db = db.parse().map_err(|_| {
            StepError::Error(format!("endpoint parameter `db` = {db:?} is not a number"))
        })?;
        settings = settings.set_db(db);
    }
    let info = ConnectionAddr::Tcp(ep.host.clone(), ep.port("redis")?)
        .into_connection_info()
        .map_err(|e| StepError::Error(e.to_string()))?
        .set_redis_settings(settings);
    Client::open(info).map_err(|e| StepError::Error(e.to_string()))
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
}

async fn connect(
    client: &Client,
    cx: &StepContext<'_>,
) -> Result<MultiplexedConnection, StepError> {
    client
        .get_multiplexed_async_connection_with_config(&config())
        .await
        .map_err(|e| {
            StepError::Error(format!(
                "connecting to {}:{}: {}",
                cx.endpoint.host,
                cx.endpoint.port("redis").unwrap_or_default(),
                describe(&e)
            ))
        })
}

/// The server's own words: `WRONGPASS invalid username-password pair`, `NOAUTH ...`.
fn describe(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

async fn call<T: redis::FromRedisValue>(
    con: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<T, StepError> {
    cmd.query_async(con)
        .await
        .map_err(|e| StepError::Error(describe(&e)))
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// INFO's `# Section` / `key:value` lines as JSON, with the fields a checklist names on top.
fn info(text: &str) -> Value {
    let mut sections = Map::new();
    let mut current = String::from("default");
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix("# ") {
            current = name.to_ascii_lowercase();
        } else if let Some((k, v)) = line.split_once(':') {
            let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
            sections
                .entry(current.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|s| s.insert(k.to_string(), value));
        }
    }
    let field = |section: &str, key: &str| sections.get(section).and_then(|s| s.get(key)).cloned();
    json!({
        "version": field("server", "redis_version"),
        "mode": field("server", "redis_mode"),
        "role": field("replication", "role"),
        "used_memory": field("memory", "used_memory"),
        "maxmemory": field("memory", "maxmemory"),
        "connected_clients": field("clients", "connected_clients"),
        "sections": sections,
    })
}

fn to_json(v: redis::Value) -> Value {
    use redis::Value as R;
    match v {
        R::Nil => Value::Null,
        R::Int(n) => json!(n),
        R::Double(d) => json!(d),
        R::Boolean(b) => json!(b),
        R::Okay => json!("OK"),
        R::SimpleString(s) => json!(s),
        R::BulkString(bytes) => match String::from_utf8(bytes) {
            Ok(s) => json!(s),
            Err(e) => json!({ "bytes_hex": hex(e.as_bytes()) }),
        },
        R::Array(items) | R::Set(items) => Value::Array(items.into_iter().map(to_json).collect()),
        R::Map(pairs) => Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        R::VerbatimString { text, .. } => json!(text),
        R::ServerError(e) => json!({ "error": e.to_string() }),
        other => json!(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn roundtrip(
    client: &Client,
    mut con: MultiplexedConnection,
    cx: &StepContext<'_>,
    spec: &RoundtripSpec,
) -> Result<Value, StepError> {
    let id = crate::kinds::unique_id(10);
    let (key, counter, stream, channel) = (
        format!("harness:{id}:key"),
        format!("harness:{id}:counter"),
        format!("harness:{id}:stream"),
        format!("harness:{id}:channel"),
    );
    let result = roundtrip_keys(
        client,
        &mut con,
        cx,
        spec,
        [&key, &counter, &stream, &channel],
    )
    .await;
    // Removed whatever happened, so a long-lived server does not collect test keys.
    let _: Result<i64, _> = call(
        &mut con,
        redis::cmd("DEL").arg(&key).arg(&counter).arg(&stream),
    )
    .await;
    result
}

async fn roundtrip_keys(
    client: &Client,
    con: &mut MultiplexedConnection,
    cx: &StepContext<'_>,
    spec: &RoundtripSpec,
    [key, counter, stream, channel]: [&String; 4],
) -> Result<Value, StepError> {
    let mut latencies = BTreeMap::new();
    let value = format!("value-{}", crate::kinds::unique_id(8));
    let ttl_s = spec.ttl.as_secs().max(1);

    let started = Instant::now();
    let _: () = call(
        con,
        redis::cmd("SET").arg(key).arg(&value).arg("EX").arg(ttl_s),
    )
    .await?;
    latencies.insert("set_ms", ms(started));
    let started = Instant::now();
    let read: Option<String> = call(con, redis::cmd("GET").arg(key)).await?;
    latencies.insert("get_ms", ms(started));
    if read.as_deref() != Some(value.as_str()) {
        return Err(StepError::Failure(format!(
            "GET {key}: expected {value:?}, got {read:?}"
        )));
    }
    let ttl: i64 = call(con, redis::cmd("TTL").arg(key)).await?;
    if ttl <= 0 || ttl > ttl_s as i64 {
        return Err(StepError::Failure(format!(
            "TTL {key}: expected 1..={ttl_s} s, got {ttl} (the key has no expiry, or lost it)"
        )));
    }

    let mut last = 0;
    for _ in 0..3 {
        last = call(con, redis::cmd("INCR").arg(counter)).await?;
    }
    if last != 3 {
        return Err(StepError::Failure(format!(
            "INCR {counter} three times: got {last}, expected 3"
        )));
    }

    let started = Instant::now();
    for i in 0..spec.entries {
        let _: String = call(
            con,
            redis::cmd("XADD").arg(stream).arg("*").arg("seq").arg(i),
        )
        .await?;
    }
    latencies.insert("xadd_all_ms", ms(started));
    let entries: Vec<(String, Vec<(String, String)>)> =
        call(con, redis::cmd("XRANGE").arg(stream).arg("-").arg("+")).await?;
    let seqs: Vec<String> = entries
        .iter()
        .map(|(_, fields)| fields.first().map(|(_, v)| v.clone()).unwrap_or_default())
        .collect();
    let expected: Vec<String> = (0..spec.entries).map(|i| i.to_string()).collect();
    if seqs != expected {
        let first_bad = seqs.iter().zip(&expected).position(|(a, b)| a != b);
        return Err(StepError::Failure(format!(
            "XRANGE {stream}: read {} of {} entries back{}",
            seqs.len(),
            spec.entries,
            first_bad.map_or(String::new(), |i| format!(", out of order at {i}"))
        )));
    }

    let published = pubsub(client, con, channel).await?;
    latencies.insert("publish_to_receive_ms", published);
    Ok(json!({
        "value": value,
        "ttl_s": ttl,
        "counter": last,
        "stream_entries": seqs.len(),
        "latencies": latencies,
        "server": cx.endpoint.service,
    }))
}

/// A subscriber on its own connection must receive what is published on the channel.
async fn pubsub(
    client: &Client,
    con: &mut MultiplexedConnection,
    channel: &str,
) -> Result<f64, StepError> {
    let mut sub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| StepError::Error("opening a subscriber connection timed out".into()))?
        .map_err(|e| {
            StepError::Error(format!("opening a subscriber connection: {}", describe(&e)))
        })?;
    tokio::time::timeout(TIMEOUT, sub.subscribe(channel))
        .await
        .map_err(|_| StepError::Error(format!("SUBSCRIBE {channel} timed out")))?
        .map_err(|e| StepError::Error(describe(&e)))?;
    let message = format!("hello-{}", crate::kinds::unique_id(6));
    let started = Instant::now();
    let receivers: i64 = call(con, redis::cmd("PUBLISH").arg(channel).arg(&message)).await?;
    if receivers < 1 {
        return Err(StepError::Failure(format!(
            "PUBLISH {channel}: {receivers} subscribers received it, expected 1"
        )));
    }
    let mut stream = sub.on_message();
    let got = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .map_err(|_| StepError::Failure(format!("no message on {channel} within {TIMEOUT:?}")))?
        .and_then(|m| m.get_payload::<String>().ok());
    if got.as_deref() != Some(message.as_str()) {
        return Err(StepError::Failure(format!(
            "subscriber on {channel}: expected {message:?}, got {got:?}"
        )));
    }
    Ok(ms(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_picks_the_fields_a_checklist_names() {
        let text = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1024\r\n# Replication\r\nrole:master\r\n";
        let v = info(text);
        assert_eq!(v["version"], "7.0.15");
        assert_eq!(v["role"], "master");
        assert_eq!(v["connected_clients"], 3);
        assert_eq!(v["used_memory"], 1024);
        assert_eq!(v["sections"]["server"]["redis_mode"], "standalone");
    }

    #[test]
    fn replies_become_json() {
        use redis::Value as R;
        let v = to_json(R::Array(vec![
            R::Int(1),
            R::Nil,
            R::BulkString(b"ok".to_vec()),
            R::BulkString(vec![0xff, 0x00]),
        ]));
        assert_eq!(v, json!([1, null, "ok", { "bytes_hex": "ff00" }]));
    }

    #[rstest::rstest]
    #[case("redis.ping = {}", "ping")]
    #[case("redis.roundtrip = { entries = 5, ttl = \"10s\" }", "roundtrip")]
    #[case("redis.command = { args = [\"DBSIZE\"] }", "command")]
    fn parses_its_verbs(#[case] src: &str, #[case] verb: &str) {
        let t: toml::Table = toml::from_str(src).unwrap();
        let a: RedisAction = t["redis"].clone().try_into().unwrap();
        assert_eq!(a.verb(), verb);
    }
}
