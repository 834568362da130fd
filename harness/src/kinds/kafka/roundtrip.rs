//! The roundtrip: keyed messages with headers to a topic of its own, read back by a new
//! group while they are produced, verified, committed, timed; the topic is deleted after.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

use super::client::{Diag, Kafka};
use super::group::{commit, committed_and_end, join_group, next_offsets, receive, shortfall};
use super::verify::{seq_of, summarize, verify};
use super::{short_id, RoundtripSpec, StartFrom};
use crate::kinds::StepError;

/// What the roundtrip's message `seq` carries, so the consumer side can recompute and
/// compare every byte.
pub(super) struct Expected;

impl Expected {
    /// 16 keys: several messages per key, so "same key, same partition" is checked too.
    pub(super) fn key(seq: usize) -> String {
        format!("key-{:02}", seq % 16)
    }

    /// Distinct (the sequence number leads), deterministic, and varied in length and in
    /// byte values (not UTF-8), so truncation or re-encoding shows.
    pub(super) fn payload(seq: usize) -> Vec<u8> {
        let mut out = format!("harness-{seq:06}:").into_bytes();
        let mut x = (seq as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for _ in 0..16 + (seq * 37) % 240 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push((x >> 24) as u8);
        }
        out
    }

    pub(super) fn headers(seq: usize, run: &str) -> Vec<(&'static str, String)> {
        vec![
            ("harness-seq", seq.to_string()),
            ("harness-run", run.to_string()),
            ("content-type", "application/octet-stream".to_string()),
        ]
    }
}

/// One produced message as the broker acknowledged it.
pub(super) struct Sent {
    pub(super) enqueued: Instant,
    pub(super) acked: Instant,
    pub(super) partition: i32,
    pub(super) offset: i64,
}

/// Creates a topic, runs the exchange, deletes the topic whatever happened.
pub(super) async fn roundtrip(k: &Kafka, spec: &RoundtripSpec) -> Result<Value, StepError> {
    if spec.messages == 0 || spec.partitions < 1 {
        return Err(StepError::Error(
            "`messages` and `partitions` must be at least 1".into(),
        ));
    }
    let run = short_id();
    let topic = format!("harness-roundtrip-{run}");
    let admin = k.admin()?;
    k.create_topic(&admin, &topic, spec.partitions, false)
        .await?;
    let result = exchange(k, spec, &topic, &run).await;
    let deleted = k.delete_topic(&admin, &topic).await;
    let out = result?;
    deleted?;
    Ok(out)
}

