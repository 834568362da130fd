//! Kafka checks with rdkafka (librdkafka), the client most Rust services use.
//!
//! librdkafka retries forever by default. Every client here has socket, request and
//! delivery timeouts and every wait is bounded, so an unreachable broker is an error
//! within seconds instead of a hang.

#[cfg(feature = "run")]
pub(super) mod client;
#[cfg(feature = "run")]
mod group;
#[cfg(feature = "run")]
mod roundtrip;
#[cfg(feature = "run")]
pub(super) mod steps;
#[cfg(feature = "run")]
mod verify;

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "run")]
use rdkafka::message::{Header, Headers};
use schemars::JsonSchema;
use serde::Deserialize;
#[cfg(feature = "run")]
use serde_json::{json, Map, Value};

#[cfg(feature = "run")]
use super::Run;
use super::{Action, KindInfo};
#[cfg(feature = "run")]
use super::{StepContext, StepError};
#[cfg(feature = "run")]
use client::Kafka;
#[cfg(feature = "run")]
use futures::future::BoxFuture;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KafkaAction {
    /// Cluster metadata: `{brokers, topics, partitions}`.
    Topics(super::NoArgs),
    /// Produce messages (creating the topic if missing): `{topic, count, messages}`.
    Produce(ProduceSpec),
    /// Consume `count` messages within a deadline: `{messages, count}`.
    Consume(ConsumeSpec),
    /// Produce keyed messages with headers to a new topic, read them back, verify
    /// everything, commit, delete the topic.
    Roundtrip(RoundtripSpec),
    /// Delete a topic (clean-up after a pipeline): `{topic}`.
    DeleteTopic(DeleteTopicSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteTopicSpec {
    pub topic: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceSpec {
    pub topic: String,
    pub messages: Vec<MessageSpec>,
    /// Partitions of the topic if this step creates it (default 1).
    #[serde(default = "one")]
    pub partitions: i32,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    pub key: Option<String>,
    pub value: Option<String>,
    #[serde(default)]
    pub headers: HeadersSpec,
}

/// Headers as a table (`{ k = "v" }`, the common case) or as a list keeping order and
/// repeated names (`[{ key = "k", value = "v" }, { key = "k", value = "w" }]`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "headers as a table { name = \"value\" } or a list [{ key = \"name\", value = \"value\" }]"
)]
pub enum HeadersSpec {
    Map(BTreeMap<String, String>),
    List(Vec<HeaderSpec>),
}

impl Default for HeadersSpec {
    fn default() -> Self {
        Self::Map(BTreeMap::new())
    }
}

impl HeadersSpec {
    /// `(name, value)` in the order they are sent: the list's, or the table's (sorted).
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        match self {
            Self::Map(m) => m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            Self::List(l) => l
                .iter()
                .map(|h| (h.key.as_str(), h.value.as_str()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumeSpec {
    pub topic: String,
    /// Consumer group (default: a new one per run, so nothing was committed before).
    pub group: Option<String>,
    pub count: usize,
    #[serde(default = "consume_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
    #[serde(default)]
    pub from: StartFrom,
}

/// Where a group without committed offsets starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundtripSpec {
    #[serde(default = "default_messages")]
    pub messages: usize,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "roundtrip_within", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub within: Duration,
}

fn one() -> i32 {
    1
}
fn default_messages() -> usize {
    100
}
fn default_partitions() -> i32 {
    3
}
fn consume_within() -> Duration {
    Duration::from_secs(20)
}
fn roundtrip_within() -> Duration {
    Duration::from_secs(30)
}

impl KafkaAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Topics(_) => "topics",
            Self::Produce(_) => "produce",
            Self::Consume(_) => "consume",
            Self::Roundtrip(_) => "roundtrip",
            Self::DeleteTopic(_) => "delete_topic",
        }
    }

    #[cfg(feature = "run")]
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let kafka = Kafka::new(cx)?;
        // Every verb starts by asking for metadata: it fails fast, with the cause, when
        // the broker cannot be reached.
        let metadata = kafka.metadata().await?;
        match self {
            // Only this verb tries the advertised addresses: the others would pay for it.
            Self::Topics(_) => {
                let mut metadata = metadata;
                client::mark_reachable(&mut metadata).await;
                Ok(metadata)
            }
            Self::Produce(spec) => steps::produce(&kafka, cx, spec).await,
            Self::Consume(spec) => steps::consume(&kafka, cx, spec).await,
            Self::Roundtrip(spec) => roundtrip::roundtrip(&kafka, spec).await,
            Self::DeleteTopic(spec) => {
                let topic = cx.render(&spec.topic)?;
                kafka.delete_topic(&kafka.admin()?, &topic).await?;
                Ok(serde_json::json!({ "topic": topic }))
            }
        }
    }
}

