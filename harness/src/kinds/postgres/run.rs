//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};

use serde_json::{json, Map, Value};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use futures::future::BoxFuture;

impl PostgresAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let client = connect(cx).await?;
        match self {
            Self::Connect(spec) => server_info(&client, spec.min_version.as_deref()).await,
            Self::Query(q) => query(&client, &cx.render(&q.sql)?).await,
            Self::Execute(q) => {
                client
                    .batch_execute(&cx.render(&q.sql)?)
                    .await
                    .map_err(|e| StepError::Error(describe(&e)))?;
                Ok(json!({}))
            }
            Self::Scratch(s) => scratch(client, s.rows).await,
        }
    }
}

impl Run for PostgresAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub(crate) async fn connect(cx: &StepContext<'_>) -> Result<Client, StepError> {
    let ep = cx.endpoint;
    let port = ep.port("sql")?;
    let user = ep.param("user")?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&ep.host)
        .port(port)
        .user(user)
        .dbname(ep.param_or("database", user))
        .application_name("platform-harness")
        .connect_timeout(std::time::Duration::from_secs(10))
        // The server itself cancels a statement that outlives its check, rather than
        // keep working for a client that has given up.
        .options(format!(
            "-c statement_timeout={}",
            STATEMENT_TIMEOUT.as_millis()
        ));
    if let Ok(pw) = ep.param("password") {
        config.password(pw);
    }
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        StepError::Error(format!(
            "connecting to {}:{port} as `{user}`: {}",
            ep.host,
            describe(&e)
        ))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// tokio-postgres's own Display says only "db error"; the server's message is the cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

async fn server_info(client: &Client, min_version: Option<&str>) -> Result<Value, StepError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, current_user::text, current_database()::text",
            &[],
        )
        .await
        .map_err(|e| StepError::Error(describe(&e)))?;
    let version: String = row.get(0);
    let num: i32 = row.get(1);
    if let Some(min) = min_version {
        let wanted = version_num(min).ok_or_else(|| {
            StepError::Error(format!(
                "`min_version` {min:?} is not a version like \"15\" or \"15.4\""
            ))
        })?;
        if num < wanted {
            return Err(StepError::Failure(format!(
                "server version {version} is older than the required {min}"
            )));
        }
    }
    Ok(json!({
        "server_version": version,
        "server_version_num": num,
        "user": row.get::<_, String>(2),
        "database": row.get::<_, String>(3),
    }))
}

/// PostgreSQL's `server_version_num` for "15" or "15.4" (major * 10000 + minor).
fn version_num(v: &str) -> Option<i32> {
    let mut parts = v.trim().split('.');
    let major: i32 = parts.next()?.parse().ok()?;
    let minor: i32 = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    parts.next().is_none().then_some(major * 10000 + minor)
}

/// Column types come from preparing the statement; values from the simple protocol,
/// where every value arrives as text: exact for numerics and timestamps, typed into JSON
/// where JSON has the type.
pub(crate) async fn query(client: &Client, sql: &str) -> Result<Value, StepError> {
    let statement = client
        .prepare(sql)
        .await
        .map_err(|e| StepError::Error(describe(&e)))?;
    let columns: Vec<(String, String)> = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().name().to_string()))
        .collect();
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| StepError::Error(describe(&e)))?;
    let mut rows = Vec::new();
    for m in messages {
        if let SimpleQueryMessage::Row(r) = m {
            let mut obj = Map::new();
            for (i, (name, ty)) in columns.iter().enumerate() {
                obj.insert(name.clone(), typed(r.get(i), ty));
            }
            rows.push(Value::Object(obj));
        }
    }
    Ok(json!({
        "columns": columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        "row_count": rows.len(),
        "rows": rows,
    }))
}

fn typed(text: Option<&str>, ty: &str) -> Value {
    let Some(t) = text else { return Value::Null };
    match ty {
        "int2" | "int4" | "int8" | "oid" => t.parse::<i64>().map_or_else(|_| json!(t), Value::from),
        "float4" | "float8" => t.parse::<f64>().map_or_else(|_| json!(t), Value::from),
        "bool" => Value::Bool(t == "t"),
        "json" | "jsonb" => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        _ => json!(t),
    }
}

/// Create, insert, read back and drop in a schema of its own, so concurrent runs and
/// real data are never touched. The schema is dropped even when a step in between fails.
async fn scratch(mut client: Client, rows: i64) -> Result<Value, StepError> {
    let schema = format!("harness_scratch_{}", crate::kinds::unique_id(12));
    let err = |e: tokio_postgres::Error| StepError::Error(describe(&e));
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.items (id bigint PRIMARY KEY, label text NOT NULL, amount numeric(12,2) NOT NULL)"
        ))
        .await
        .map_err(err)?;
    let result = async {
        let tx = client.transaction().await.map_err(err)?;
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {schema}.items (id, label, amount) VALUES ($1, $2, ($1::bigint * 1.25)::numeric(12,2))"
            ))
            .await
            .map_err(err)?;
        for id in 1..=rows {
            tx.execute(&insert, &[&id, &format!("item-{id}")])
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        let row = client
            .query_one(
                &format!("SELECT count(*), coalesce(sum(id), 0)::bigint, coalesce(sum(amount), 0)::text FROM {schema}.items"),
                &[],
            )
            .await
            .map_err(err)?;
        let (count, id_sum, amount): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        let expected_sum = rows * (rows + 1) / 2;
        if count != rows || id_sum != expected_sum {
            return Err(StepError::Failure(format!(
                "wrote {rows} rows (id sum {expected_sum}) but read back {count} (id sum {id_sum})"
            )));
        }
        Ok(json!({"schema": schema, "rows": count, "id_sum": id_sum, "amount_sum": amount}))
    }
    .await;
    let dropped = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .map_err(|e| {
            StepError::Error(format!(
                "dropping scratch schema {schema}: {}",
                describe(&e)
            ))
        });
    let out = result?;
    dropped?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("15", Some(150000))]
    #[case("15.4", Some(150004))]
    #[case(" 9.6 ", Some(90006))]
    #[case("15.x", None)]
    #[case("15.1.2", None)]
    #[case("", None)]
    fn parses_min_versions(#[case] v: &str, #[case] expected: Option<i32>) {
        assert_eq!(version_num(v), expected);
    }

    #[rstest]
    #[case(Some("42"), "int4", json!(42))]
    #[case(Some("1.5"), "float8", json!(1.5))]
    #[case(Some("12.50"), "numeric", json!("12.50"))]
    #[case(Some("t"), "bool", json!(true))]
    #[case(Some("{\"a\":1}"), "jsonb", json!({"a": 1}))]
    #[case(Some("2024-01-01 00:00:00"), "timestamp", json!("2024-01-01 00:00:00"))]
    #[case(None, "int4", Value::Null)]
    fn types_text_values(#[case] text: Option<&str>, #[case] ty: &str, #[case] expected: Value) {
        assert_eq!(typed(text, ty), expected);
    }
}
