//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};

use serde_json::{json, Map, Value};

use crate::clients::trino::{Client, Column, Error, QueryResult};
use futures::future::BoxFuture;

impl TrinoAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let ep = cx.endpoint;
        let mut client = Client::new(&ep.base_url("http")?, ep.param("user")?)
            .with_password(ep.params.get("password").map(String::as_str));
        if cx.probe {
            client = client.without_start_reruns();
        }
        match self {
            Self::Query(q) | Self::Execute(q) => {
                client.catalog = q.catalog.as_deref().map(|c| cx.render(c)).transpose()?;
                client.schema = q.schema.as_deref().map(|s| cx.render(s)).transpose()?;
                let sql = cx.render(&q.sql)?;
                let result = client.run(&sql, q.within).await;
                let execute = matches!(self, Self::Execute(_));
                match (&q.expect_error, result) {
                    (None, Ok(r)) if execute => Ok(execute_output(&r)),
                    (None, Ok(r)) => Ok(query_output(&r)),
                    (None, Err(e)) => Err(error(&client, e)),
                    (Some(name), result) => expected_error(&client, name, result),
                }
            }
            Self::MemoryRoundtrip(s) => memory_roundtrip(&mut client, s).await,
            Self::LakeRoundtrip(s) => lake_roundtrip(&mut client, s).await,
        }
    }
}

impl Run for TrinoAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

/// Every message names the server: "trino at http://127.0.0.1:32768: ...".
fn error(client: &Client, e: Error) -> StepError {
    StepError::Error(format!("trino at {}: {e}", client.base_url()))
}

fn query_output(r: &QueryResult) -> Value {
    json!({
        "columns": r.columns.iter().map(|c| json!({"name": c.name, "type": c.r#type})).collect::<Vec<_>>(),
        "rows": row_objects(&r.columns, &r.rows),
        "row_count": r.rows.len(),
        "query_id": r.query_id,
    })
}

fn execute_output(r: &QueryResult) -> Value {
    json!({
        "update_type": r.update_type,
        "row_count": r.update_count.unwrap_or(0),
        "query_id": r.query_id,
    })
}

/// Rows as objects keyed by column name, which is what suites want to write.
fn row_objects(columns: &[Column], rows: &[Vec<Value>]) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let obj: Map<String, Value> = columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect();
            Value::Object(obj)
        })
        .collect()
}

/// `expect_error`: the named error is the expected outcome; anything else did not hold,
/// but a server that could not be asked at all still keeps the step from judging.
fn expected_error(
    client: &Client,
    name: &str,
    result: Result<QueryResult, Error>,
) -> Result<Value, StepError> {
    match result {
        Err(Error::Query {
            query_id, error, ..
        }) if error.error_name == name => Ok(json!({
            "error": {
                "name": error.error_name,
                "type": error.error_type,
                "message": error.message,
                "sql_state": error.sql_state,
                "causes": error.causes(),
            },
            "query_id": query_id,
        })),
        Err(Error::Query {
            query_id, error, ..
        }) => Err(StepError::Failure(format!(
            "expected query {query_id} to fail with {name}, it failed with {}",
            error.describe()
        ))),
        Ok(r) => Err(StepError::Failure(format!(
            "expected query {} to fail with {name}, it succeeded ({} row(s))",
            r.query_id,
            r.rows.len()
        ))),
        Err(e) => Err(error(client, e)),
    }
}

/// Runs one statement of a round trip; errors say which statement.
async fn run(
    client: &mut Client,
    what: &str,
    sql: &str,
    within: Duration,
) -> Result<QueryResult, StepError> {
    client
        .run(sql, within)
        .await
        .map_err(|e| error(client, e).context(what))
}

/// The single row of an aggregate query.
async fn one_row(
    client: &mut Client,
    what: &str,
    sql: &str,
    within: Duration,
) -> Result<Vec<Value>, StepError> {
    let mut r = run(client, what, sql, within).await?;
    match r.rows.len() {
        1 => Ok(r.rows.remove(0)),
        n => Err(StepError::Failure(format!(
            "{what}: expected one row, got {n}"
        ))),
    }
}

fn unique_suffix() -> String {
    crate::kinds::unique_id(12)
}

