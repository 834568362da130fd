//! `pipeline.load_csv`: an operational table seeded from a CSV file of the fixtures with
//! COPY FROM STDIN, the fast path PostgreSQL offers for bulk loads.

use std::time::Instant;

use bytes::Bytes;
use futures::SinkExt;
use serde_json::{json, Value};

use super::{per_second, round3, LoadCsvSpec};
use crate::kinds::postgres::{connect, describe};
use crate::kinds::{StepContext, StepError};

pub(super) async fn load_csv(cx: &StepContext<'_>, spec: &LoadCsvSpec) -> Result<Value, StepError> {
    let table = cx.render(&spec.table)?;
    let data = tokio::fs::read(&spec.file)
        .await
        .map_err(|e| StepError::Error(format!("reading {}: {e}", spec.file.display())))?;
    let columns = header_columns(&data)
        .map_err(|e| StepError::Error(format!("{}: {e}", spec.file.display())))?;
    let ep = cx.endpoint;
    let pg = format!("{} at {}:{}", ep.service, ep.host, ep.port("sql")?);
    let client = connect(cx).await?;
    if let Some(create) = &spec.create {
        client
            .batch_execute(&cx.render(create)?)
            .await
            .map_err(|e| StepError::Error(format!("{pg}: creating {table}: {}", describe(&e))))?;
    }
    let started = Instant::now();
    let copy = format!(
        "COPY {table} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)",
        columns.join(", ")
    );
    let copy_err = |e: tokio_postgres::Error| {
        StepError::Error(format!("{pg}: COPY into {table}: {}", describe(&e)))
    };
    let sink = client.copy_in(&copy).await.map_err(copy_err)?;
    futures::pin_mut!(sink);
    let bytes = data.len();
    sink.send(Bytes::from(data)).await.map_err(copy_err)?;
    let rows = sink.finish().await.map_err(copy_err)?;
    let took = started.elapsed();
    Ok(json!({
        "table": table,
        "columns": columns.len(),
        "rows": rows,
        "bytes": bytes,
        "seconds": round3(took.as_secs_f64()),
        "rows_per_second": per_second(rows as f64, took),
    }))
}

/// The header's column names, quoted as identifiers for the COPY column list.
fn header_columns(data: &[u8]) -> Result<Vec<String>, String> {
    let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(first)
        .map_err(|_| "the header line is not UTF-8".to_string())?
        .trim_end_matches('\r');
    let names: Vec<&str> = line.split(',').map(str::trim).collect();
    if line.is_empty() || names.iter().any(|n| n.is_empty() || n.contains('"')) {
        return Err(format!(
            "the first line must name the columns, comma-separated (found {line:?})"
        ));
    }
    Ok(names.iter().map(|n| format!("\"{n}\"")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("order_id,customer\n1,a\n", &["\"order_id\"", "\"customer\""])]
    #[case("a, b\r\n1,2\r\n", &["\"a\"", "\"b\""])]
    #[case("Mixed Case", &["\"Mixed Case\""])]
    fn reads_the_header(#[case] data: &str, #[case] expected: &[&str]) {
        assert_eq!(header_columns(data.as_bytes()).unwrap(), expected);
    }

    #[rstest]
    #[case("")]
    #[case("a,,b\n")]
    #[case("\"quoted\",b\n")]
    fn rejects_headers_that_name_no_columns(#[case] data: &str) {
        assert!(header_columns(data.as_bytes()).is_err());
    }
}
