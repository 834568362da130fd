//! The CDC round trip: a table of its own in PostgreSQL, a Debezium connector capturing it
//! into a topic of its own, three changes (INSERT, UPDATE, DELETE) each read back from
//! Kafka with the right envelope, in order, timed from commit to event. Everything it made
//! (connector, replication slot, publication, topic, table) is removed after, also when a
//! step failed.

use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use serde_json::{json, Map, Value};
use tokio_postgres::Client;

use super::rest::Rest;
use super::{database_settings, toml_text, CdcSpec};
use crate::kinds::kafka::client::{Diag, Kafka};
use crate::kinds::postgres::{connect, describe};
use crate::kinds::{unique_id, StepContext, StepError};

/// How long the worker may take to let go of the slot once the connector is deleted.
const SLOT_RELEASE: Duration = Duration::from_secs(15);

/// The scratch objects of one round trip, all named after its run id.
struct Names {
    table: String,
    publication: String,
    slot: String,
    connector: String,
    topic: String,
}

impl Names {
    fn new(run: &str) -> Self {
        let table = format!("harness_cdc_{run}");
        let prefix = format!("harness_cdc_{run}");
        Self {
            topic: format!("{prefix}.public.{table}"),
            publication: format!("harness_pub_{run}"),
            slot: format!("harness_slot_{run}"),
            connector: format!("harness-cdc-{run}"),
            table,
        }
    }

    fn prefix(&self) -> String {
        self.topic
            .split(".public.")
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// One change made in PostgreSQL and the event Debezium must make of it.
struct Change {
    what: &'static str,
    sql: &'static str,
    op: &'static str,
    before: Value,
    after: Value,
}

fn changes() -> Vec<Change> {
    let alpha = json!({"id": 1, "name": "alpha", "amount": 10});
    let beta = json!({"id": 1, "name": "beta", "amount": 20});
    vec![
        Change {
            what: "INSERT",
            sql: "INSERT INTO public.{t} (id, name, amount) VALUES (1, 'alpha', 10)",
            op: "c",
            before: Value::Null,
            after: alpha.clone(),
        },
        Change {
            what: "UPDATE",
            sql: "UPDATE public.{t} SET name = 'beta', amount = 20 WHERE id = 1",
            op: "u",
            before: alpha,
            after: beta.clone(),
        },
        Change {
            what: "DELETE",
            sql: "DELETE FROM public.{t} WHERE id = 1",
            op: "d",
            before: beta,
            after: Value::Null,
        },
    ]
}

pub(super) async fn roundtrip(
    cx: &StepContext<'_>,
    rest: &Rest,
    spec: &CdcSpec,
) -> Result<Value, StepError> {
    let names = Names::new(&unique_id(8));
    let pg_cx = StepContext {
        endpoint: cx.endpoint_of(&spec.postgres)?,
        endpoints: cx.endpoints,
        vars: cx.vars,
        shell: cx.shell,
        probe: cx.probe,
    };
    let pg = connect(&pg_cx).await?;
    let kafka_ep = cx.endpoint_of(&spec.kafka)?;
    let kafka = Kafka::of(kafka_ep)?;
    let result = capture(cx, rest, spec, &names, &pg, &kafka).await;
    let cleaned = cleanup(rest, &names, &pg, &kafka).await;
    let out = result?;
    cleaned?;
    Ok(out)
}

async fn capture(
    cx: &StepContext<'_>,
    rest: &Rest,
    spec: &CdcSpec,
    n: &Names,
    pg: &Client,
    kafka: &Kafka,
) -> Result<Value, StepError> {
    let sql_err = |what: &str| {
        let what = what.to_string();
        move |e: tokio_postgres::Error| {
            StepError::Error(format!("postgres: {what}: {}", describe(&e)))
        }
    };
    let wal_level: String = pg
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(sql_err("SHOW wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(StepError::Failure(format!(
            "postgres: wal_level is `{wal_level}`: Debezium reads changes through logical \
             decoding, which needs wal_level=logical (server option `-c wal_level=logical`)"
        )));
    }
    // REPLICA IDENTITY FULL: UPDATE and DELETE events then carry the whole old row.
    pg.batch_execute(&format!(
        "CREATE TABLE public.{t} (id int PRIMARY KEY, name text NOT NULL, amount int NOT NULL);\
         ALTER TABLE public.{t} REPLICA IDENTITY FULL;",
        t = n.table
    ))
    .await
    .map_err(sql_err("creating the table"))?;
    let publication = if spec.publish_table {
        format!(
            "CREATE PUBLICATION {} FOR TABLE public.{}",
            n.publication, n.table
        )
    } else {
        format!("CREATE PUBLICATION {}", n.publication)
    };
    pg.batch_execute(&publication)
        .await
        .map_err(sql_err("creating the publication"))?;

