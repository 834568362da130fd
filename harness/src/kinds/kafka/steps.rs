//! The user-level verbs `produce` and `consume`, with suite-given topics, keys, values
//! and headers.

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};

use super::client::{Kafka, DELIVERY_TIMEOUT};
use super::group::{commit, next_offsets, receive, shortfall};
use super::{header_list, header_map, short_id, text, ConsumeSpec, ProduceSpec};
use crate::kinds::{StepContext, StepError};

pub(super) async fn produce(
    k: &Kafka,
    cx: &StepContext<'_>,
    spec: &ProduceSpec,
) -> Result<Value, StepError> {
    let topic = cx.render(&spec.topic)?;
    if spec.partitions < 1 {
        return Err(StepError::Error("`partitions` must be at least 1".into()));
    }
    let mut messages = Vec::with_capacity(spec.messages.len());
    for m in &spec.messages {
        let key = m.key.as_deref().map(|t| cx.render(t)).transpose()?;
        let value = m.value.as_deref().map(|t| cx.render(t)).transpose()?;
        let mut headers = OwnedHeaders::new();
        for (name, v) in m.headers.pairs() {
            let v = cx.render(v)?;
            headers = headers.insert(Header {
                key: name,
                value: Some(&v),
            });
        }
        messages.push(Outgoing {
            key,
            value,
            headers,
        });
    }
    // Explicitly, not by auto-create: platforms often turn auto-create off.
    k.create_topic(&k.admin()?, &topic, spec.partitions, true)
        .await?;
    let keys: Vec<Option<String>> = messages.iter().map(|m| m.key.clone()).collect();
    let delivered = send(k, &topic, messages).await?;
    let out: Vec<Value> = keys
        .into_iter()
        .zip(delivered)
        .map(|(key, (partition, offset))| json!({"key": key, "partition": partition, "offset": offset}))
        .collect();
    Ok(json!({"topic": topic, "count": out.len(), "messages": out}))
}

/// One message as it goes out: rendered, or data that never was a template.
pub(in crate::kinds) struct Outgoing {
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: OwnedHeaders,
}

/// Sends every message to `topic` (which must exist) from one idempotent producer, all in
/// flight at once, and waits for each acknowledgement: its (partition, offset), in order.
pub(in crate::kinds) async fn send(
    k: &Kafka,
    topic: &str,
    messages: Vec<Outgoing>,
) -> Result<Vec<(i32, i64)>, StepError> {
    let producer = k.producer(DELIVERY_TIMEOUT)?;
    let what = |i: usize| format!("producing message {} to `{topic}`", i + 1);
    let mut pending = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let mut record = FutureRecord::<String, String>::to(topic).headers(m.headers);
        if let Some(key) = &m.key {
            record = record.key(key);
        }
        if let Some(value) = &m.value {
            record = record.payload(value);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| k.error(what(i), e))?;
        pending.push(delivery);
    }
    let mut out = Vec::with_capacity(pending.len());
    for (i, delivery) in pending.into_iter().enumerate() {
        let d = k.delivered(what(i), delivery.await)?;
        out.push((d.partition, d.offset));
    }
    Ok(out)
}

pub(super) async fn consume(
    k: &Kafka,
    cx: &StepContext<'_>,
    spec: &ConsumeSpec,
) -> Result<Value, StepError> {
    let topic = cx.render(&spec.topic)?;
    let group = match &spec.group {
        Some(g) => cx.render(g)?,
        None => format!("harness-consume-{}", short_id()),
    };
    let consumer = k.subscriber(&group, spec.from, &topic)?;
    let deadline = tokio::time::Instant::now() + spec.within;
    let (got, last_error) = receive(&consumer, spec.count, deadline).await;
    if got.len() < spec.count {
        return Err(StepError::Failure(shortfall(
            k,
            &topic,
            got.len(),
            spec.count,
            spec.within,
            last_error,
        )));
    }
    commit(k, &consumer, &topic, &next_offsets(&got)).await?;
    let messages: Vec<Value> = got
        .iter()
        .map(|(m, _)| {
            json!({
                "key": text(m.key()),
                "value": text(m.payload()),
                "headers": header_map(m.headers()),
                "header_list": header_list(m.headers()),
                "partition": m.partition(),
                "offset": m.offset(),
            })
        })
        .collect();
    Ok(json!({"topic": topic, "group": group, "count": messages.len(), "messages": messages}))
}