impl KindInfo for KafkaAction {
    const NAMESPACE: &'static str = "kafka";
    const DEFAULT_SERVICE: Option<&'static str> = Some("kafka");
}

impl Action for KafkaAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}

#[cfg(feature = "run")]
impl Run for KafkaAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

// Shared by the steps, the roundtrip and its verification.

/// A header value as text; not-UTF-8 bytes are replaced, absent values are null.
#[cfg(feature = "run")]
fn header_map<H: Headers>(headers: Option<&H>) -> Map<String, Value> {
    headers
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| {
                    let v = value.map_or(Value::Null, |v| json!(String::from_utf8_lossy(v)));
                    (key.to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every header in order, repeated names kept: `[{key, value}]` (the map keeps only the
/// last value of a repeated name).
#[cfg(feature = "run")]
fn header_list<H: Headers>(headers: Option<&H>) -> Vec<Value> {
    headers
        .map(|h| {
            h.iter()
                .map(|Header { key, value }| json!({"key": key, "value": text(value)}))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(feature = "run")]
fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| json!(String::from_utf8_lossy(b)))
}

#[cfg(feature = "run")]
fn short_id() -> String {
    super::unique_id(8)
}

#[cfg(all(test, feature = "run"))]
mod tests {
    use super::*;
    use rstest::rstest;

    #[derive(Deserialize, JsonSchema)]
    struct Step {
        kafka: KafkaAction,
    }

    fn parse(toml_text: &str) -> Result<KafkaAction, String> {
        toml::from_str::<Step>(toml_text)
            .map(|s| s.kafka)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn verbs_take_their_defaults() {
        match parse("kafka.roundtrip = {}").unwrap() {
            KafkaAction::Roundtrip(r) => {
                assert_eq!((r.messages, r.partitions), (100, 3));
                assert_eq!(r.within, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"kafka.consume = { topic = "t", count = 2, from = "latest" }"#).unwrap() {
            KafkaAction::Consume(c) => {
                assert_eq!((c.count, c.from, c.group), (2, StartFrom::Latest, None));
                assert_eq!(c.within, Duration::from_secs(20));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("kafka.topics = {}").unwrap().verb(), "topics");
    }

    #[rstest]
    #[case::map("{ b = \"2\", a = \"1\" }", &[("a", "1"), ("b", "2")])]
    #[case::list(
        "[{ key = \"k\", value = \"v\" }, { key = \"a\", value = \"x\" }, { key = \"k\", value = \"w\" }]",
        &[("k", "v"), ("a", "x"), ("k", "w")]
    )]
    #[case::empty_list("[]", &[])]
    fn headers_keep_order_and_repeats(#[case] headers: &str, #[case] pairs: &[(&str, &str)]) {
        let src =
            format!("kafka.produce = {{ topic = \"t\", messages = [{{ headers = {headers} }}] }}");
        let KafkaAction::Produce(p) = parse(&src).unwrap() else {
            panic!("not a produce")
        };
        assert_eq!(p.messages[0].headers.pairs(), pairs);
    }

    #[test]
    fn consumed_headers_as_map_and_ordered_list() {
        use rdkafka::message::OwnedHeaders;
        let h = OwnedHeaders::new()
            .insert(Header {
                key: "k",
                value: Some("v"),
            })
            .insert(Header {
                key: "a",
                value: None::<&str>,
            })
            .insert(Header {
                key: "k",
                value: Some("w"),
            });
        assert_eq!(
            Value::Array(header_list(Some(&h))),
            json!([{"key": "k", "value": "v"}, {"key": "a", "value": null}, {"key": "k", "value": "w"}])
        );
        // The map is unchanged: one value per name, the last one.
        assert_eq!(
            Value::Object(header_map(Some(&h))),
            json!({"k": "w", "a": null})
        );
        assert!(header_list(None::<&OwnedHeaders>).is_empty());
    }

    #[rstest]
    #[case("kafka.roundtrip = { mesages = 5 }", "unknown field `mesages`")]
    #[case("kafka.consume = { topic = \"t\" }", "missing field `count`")]
    #[case(
        "kafka.consume = { topic = \"t\", count = 1, from = \"start\" }",
        "unknown variant `start`"
    )]
    #[case(
        "kafka.produce = { topic = \"t\", messages = [{ val = \"v\" }] }",
        "unknown field `val`"
    )]
    #[case("kafka.publish = {}", "unknown variant `publish`")]
    #[case(
        "kafka.produce = { topic = \"t\", messages = [{ headers = [{ name = \"k\", value = \"v\" }] }] }",
        "headers as a table"
    )]
    #[case(
        "kafka.produce = { topic = \"t\", messages = [{ headers = \"k=v\" }] }",
        "headers as a table"
    )]
    fn rejects_mistakes(#[case] text: &str, #[case] expected: &str) {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}