    // The topic exists before the connector does, so the reader has a partition to read
    // from the start (a topic created by the worker's first write would be seen late).
    let admin = kafka.admin()?;
    kafka.create_topic(&admin, &n.topic, 1, false).await?;
    let consumer = kafka.partition_reader(&n.topic)?;

    let mut config = Map::new();
    for (k, v) in [
        (
            "connector.class",
            "io.debezium.connector.postgresql.PostgresConnector",
        ),
        ("tasks.max", "1"),
        ("plugin.name", "pgoutput"),
        ("slot.drop.on.stop", "true"),
        ("publication.autocreate.mode", "disabled"),
        ("snapshot.mode", "no_data"),
        ("tombstones.on.delete", "false"),
        (
            "key.converter",
            "org.apache.kafka.connect.json.JsonConverter",
        ),
        ("key.converter.schemas.enable", "false"),
        (
            "value.converter",
            "org.apache.kafka.connect.json.JsonConverter",
        ),
        ("value.converter.schemas.enable", "false"),
    ] {
        config.insert(k.into(), json!(v));
    }
    for (k, v) in spec.connector.iter().flatten() {
        config.insert(k.clone(), json!(toml_text(v)));
    }
    config.insert("slot.name".into(), json!(n.slot));
    config.insert("publication.name".into(), json!(n.publication));
    config.insert("topic.prefix".into(), json!(n.prefix()));
    config.insert(
        "table.include.list".into(),
        json!(format!("public.{}", n.table)),
    );
    for (k, v) in database_settings(cx, &spec.postgres)? {
        config.insert(k, json!(v));
    }
    let started = Instant::now();
    rest.put_config(&n.connector, &config).await?;
    rest.wait_running(&n.connector, spec.within).await?;
    let running = started.elapsed();
    wait_slot_active(pg, &n.slot, spec.within.saturating_sub(running)).await?;
    let streaming = started.elapsed();

    let mut events = Vec::new();
    let mut last_offset = -1;
    for change in changes() {
        pg.batch_execute(&change.sql.replace("{t}", &n.table))
            .await
            .map_err(sql_err(change.what))?;
        let committed = Instant::now();
        let (offset, event) = match next_event(&consumer, spec.within).await {
            Ok(Some(got)) => got,
            Ok(None) => {
                return Err(StepError::Failure(format!(
                    "no change event for the {} on `{}` within {} s{}",
                    change.what,
                    n.topic,
                    spec.within.as_secs(),
                    why_silent(pg, rest, n).await
                )))
            }
            Err(e) => return Err(kafka.error(format!("reading `{}`", n.topic), e)),
        };
        let latency = committed.elapsed();
        let envelope = event
            .get("payload")
            .filter(|p| p.is_object())
            .unwrap_or(&event);
        check_event(&change, envelope, offset, last_offset)?;
        last_offset = offset;
        events.push(json!({
            "op": change.op,
            "offset": offset,
            "latency_ms": ms(latency),
            "lsn": envelope["source"]["lsn"],
        }));
    }
    let latencies: Vec<f64> = events
        .iter()
        .filter_map(|e| e["latency_ms"].as_f64())
        .collect();
    Ok(json!({
        "connector": n.connector,
        "table": format!("public.{}", n.table),
        "topic": n.topic,
        "slot": n.slot,
        "publication": n.publication,
        "running_seconds": secs(running),
        "streaming_seconds": secs(streaming),
        "events": events,
        "latency_ms": { "p50": median(&latencies), "max": latencies.iter().cloned().fold(0.0, f64::max) },
    }))
}

/// The event matches the change: its `op`, `before` and `after`, after the previous one.
fn check_event(change: &Change, envelope: &Value, offset: i64, last: i64) -> Result<(), StepError> {
    let got = |field: &str| envelope.get(field).cloned().unwrap_or(Value::Null);
    let wrong = |field: &str, want: &Value| {
        StepError::Failure(format!(
            "the {} gave an event with {field} {} (want {}) at offset {offset}",
            change.what,
            crate::kinds::show(&got(field)),
            crate::kinds::show(want)
        ))
    };
    if got("op") != json!(change.op) {
        return Err(wrong("op", &json!(change.op)));
    }
    if got("before") != change.before {
        return Err(wrong("before", &change.before));
    }
    if got("after") != change.after {
        return Err(wrong("after", &change.after));
    }
    if offset <= last {
        return Err(StepError::Failure(format!(
            "the {} event came at offset {offset}, not after the previous one ({last})",
            change.what
        )));
    }
    Ok(())
}

