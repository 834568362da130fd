//! Judging the roundtrip: what was consumed against what was sent, message by message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{json, Value};

use super::roundtrip::{Expected, Sent};
use super::{header_map, text};

pub(super) fn seq_of<M: Message>(m: &M) -> Option<usize> {
    m.headers()?
        .iter()
        .find(|h| h.key == "harness-seq")
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// Everything wrong with what was consumed, compared with what was sent: missing or
/// duplicate messages, altered keys, payloads or headers, order within a partition,
/// a key in two partitions, a position other than the acknowledged one.
pub(super) fn verify(sent: &[Sent], got: &[(OwnedMessage, Instant)], run: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut last_in_partition: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partition_of_key: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for (m, _) in got {
        let (p, o) = (m.partition(), m.offset());
        let Some(seq) = seq_of(m).filter(|s| *s < sent.len()) else {
            problems.push(format!(
                "partition {p} offset {o}: no valid harness-seq header"
            ));
            continue;
        };
        let at = format!("message {seq} (partition {p} offset {o})");
        if !seen.insert(seq) {
            problems.push(format!("{at}: received twice"));
        }
        if m.key() != Some(Expected::key(seq).as_bytes()) {
            problems.push(format!("{at}: key {} differs", text(m.key())));
        }
        if m.payload() != Some(Expected::payload(seq).as_slice()) {
            problems.push(format!(
                "{at}: payload differs ({} bytes, expected {})",
                m.payload().map_or(0, <[u8]>::len),
                Expected::payload(seq).len()
            ));
        }
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<(String, Option<Vec<u8>>)> = Expected::headers(seq, run)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Some(v.into_bytes())))
            .collect();
        if headers != expected {
            problems.push(format!(
                "{at}: headers {} differ from {}",
                Value::Object(header_map(m.headers())),
                json!(Expected::headers(seq, run)
                    .into_iter()
                    .collect::<BTreeMap<_, _>>())
            ));
        }
        let s = &sent[seq];
        if (s.partition, s.offset) != (p, o) {
            problems.push(format!(
                "{at}: acknowledged at partition {} offset {}",
                s.partition, s.offset
            ));
        }
        if let Some(prev) = last_in_partition.insert(p, seq) {
            if prev > seq {
                problems.push(format!("{at}: arrived after message {prev}"));
            }
        }
        if let Some(k) = m.key() {
            let first = *partition_of_key.entry(k.to_vec()).or_insert(p);
            if first != p {
                problems.push(format!(
                    "{at}: key {} is also in partition {first}",
                    text(Some(k))
                ));
            }
        }
    }
    if seen.len() < sent.len() {
        let missing: Vec<String> = (0..sent.len())
            .filter(|s| !seen.contains(s))
            .take(10)
            .map(|s| s.to_string())
            .collect();
        problems.push(format!(
            "{} of {} messages never arrived (first: {})",
            sent.len() - seen.len(),
            sent.len(),
            missing.join(", ")
        ));
    }
    problems
}

/// The first few problems; the count says how many more there are.
pub(super) fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut msg = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        msg.push_str(&format!(" (and {} more)", problems.len() - SHOWN));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};
    use rstest::rstest;

    const RUN: &str = "r1";

    fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, &(k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v),
            })
        })
    }

    /// Message `seq` as the broker should hand it back.
    fn message(seq: usize, partition: i32, offset: i64) -> OwnedMessage {
        let h = Expected::headers(seq, RUN);
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        OwnedMessage::new(
            Some(Expected::payload(seq)),
            Some(Expected::key(seq).into_bytes()),
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            Some(headers(&pairs)),
        )
    }

    fn sent(at: &[(i32, i64)]) -> Vec<Sent> {
        let now = Instant::now();
        at.iter()
            .map(|&(partition, offset)| Sent {
                enqueued: now,
                acked: now,
                partition,
                offset,
            })
            .collect()
    }

    fn got(messages: Vec<OwnedMessage>) -> Vec<(OwnedMessage, Instant)> {
        messages.into_iter().map(|m| (m, Instant::now())).collect()
    }

    #[test]
    fn an_intact_exchange_has_no_problems() {
        // Keys 0 and 16 share key-00, hence a partition.
        let s = sent(&[(0, 0), (1, 0), (0, 1)]);
        let g = got(vec![message(1, 1, 0), message(0, 0, 0), message(2, 0, 1)]);
        assert_eq!(verify(&s, &g, RUN), Vec::<String>::new());
    }

    #[rstest]
    #[case::missing(vec![message(0, 0, 0)], "1 of 2 messages never arrived (first: 1)")]
    #[case::twice(vec![message(0, 0, 0), message(0, 0, 0), message(1, 0, 1)], "message 0 (partition 0 offset 0): received twice")]
    #[case::reordered(vec![message(1, 0, 1), message(0, 0, 0)], "message 0 (partition 0 offset 0): arrived after message 1")]
    #[case::moved(vec![message(0, 0, 0), message(1, 1, 0)], "message 1 (partition 1 offset 0): acknowledged at partition 0 offset 1")]
    fn finds_what_went_wrong(#[case] messages: Vec<OwnedMessage>, #[case] problem: &str) {
        let problems = verify(&sent(&[(0, 0), (0, 1)]), &got(messages), RUN);
        assert!(problems.iter().any(|p| p == problem), "{problems:?}");
    }

    #[test]
    fn finds_altered_bytes_keys_and_headers() {
        let altered = message(0, 0, 0)
            .set_payload(Some(b"harness-000000:".to_vec()))
            .set_key(Some(b"key-99".to_vec()))
            .replace_headers(Some(headers(&[
                ("harness-seq", "0"),
                ("harness-run", "other"),
            ])));
        let problems = verify(&sent(&[(0, 0)]), &got(vec![altered]), RUN);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("key \"key-99\" differs"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("payload differs (15 bytes"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("\"harness-run\":\"other\""),
            "{problems:?}"
        );
    }

    #[test]
    fn a_message_without_sequence_number_is_reported() {
        let stray = message(0, 2, 5).replace_headers(None);
        let problems = verify(&sent(&[(0, 0)]), &got(vec![stray]), RUN);
        assert_eq!(
            problems[0],
            "partition 2 offset 5: no valid harness-seq header"
        );
    }

    #[test]
    fn summaries_show_five_problems_and_count_the_rest() {
        let problems: Vec<String> = (1..=7).map(|i| format!("p{i}")).collect();
        assert_eq!(summarize(&problems), "p1; p2; p3; p4; p5 (and 2 more)");
        assert_eq!(summarize(&problems[..2]), "p1; p2");
    }
}