/// Runs `body`, which creates `table`, then drops the table even when a statement failed
/// (a failed CREATE TABLE AS may still have created it); the first error wins.
async fn with_table<F>(
    client: &mut Client,
    table: &str,
    within: Duration,
    body: F,
) -> Result<Value, StepError>
where
    F: AsyncFnOnce(&mut Client) -> Result<Value, StepError>,
{
    let result = body(client).await;
    let dropped = run(
        client,
        &format!("dropping {table}"),
        &format!("DROP TABLE IF EXISTS {table}"),
        within,
    )
    .await;
    let out = result?;
    dropped?;
    Ok(out)
}

fn compare(table: &str, what: &str, wrote: &[Value], read: &[Value]) -> Result<(), StepError> {
    if wrote == read {
        Ok(())
    } else {
        Err(StepError::Failure(format!(
            "{table}: expected {what} {} (computed on tpch), read back {}",
            Value::from(wrote.to_vec()),
            Value::from(read.to_vec())
        )))
    }
}

async fn memory_roundtrip(
    client: &mut Client,
    spec: &MemoryRoundtripSpec,
) -> Result<Value, StepError> {
    let w = spec.within;
    // Read first: a read is rerun while the server is still starting, a write is not.
    let expected = one_row(
        client,
        "computing the expected aggregates on tpch.tiny.nation",
        "SELECT count(*) + count_if(regionkey = 1), sum(nationkey) + sum(IF(regionkey = 1, nationkey + 100, 0)), count(DISTINCT name) FROM tpch.tiny.nation",
        w,
    )
    .await?;
    let table = format!("{}.default.harness_{}", spec.catalog, unique_suffix());
    with_table(client, &table, w, async |client: &mut Client| {
        let created = run(
            client,
            &format!("creating {table}"),
            &format!("CREATE TABLE {table} AS SELECT nationkey, name, regionkey FROM tpch.tiny.nation"),
            w,
        )
        .await?;
        let inserted = run(
            client,
            &format!("inserting into {table}"),
            &format!("INSERT INTO {table} SELECT nationkey + 100, name, regionkey FROM tpch.tiny.nation WHERE regionkey = 1"),
            w,
        )
        .await?;
        let read = one_row(
            client,
            &format!("reading {table}"),
            &format!("SELECT count(*), sum(nationkey), count(DISTINCT name) FROM {table}"),
            w,
        )
        .await?;
        compare(&table, "(count, sum(nationkey), distinct names)", &expected, &read)?;
        Ok(json!({
            "table": table,
            "created": created.update_count,
            "inserted": inserted.update_count,
            "rows": read[0],
            "nationkey_sum": read[1],
        }))
    })
    .await
}

