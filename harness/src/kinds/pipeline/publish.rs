//! `pipeline.publish`: rows of a PostgreSQL table published to Kafka as change events,
//! shaped the way a CDC connector (Debezium's JSON converter without schemas) shapes
//! them: key `{"order_id": 100001}`, value `{"before": null, "after": {...row...},
//! "source": {"db", "table"}, "op": "c", "ts_ms"}`. Timestamps with a time zone become
//! ISO-8601 instants in UTC; numerics stay exact decimal strings.

use std::time::Instant;

use serde_json::{json, Map, Value};

use rdkafka::message::OwnedHeaders;

use super::{now_ms, per_second, round3, PublishSpec, KAFKA};
use crate::kinds::kafka::client::Kafka;
use crate::kinds::kafka::steps::{send, Outgoing};
use crate::kinds::postgres::{connect, describe, query};
use crate::kinds::{StepContext, StepError};

pub(super) async fn publish(cx: &StepContext<'_>, spec: &PublishSpec) -> Result<Value, StepError> {
    let table = cx.render(&spec.table)?;
    let topic = cx.render(&spec.topic)?;
    let key = cx.render(&spec.key)?;
    let sql = match &spec.sql {
        Some(s) => cx.render(s)?,
        None => format!("SELECT * FROM {table} ORDER BY {key}"),
    };
    let ep = cx.endpoint;
    let pg = format!("{} at {}:{}", ep.service, ep.host, ep.port("sql")?);
    let database = ep.param_or("database", ep.param("user")?).to_string();

    let started = Instant::now();
    let client = connect(cx).await?;
    // Instants in UTC, whatever the server's default zone.
    client
        .batch_execute("SET TimeZone TO 'UTC'")
        .await
        .map_err(|e| StepError::Error(format!("{pg}: {}", describe(&e))))?;
    let result = query(&client, &sql)
        .await
        .map_err(|e| e.context(format!("{pg}: reading the rows to publish")))?;
    let source = json!({"db": database, "table": table});
    let events = events(&result, &key, &source, now_ms())
        .map_err(|e| StepError::Error(format!("{pg}: {e}")))?;
    let read = started.elapsed();

    let kafka_ep = cx.endpoint_of(KAFKA)?;
    let kafka = Kafka::of(kafka_ep)?;
    // The topic first, so the clock below times publishing alone.
    kafka
        .create_topic(&kafka.admin()?, &topic, spec.partitions, true)
        .await?;
    let first_published_at_ms = now_ms();
    let sending = Instant::now();
    let rows = events.len();
    // Data, not templates: sent as they are.
    let messages = events
        .into_iter()
        .map(|(key, value)| Outgoing {
            key: Some(key),
            value: Some(value),
            headers: OwnedHeaders::new(),
        })
        .collect();
    // Every event acknowledged, or the step fails naming the first that was not.
    send(&kafka, &topic, messages).await?;
    let took = started.elapsed();
    Ok(json!({
        "topic": topic,
        "table": table,
        "rows": rows,
        "seconds": round3(took.as_secs_f64()),
        "read_seconds": round3(read.as_secs_f64()),
        "produce_seconds": round3(sending.elapsed().as_secs_f64()),
        "rows_per_second": per_second(rows as f64, took),
        "first_published_at_ms": first_published_at_ms,
    }))
}

/// One `(key, value)` pair per row of a `postgres.query` output.
fn events(
    result: &Value,
    key: &str,
    source: &Value,
    ts_ms: i64,
) -> Result<Vec<(String, String)>, String> {
    let types: Vec<(&str, &str)> = result["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or(""),
                        c["type"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !types.iter().any(|(name, _)| *name == key) {
        let names: Vec<&str> = types.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "the key column `{key}` is not among the query's columns ({})",
            names.join(", ")
        ));
    }
    let rows = result["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    rows.iter()
        .map(|row| {
            let after: Map<String, Value> = types
                .iter()
                .map(|(name, ty)| (name.to_string(), cdc_value(ty, &row[*name])))
                .collect();
            let mut k = Map::new();
            k.insert(key.to_string(), after[key].clone());
            let k = Value::Object(k);
            let v = json!({"before": null, "after": after, "source": source, "op": "c", "ts_ms": ts_ms});
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A value as a CDC connector writes it: timestamps as ISO-8601 (`Z` for UTC), the rest
/// as `postgres.query` gives it (exact numerics as strings).
fn cdc_value(pg_type: &str, v: &Value) -> Value {
    match (pg_type, v.as_str()) {
        ("timestamptz", Some(t)) => {
            let iso = t.replacen(' ', "T", 1);
            match iso.strip_suffix("+00") {
                Some(utc) => json!(format!("{utc}Z")),
                None => json!(iso),
            }
        }
        ("timestamp", Some(t)) => json!(t.replacen(' ', "T", 1)),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("timestamptz", json!("2024-06-01 12:00:00.123+00"), json!("2024-06-01T12:00:00.123Z"))]
    #[case("timestamptz", json!("2024-06-01 12:00:00+00"), json!("2024-06-01T12:00:00Z"))]
    #[case("timestamptz", json!("2024-06-01 14:00:00+02"), json!("2024-06-01T14:00:00+02"))]
    #[case("timestamp", json!("2024-06-01 12:00:00.5"), json!("2024-06-01T12:00:00.5"))]
    #[case("numeric", json!("12.50"), json!("12.50"))]
    #[case("int8", json!(7), json!(7))]
    #[case("timestamptz", Value::Null, Value::Null)]
    fn writes_values_like_a_cdc_connector(
        #[case] ty: &str,
        #[case] v: Value,
        #[case] expected: Value,
    ) {
        assert_eq!(cdc_value(ty, &v), expected);
    }

    fn result() -> Value {
        json!({
            "columns": [
                {"name": "order_id", "type": "int8"},
                {"name": "placed_at", "type": "timestamptz"},
                {"name": "amount", "type": "numeric"},
            ],
            "rows": [{"order_id": 1, "placed_at": "2024-06-01 00:00:01+00", "amount": "9.90"}],
        })
    }

    #[test]
    fn wraps_rows_in_change_events_keyed_by_the_key_column() {
        let source = json!({"db": "platform", "table": "s.orders"});
        let events = events(&result(), "order_id", &source, 42).unwrap();
        assert_eq!(events.len(), 1);
        let (k, v) = &events[0];
        assert_eq!(
            serde_json::from_str::<Value>(k).unwrap(),
            json!({"order_id": 1})
        );
        assert_eq!(
            serde_json::from_str::<Value>(v).unwrap(),
            json!({
                "before": null,
                "after": {"order_id": 1, "placed_at": "2024-06-01T00:00:01Z", "amount": "9.90"},
                "source": {"db": "platform", "table": "s.orders"},
                "op": "c",
                "ts_ms": 42,
            })
        );
    }

    #[test]
    fn a_missing_key_column_is_named() {
        let err = events(&result(), "id", &Value::Null, 0).unwrap_err();
        assert!(
            err.contains("`id`") && err.contains("order_id, placed_at, amount"),
            "{err}"
        );
    }
}
