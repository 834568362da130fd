//! `pipeline.land`: change events consumed from Kafka and written to the bronze layer of
//! the lake as JSON-lines files, one per day, in Hive's partition layout
//! (`<prefix>/<partition_column>=YYYY-MM-DD/part-0000.jsonl`), so a Hive table whose
//! location is `<prefix>/` finds them with `sync_partition_metadata`.
//!
//! Each line is an event's `after` row, flat. Hive's JSON reader takes timestamps as
//! `YYYY-MM-DD HH:MM:SS.fff` without a zone: UTC instants are written that way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;
use serde_json::{json, Value};

use super::{context_for, literal, per_second, round3, LandSpec, MINIO};
use crate::kinds::kafka::{ConsumeSpec, KafkaAction, StartFrom};
use crate::kinds::s3::{PutSpec, S3Action};
use crate::kinds::show;
use crate::kinds::{StepContext, StepError};

pub(super) async fn land(cx: &StepContext<'_>, spec: &LandSpec) -> Result<Value, StepError> {
    let topic = cx.render(&spec.topic)?;
    let bucket = cx.render(&spec.bucket)?;
    let prefix = cx.render(&spec.prefix)?.trim_end_matches('/').to_string();
    let partition_by = cx.render(&spec.partition_by)?;
    let column = cx.render(&spec.partition_column)?;
    let count = spec.count.count(cx, "count")?;

    let started = Instant::now();
    // A new consumer group reading from the start, committing what it read, as a sink
    // connector does; fewer events than `count` is a failure naming the topic.
    let consumed = KafkaAction::Consume(ConsumeSpec {
        topic: literal(&topic),
        group: None,
        count,
        within: spec.within,
        from: StartFrom::Earliest,
    })
    .execute(cx)
    .await?;
    let consumed_in = started.elapsed();
    let messages = consumed["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let bronze = Bronze::from_events(messages, &partition_by)
        .map_err(|e| StepError::Failure(format!("events from `{topic}`: {e}")))?;

    let writing = Instant::now();
    let minio = context_for(cx, MINIO)?;
    let files: Vec<(String, String, usize)> = bronze
        .days
        .iter()
        .map(|(day, lines)| {
            let key = format!("{prefix}/{column}={day}/part-0000.jsonl");
            (day.clone(), key, lines.len())
        })
        .collect();
    let puts = files
        .iter()
        .zip(bronze.days.values())
        .map(|((_, key, _), lines)| {
            let put = S3Action::Put(PutSpec {
                bucket: literal(&bucket),
                key: literal(key),
                body: Some(literal(&(lines.join("\n") + "\n"))),
                body_base64: None,
                size: None,
                content_type: Some("application/x-ndjson".into()),
                metadata: Default::default(),
            });
            let minio = &minio;
            async move { put.execute(minio).await }
        });
    let written = futures::future::try_join_all(puts).await?;
    let bytes: u64 = written.iter().filter_map(|w| w["size"].as_u64()).sum();
    let took = started.elapsed();
    Ok(json!({
        "topic": topic,
        "bucket": bucket,
        "prefix": prefix,
        "rows": bronze.rows,
        "keys": bronze.keys,
        "files": files.len(),
        "days": bronze.days.len(),
        "partitions": files.iter().map(|(day, key, rows)| json!({"day": day, "rows": rows, "key": key})).collect::<Vec<_>>(),
        "bytes": bytes,
        "seconds": round3(took.as_secs_f64()),
        "consume_seconds": round3(consumed_in.as_secs_f64()),
        "write_seconds": round3(writing.elapsed().as_secs_f64()),
        "rows_per_second": per_second(bronze.rows as f64, took),
    }))
}

/// The flattened rows by day, in the order they arrived.
#[derive(Debug, Default, PartialEq)]
struct Bronze {
    days: BTreeMap<String, Vec<String>>,
    rows: usize,
    /// Distinct event keys: fewer than `rows` means an event arrived twice.
    keys: usize,
}

impl Bronze {
    /// `messages` as `kafka.consume` outputs them: `{key, value, partition, offset}`.
    fn from_events(messages: &[Value], partition_by: &str) -> Result<Self, String> {
        let mut out = Self::default();
        let mut keys = BTreeSet::new();
        for m in messages {
            let at = format!("partition {}, offset {}", m["partition"], m["offset"]);
            let event: Value = m["value"]
                .as_str()
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or(Value::Null);
            let Some(after) = event.get("after").and_then(Value::as_object) else {
                return Err(format!(
                    "the message at {at} is not a change event with an `after` row: {}",
                    show(&m["value"])
                ));
            };
            let day = after
                .get(partition_by)
                .and_then(Value::as_str)
                .and_then(hive_timestamp)
                .map(|ts| ts[..10].to_string())
                .ok_or_else(|| {
                    format!(
                        "the event at {at} has no UTC timestamp in `{partition_by}`: {}",
                        show(&Value::Object(after.clone()))
                    )
                })?;
            let flat: serde_json::Map<String, Value> = after
                .iter()
                .map(|(k, v)| {
                    let v = match v.as_str().and_then(hive_timestamp) {
                        Some(ts) => Value::String(ts),
                        None => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            out.days
                .entry(day)
                .or_default()
                .push(Value::Object(flat).to_string());
            keys.insert(m["key"].to_string());
            out.rows += 1;
        }
        out.keys = keys.len();
        Ok(out)
    }
}

/// An ISO-8601 instant in UTC (`2024-06-01T12:00:00.123Z`) as Hive writes timestamps
/// (`2024-06-01 12:00:00.123`); `None` for anything else.
fn hive_timestamp(text: &str) -> Option<String> {
    static UTC_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)(?:Z|[+-]00(?::?00)?)$")
            .expect("a valid regex")
    });
    let c = UTC_INSTANT.captures(text)?;
    Some(format!("{} {}", &c[1], &c[2]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("2024-06-01T12:00:00.123Z", Some("2024-06-01 12:00:00.123"))]
    #[case("2024-06-01T12:00:00Z", Some("2024-06-01 12:00:00"))]
    #[case("2024-06-01T12:00:00+00:00", Some("2024-06-01 12:00:00"))]
    #[case("2024-06-01T12:00:00.5+00", Some("2024-06-01 12:00:00.5"))]
    #[case("2024-06-01T12:00:00+02:00", None)]
    #[case("2024-06-01 12:00:00", None)]
    #[case("2024-06-01", None)]
    #[case("customer-0001", None)]
    fn converts_utc_instants_only(#[case] text: &str, #[case] expected: Option<&str>) {
        assert_eq!(hive_timestamp(text).as_deref(), expected);
    }

    fn message(key: i64, value: Value) -> Value {
        json!({"key": json!({"id": key}).to_string(), "value": value.to_string(), "partition": 0, "offset": key})
    }

    fn event(id: i64, at: &str) -> Value {
        json!({"op": "c", "after": {"id": id, "at": at, "amount": "1.50", "note": "a $ sign"}, "ts_ms": 1})
    }

    #[test]
    fn flattens_events_into_daily_files() {
        let messages = [
            message(1, event(1, "2024-06-02T23:59:59.999Z")),
            message(2, event(2, "2024-06-01T00:00:00Z")),
            message(3, event(3, "2024-06-02T00:00:00.000Z")),
            message(3, event(3, "2024-06-02T00:00:00.000Z")),
        ];
        let b = Bronze::from_events(&messages, "at").unwrap();
        assert_eq!((b.rows, b.keys), (4, 3));
        assert_eq!(
            b.days.keys().collect::<Vec<_>>(),
            ["2024-06-01", "2024-06-02"]
        );
        assert_eq!(b.days["2024-06-02"].len(), 3);
        let first: Value = serde_json::from_str(&b.days["2024-06-02"][0]).unwrap();
        assert_eq!(
            first,
            json!({"id": 1, "at": "2024-06-02 23:59:59.999", "amount": "1.50", "note": "a $ sign"})
        );
    }

    #[rstest]
    #[case(json!({"op": "d", "after": null}), "not a change event")]
    #[case(json!("plain text"), "not a change event")]
    #[case(json!({"after": {"id": 1}}), "no UTC timestamp in `at`")]
    #[case(json!({"after": {"id": 1, "at": "yesterday"}}), "no UTC timestamp in `at`")]
    fn names_events_it_cannot_land(#[case] value: Value, #[case] wanted: &str) {
        let err = Bronze::from_events(&[message(7, value)], "at").unwrap_err();
        assert!(
            err.contains(wanted) && err.contains("partition 0, offset 7"),
            "{err}"
        );
    }
}