async fn lake_roundtrip(client: &mut Client, spec: &LakeRoundtripSpec) -> Result<Value, StepError> {
    let w = spec.within;
    // checksum() is order-independent, so it compares contents, not plans.
    let aggregates = "count(*), sum(nationkey), to_hex(checksum(name)), to_hex(checksum(comment))";
    // Read first: a read is rerun while the server is still starting, a write is not.
    let expected = one_row(
        client,
        "computing the expected aggregates on tpch.tiny.nation",
        &format!("SELECT {aggregates} FROM tpch.tiny.nation"),
        w,
    )
    .await?;
    let schema = format!("{}.{}", spec.catalog, spec.schema);
    let location = format!("s3://{}/{}/", spec.bucket, spec.schema);
    run(
        client,
        &format!("creating schema {schema}"),
        &format!("CREATE SCHEMA IF NOT EXISTS {schema} WITH (location = '{location}')"),
        w,
    )
    .await?;
    let table = format!("{schema}.nation_{}", unique_suffix());
    with_table(client, &table, w, async |client: &mut Client| {
        let created = run(
            client,
            &format!("creating {table}"),
            &format!("CREATE TABLE {table} WITH (format = 'PARQUET') AS SELECT nationkey, name, regionkey, comment FROM tpch.tiny.nation"),
            w,
        )
        .await?;
        let read = one_row(
            client,
            &format!("reading {table}"),
            &format!("SELECT {aggregates} FROM {table}"),
            w,
        )
        .await?;
        compare(
            &table,
            "(count, sum(nationkey), checksum(name), checksum(comment))",
            &expected,
            &read,
        )?;
        // Where the rows came from: the data files must be objects under the schema's location.
        let files = one_row(
            client,
            &format!("listing the files of {table}"),
            &format!("SELECT count(DISTINCT \"$path\"), min(\"$path\"), max(\"$path\") FROM {table}"),
            w,
        )
        .await?;
        let outside: Vec<&str> = files[1..]
            .iter()
            .filter_map(Value::as_str)
            .filter(|p| !p.starts_with(&location))
            .collect();
        if !outside.is_empty() || files[1].is_null() {
            return Err(StepError::Failure(format!(
                "{table}: expected its data files under {location}, found {}",
                Value::from(files[1..].to_vec())
            )));
        }
        Ok(json!({
            "table": table,
            "location": location,
            "created": created.update_count,
            "rows": read[0],
            "nationkey_sum": read[1],
            "name_checksum": read[2],
            "files": files[0],
            "file": files[1],
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::trino::QueryError;
    use rstest::rstest;

    fn result() -> QueryResult {
        QueryResult {
            query_id: "q1".into(),
            columns: vec![
                Column {
                    name: "name".into(),
                    r#type: "varchar(25)".into(),
                },
                Column {
                    name: "price".into(),
                    r#type: "decimal(12, 2)".into(),
                },
            ],
            rows: vec![vec![json!("AFRICA"), json!("1.50")]],
            update_type: None,
            update_count: None,
        }
    }

    #[test]
    fn query_output_keys_rows_by_column_and_keeps_decimals_as_text() {
        assert_eq!(
            query_output(&result()),
            json!({
                "columns": [{"name": "name", "type": "varchar(25)"}, {"name": "price", "type": "decimal(12, 2)"}],
                "rows": [{"name": "AFRICA", "price": "1.50"}],
                "row_count": 1,
                "query_id": "q1",
            })
        );
    }

    #[rstest]
    #[case(Some("INSERT"), Some(5), json!({"update_type": "INSERT", "row_count": 5, "query_id": "q1"}))]
    #[case(Some("CREATE SCHEMA"), None, json!({"update_type": "CREATE SCHEMA", "row_count": 0, "query_id": "q1"}))]
    fn execute_output_reports_what_was_written(
        #[case] update_type: Option<&str>,
        #[case] count: Option<u64>,
        #[case] expected: Value,
    ) {
        let r = QueryResult {
            update_type: update_type.map(str::to_string),
            update_count: count,
            ..result()
        };
        assert_eq!(execute_output(&r), expected);
    }

    fn failed(name: &str) -> Result<QueryResult, Error> {
        Err(Error::Query {
            query_id: "q9".into(),
            error: Box::new(QueryError {
                message: "line 1:15: Table 'tpch.tiny.nope' does not exist".into(),
                error_name: name.into(),
                error_type: "USER_ERROR".into(),
                sql_state: Some("42S02".into()),
                failure_info: None,
            }),
            update_type: None,
        })
    }

    #[test]
    fn an_expected_error_is_the_output() {
        let client = Client::new("http://localhost:8080", "u");
        let out = expected_error(&client, "TABLE_NOT_FOUND", failed("TABLE_NOT_FOUND")).unwrap();
        assert_eq!(out["error"]["name"], "TABLE_NOT_FOUND");
        assert_eq!(out["error"]["sql_state"], "42S02");
        assert_eq!(out["query_id"], "q9");
    }

    #[rstest]
    #[case(
        failed("SYNTAX_ERROR"),
        "it failed with SYNTAX_ERROR (USER_ERROR): line 1:15"
    )]
    #[case(
        Ok(result()),
        "expected query q1 to fail with TABLE_NOT_FOUND, it succeeded (1 row(s))"
    )]
    fn another_outcome_is_a_failure(
        #[case] outcome: Result<QueryResult, Error>,
        #[case] says: &str,
    ) {
        let client = Client::new("http://localhost:8080", "u");
        match expected_error(&client, "TABLE_NOT_FOUND", outcome) {
            Err(StepError::Failure(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreachable_server_is_an_error_naming_it() {
        let client = Client::new("http://localhost:1", "u");
        let e = Error::Transport {
            method: reqwest::Method::POST,
            url: "http://localhost:1/v1/statement".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            expected_error(&client, "TABLE_NOT_FOUND", Err(e)),
            Err(StepError::Error(
                "trino at http://localhost:1: POST http://localhost:1/v1/statement: connection refused".into()
            ))
        );
    }

    #[test]
    fn compare_says_expected_and_read() {
        let e = compare("t", "(count)", &[json!(30)], &[json!(25)]).unwrap_err();
        assert_eq!(
            e,
            StepError::Failure(
                "t: expected (count) [30] (computed on tpch), read back [25]".into()
            )
        );
    }
}
