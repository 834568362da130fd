//! The consumer-group side, shared by `consume` and the roundtrip: joining, receiving
//! within a deadline, committing, and reading commits back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{blocking, Diag, Kafka, REQUEST_TIMEOUT};
use crate::kinds::StepError;

/// "received 97 of 100 messages from `t` within 30 s (last consumer error: ...)".
pub(super) fn shortfall(
    k: &Kafka,
    topic: &str,
    got: usize,
    want: usize,
    within: Duration,
    last_error: Option<String>,
) -> String {
    let mut msg = format!(
        "kafka at {}: received {got} of {want} messages from `{topic}` within {}",
        k.addr,
        humantime::format_duration(within)
    );
    if let Some(e) = last_error {
        msg.push_str(&format!(" (last consumer error: {e})"));
    }
    msg
}

/// Up to `count` messages with the instant each arrived, until the deadline. Consumer
/// errors (an unknown topic, a broker reconnecting) are transient to librdkafka: the
/// last one is returned for the message in case too few arrive.
pub(super) async fn receive(
    consumer: &StreamConsumer<Diag>,
    count: usize,
    deadline: tokio::time::Instant,
) -> (Vec<(OwnedMessage, Instant)>, Option<String>) {
    let mut got = Vec::new();
    let mut last_error = None;
    while got.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => got.push((m.detach(), Instant::now())),
            Ok(Err(e)) => last_error = Some(e.to_string()),
            Err(_) => break,
        }
    }
    (got, last_error)
}

/// Polls until the group gives this consumer its partitions; `None` at the deadline.
/// Messages arriving meanwhile (none: the topic is new) are kept.
pub(super) async fn join_group(
    consumer: &StreamConsumer<Diag>,
    deadline: tokio::time::Instant,
) -> Option<Vec<(OwnedMessage, Instant)>> {
    let mut early = Vec::new();
    loop {
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            return Some(early);
        }
        // Rebalance callbacks run inside the consumer's poll, hence the short slices.
        let slice = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
        match tokio::time::timeout_at(slice, consumer.recv()).await {
            Ok(Ok(m)) => early.push((m.detach(), Instant::now())),
            Ok(Err(_)) => {}
            Err(_) if slice >= deadline => return None,
            Err(_) => {}
        }
    }
}

/// Next offset of each partition of `topic` after the messages consumed.
pub(super) fn next_offsets(got: &[(OwnedMessage, Instant)]) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (m, _) in got {
        let e = next.entry(m.partition()).or_default();
        *e = (*e).max(m.offset() + 1);
    }
    next
}

/// Commits synchronously, so what is committed can be read back at once.
pub(super) async fn commit(
    k: &Kafka,
    consumer: &Arc<StreamConsumer<Diag>>,
    topic: &str,
    next: &BTreeMap<i32, i64>,
) -> Result<(), StepError> {
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .map_err(|e| k.error("building the offsets to commit", e))?;
    }
    let c = consumer.clone();
    blocking(move || c.commit(&tpl, CommitMode::Sync))
        .await?
        .map_err(|e| k.error(format!("committing offsets of `{topic}`"), e))
}

/// Committed offset (`None` if nothing is committed) and end offset of each partition.
pub(super) async fn committed_and_end(
    k: &Kafka,
    consumer: &Arc<StreamConsumer<Diag>>,
    topic: &str,
    partitions: i32,
) -> Result<Vec<(Option<i64>, i64)>, StepError> {
    let c = consumer.clone();
    let t = topic.to_string();
    blocking(move || {
        let mut query = TopicPartitionList::new();
        for p in 0..partitions {
            query.add_partition(&t, p);
        }
        let committed = c.committed_offsets(query, REQUEST_TIMEOUT)?;
        (0..partitions)
            .map(|p| {
                let offset = match committed.find_partition(&t, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                let (_, end) = c.fetch_watermarks(&t, p, REQUEST_TIMEOUT)?;
                Ok((offset, end))
            })
            .collect::<Result<Vec<_>, KafkaError>>()
    })
    .await?
    .map_err(|e| k.error(format!("reading committed and end offsets of `{topic}`"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Timestamp;

    fn at(partition: i32, offset: i64) -> (OwnedMessage, Instant) {
        let m = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        );
        (m, Instant::now())
    }

    #[test]
    fn next_offsets_follow_the_last_message_of_each_partition() {
        let got = vec![at(0, 4), at(2, 9), at(0, 5)];
        assert_eq!(next_offsets(&got), BTreeMap::from([(0, 6), (2, 10)]));
    }
}