async fn exchange(
    k: &Kafka,
    spec: &RoundtripSpec,
    topic: &str,
    run: &str,
) -> Result<Value, StepError> {
    let n = spec.messages;
    let deadline = tokio::time::Instant::now() + spec.within;
    // Created first: a new idempotent producer fetches its producer id in the background
    // (a few hundred ms) while the consumer joins its group.
    let producer = k.producer(spec.within)?;
    let group = format!("harness-roundtrip-{run}");
    let consumer = k.subscriber(&group, StartFrom::Earliest, topic)?;
    // Join the group before producing, so end-to-end latency measures delivery rather
    // than the group's first rebalance.
    let Some(early) = join_group(&consumer, deadline).await else {
        return Err(StepError::Failure(k.message(
            format!("consumer group `{group}`"),
            format!(
                "no partitions of `{topic}` assigned within {}",
                humantime::format_duration(spec.within)
            ),
        )));
    };
    // Produce and consume at once; a produce error ends both.
    let (sent, (later, last_error)) =
        futures::future::try_join(send_all(k, &producer, topic, n, run), async {
            Ok(receive(&consumer, n.saturating_sub(early.len()), deadline).await)
        })
        .await?;
    let got: Vec<_> = early.into_iter().chain(later).collect();
    if got.len() < n {
        return Err(StepError::Failure(shortfall(
            k,
            topic,
            got.len(),
            n,
            spec.within,
            last_error,
        )));
    }
    let mut problems = verify(&sent, &got, run);

    let mut next = next_offsets(&got);
    for p in 0..spec.partitions {
        next.entry(p).or_insert(0);
    }
    commit(k, &consumer, topic, &next).await?;
    let committed = committed_and_end(k, &consumer, topic, spec.partitions).await?;
    for (p, (c, end)) in committed.iter().enumerate() {
        if *c != Some(*end) {
            let c = c.map_or("none".to_string(), |c| c.to_string());
            problems.push(format!(
                "partition {p}: committed offset {c}, end offset {end}"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(StepError::Failure(
            k.message(format!("roundtrip on `{topic}`"), summarize(&problems)),
        ));
    }

    let mut per_partition = vec![0usize; spec.partitions as usize];
    for (m, _) in &got {
        if let Some(c) = per_partition.get_mut(m.partition() as usize) {
            *c += 1;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let produce_ms: Vec<f64> = sent.iter().map(|s| ms(s.acked - s.enqueued)).collect();
    let e2e_ms: Vec<f64> = got
        .iter()
        .filter_map(|(m, at)| {
            let s = sent.get(seq_of(m)?)?;
            Some(ms(at.saturating_duration_since(s.enqueued)))
        })
        .collect();
    Ok(json!({
        "topic": topic,
        "partitions": spec.partitions,
        "produced": sent.len(),
        "consumed": got.len(),
        "per_partition": per_partition,
        "committed": committed.iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "produce_latency_ms": p50_max(produce_ms),
        "end_to_end_latency_ms": p50_max(e2e_ms),
    }))
}

/// Sends message 0 alone, then enqueues the others in sequence order (the order per
/// partition the consumer must see) and waits for every acknowledgement. Message 0 pays
/// for the producer's start (connections, its idempotent producer id), so the median
/// latency is that of a producer at work; the maximum shows the start.
async fn send_all(
    k: &Kafka,
    producer: &FutureProducer<Diag>,
    topic: &str,
    n: usize,
    run: &str,
) -> Result<Vec<Sent>, StepError> {
    let mut sent = Vec::with_capacity(n);
    sent.extend(send_batch(k, producer, topic, 0..1, run).await?);
    sent.extend(send_batch(k, producer, topic, 1..n, run).await?);
    Ok(sent)
}

async fn send_batch(
    k: &Kafka,
    producer: &FutureProducer<Diag>,
    topic: &str,
    seqs: std::ops::Range<usize>,
    run: &str,
) -> Result<Vec<Sent>, StepError> {
    let what = |seq: usize| format!("producing message {seq} to `{topic}`");
    let mut pending = Vec::with_capacity(seqs.len());
    for seq in seqs.clone() {
        let key = Expected::key(seq);
        let payload = Expected::payload(seq);
        let headers =
            Expected::headers(seq, run)
                .iter()
                .fold(OwnedHeaders::new(), |h, (name, v)| {
                    h.insert(Header {
                        key: name,
                        value: Some(v),
                    })
                });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let enqueued = Instant::now();
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| k.error(what(seq), e))?;
        pending.push(async move { (enqueued, delivery.await, Instant::now()) });
    }
    let mut sent = Vec::with_capacity(pending.len());
    for (seq, (enqueued, result, acked)) in seqs.zip(futures::future::join_all(pending).await) {
        let d = k.delivered(what(seq), result)?;
        sent.push(Sent {
            enqueued,
            acked,
            partition: d.partition,
            offset: d.offset,
        });
    }
    Ok(sent)
}

/// `{p50, max}` in milliseconds, to 0.1 ms; nearest-rank median.
fn p50_max(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return json!({"p50": null, "max": null});
    }
    values.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let p50 = values[(values.len() - 1) / 2];
    let max = values[values.len() - 1];
    json!({"p50": round(p50), "max": round(max)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::BTreeSet;

    #[test]
    fn payloads_are_distinct_and_deterministic() {
        let all: BTreeSet<Vec<u8>> = (0..1000).map(Expected::payload).collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(Expected::payload(7), Expected::payload(7));
        assert!(std::str::from_utf8(&Expected::payload(3)).is_err());
    }

    #[rstest]
    #[case(vec![], json!({"p50": null, "max": null}))]
    #[case(vec![3.0], json!({"p50": 3.0, "max": 3.0}))]
    #[case(vec![9.0, 1.04, 5.0, 2.0], json!({"p50": 2.0, "max": 9.0}))]
    #[case(vec![1.26, 0.5, 7.0], json!({"p50": 1.3, "max": 7.0}))]
    fn median_and_maximum(#[case] values: Vec<f64>, #[case] expected: Value) {
        assert_eq!(p50_max(values), expected);
    }
}