/// Why no event came, as far as PostgreSQL and the worker can tell.
async fn why_silent(pg: &Client, rest: &Rest, n: &Names) -> String {
    let mut why = Vec::new();
    let published = pg
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = 'public' AND tablename = $2",
            &[&n.publication, &n.table],
        )
        .await;
    if let Ok(None) = published {
        why.push(format!(
            "table public.{} is not in publication {} (pg_publication_tables), so pgoutput sends none of its changes",
            n.table, n.publication
        ));
    }
    if let Ok(row) = pg
        .query_opt(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&n.slot],
        )
        .await
    {
        match row.map(|r| r.get::<_, bool>(0)) {
            None => why.push(format!("replication slot {} does not exist", n.slot)),
            Some(false) => why.push(format!("replication slot {} has no reader", n.slot)),
            Some(true) => {}
        }
    }
    if let Err(e) = rest.wait_running(&n.connector, Duration::ZERO).await {
        why.push(e.message().to_string());
    }
    if why.is_empty() {
        String::new()
    } else {
        format!(": {}", why.join("; "))
    }
}

async fn wait_slot_active(pg: &Client, slot: &str, within: Duration) -> Result<(), StepError> {
    let started = Instant::now();
    loop {
        let row = pg
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map_err(|e| {
                StepError::Error(format!(
                    "postgres: reading pg_replication_slots: {}",
                    describe(&e)
                ))
            })?;
        let state = match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => return Ok(()),
            Some(false) => "exists, no reader",
            None => "not created",
        };
        if started.elapsed() >= within {
            return Err(StepError::Failure(format!(
                "postgres: replication slot {slot} not streaming within {} s ({state})",
                within.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes what the round trip made; every part is tried, the first error returned.
async fn cleanup(rest: &Rest, n: &Names, pg: &Client, kafka: &Kafka) -> Result<(), StepError> {
    let mut first: Option<StepError> = None;
    let mut keep = |r: Result<(), StepError>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    keep(rest.delete(&n.connector).await.map(|_| ()));
    // The task drops its slot when it stops (slot.drop.on.stop); one it left is dropped
    // here once released.
    let started = Instant::now();
    loop {
        let row = pg
            .query_opt(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&n.slot],
            )
            .await;
        match row {
            Ok(None) => break,
            Ok(Some(r)) if !r.get::<_, bool>(0) => {
                keep(
                    pg.execute("SELECT pg_drop_replication_slot($1)", &[&n.slot])
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            StepError::Error(format!(
                                "postgres: dropping slot {}: {}",
                                n.slot,
                                describe(&e)
                            ))
                        }),
                );
                break;
            }
            Ok(Some(_)) if started.elapsed() < SLOT_RELEASE => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(Some(_)) => {
                keep(Err(StepError::Error(format!(
                    "postgres: replication slot {} still in use {} s after its connector was deleted",
                    n.slot,
                    SLOT_RELEASE.as_secs()
                ))));
                break;
            }
            Err(e) => {
                keep(Err(StepError::Error(format!(
                    "postgres: reading pg_replication_slots: {}",
                    describe(&e)
                ))));
                break;
            }
        }
    }
    keep(
        pg.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS public.{};",
            n.publication, n.table
        ))
        .await
        .map_err(|e| {
            StepError::Error(format!(
                "postgres: dropping publication and table: {}",
                describe(&e)
            ))
        }),
    );
    keep(match kafka.admin() {
        Ok(admin) => kafka.delete_topic(&admin, &n.topic).await,
        Err(e) => Err(e),
    });
    first.map_or(Ok(()), Err)
}

/// The next event with a value (tombstones skipped), or `None` after `within`.
async fn next_event(
    c: &StreamConsumer<Diag>,
    within: Duration,
) -> Result<Option<(i64, Value)>, String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(m)) => m,
        };
        let Some(payload) = m.payload() else { continue };
        let v: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("offset {}: the event is not JSON: {e}", m.offset()))?;
        return Ok(Some((m.offset(), v)));
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_postgres() {
        let (a, b) = (Names::new(&unique_id(8)), Names::new(&unique_id(8)));
        assert_ne!(a.slot, b.slot);
        // PostgreSQL identifiers: 63 bytes, lower case for unquoted names.
        for name in [&a.table, &a.slot, &a.publication] {
            assert!(
                name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
        assert_eq!(a.topic, format!("{}.public.{}", a.prefix(), a.table));
    }

    #[test]
    fn an_event_with_the_wrong_op_or_order_fails() {
        let changes = changes();
        let insert = &changes[0];
        let good =
            json!({"op": "c", "before": null, "after": {"id": 1, "name": "alpha", "amount": 10}});
        assert!(check_event(insert, &good, 0, -1).is_ok());
        let mut bad = good.clone();
        bad["op"] = json!("r");
        let err = check_event(insert, &bad, 0, -1).unwrap_err();
        assert!(err.message().contains("op \"r\" (want \"c\")"), "{err:?}");
        assert!(check_event(insert, &good, 3, 3).is_err());
    }

    #[rstest::rstest]
    #[case(&[], 0.0)]
    #[case(&[3.0, 1.0, 2.0], 2.0)]
    #[case(&[4.0, 1.0], 2.5)]
    fn medians(#[case] xs: &[f64], #[case] m: f64) {
        assert_eq!(median(xs), m);
    }
}
