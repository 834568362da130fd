//! Kafka checks with rdkafka (librdkafka), the client most Rust services use.
//!
//! librdkafka retries forever by default. Every client here has socket, request and
//! delivery timeouts and every wait is bounded, so an unreachable broker is an error
//! within seconds instead of a hang.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{StepContext, StepError};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KafkaAction {
    /// Cluster metadata: `{brokers, topics, partitions}`.
    Topics(TopicsSpec),
    /// Produce messages (creating the topic if missing): `{topic, count, messages}`.
    Produce(ProduceSpec),
    /// Consume `count` messages within a deadline: `{messages, count}`.
    Consume(ConsumeSpec),
    /// Produce keyed messages with headers to a new topic, read them back, verify
    /// everything, commit, delete the topic.
    Roundtrip(RoundtripSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSpec {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceSpec {
    pub topic: String,
    pub messages: Vec<MessageSpec>,
    /// Partitions of the topic if this step creates it (default 1).
    #[serde(default = "one")]
    pub partitions: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSpec {
    pub key: Option<String>,
    pub value: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumeSpec {
    pub topic: String,
    /// Consumer group (default: a new one per run, so nothing was committed before).
    pub group: Option<String>,
    pub count: usize,
    #[serde(default = "consume_within", with = "humantime_serde")]
    pub within: Duration,
    #[serde(default)]
    pub from: StartFrom,
}

/// Where a group without committed offsets starts (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundtripSpec {
    #[serde(default = "default_messages")]
    pub messages: usize,
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "roundtrip_within", with = "humantime_serde")]
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

/// How long one broker request (metadata, admin, commit) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a produced message may take to be acknowledged (librdkafka's default is 5 min).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

impl KafkaAction {
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Topics(_) => "topics",
            Self::Produce(_) => "produce",
            Self::Consume(_) => "consume",
            Self::Roundtrip(_) => "roundtrip",
        }
    }

    pub async fn run(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let kafka = Kafka::new(cx)?;
        // Every verb starts by asking for metadata: it fails fast, with the cause, when
        // the broker cannot be reached.
        let metadata = kafka.metadata().await?;
        match self {
            Self::Topics(_) => Ok(metadata),
            Self::Produce(spec) => produce(&kafka, cx, spec).await,
            Self::Consume(spec) => consume(&kafka, cx, spec).await,
            Self::Roundtrip(spec) => roundtrip(&kafka, spec).await,
        }
    }
}

/// librdkafka's return codes are generic ("Local: Broker transport failure"); its error
/// callback and log lines say why ("Connect to ipv4#127.0.0.1:9092 failed: Connection
/// refused"). The latest reason is kept for messages.
#[derive(Clone, Default)]
struct Diag(Arc<Mutex<Option<String>>>);

impl ClientContext for Diag {
    // Called from librdkafka's own threads: warnings and errors only.
    fn log(&self, level: RDKafkaLogLevel, _facility: &str, message: &str) {
        if level as i32 <= RDKafkaLogLevel::Warning as i32 {
            self.set(message);
        }
    }

    // Called when a producer's or admin client's main queue is polled. "All brokers are
    // down" says nothing about why: the reason before it is kept.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set(reason);
        }
    }
}

impl ConsumerContext for Diag {}

impl Diag {
    fn set(&self, cause: &str) {
        // Log lines start with the thread's name, "[thrd:127.0.0.1:9092/bootstrap]: ".
        let cause = match cause.split_once("]: ") {
            Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
            _ => cause,
        };
        if let Ok(mut c) = self.0.lock() {
            *c = Some(cause.to_string());
        }
    }

    fn cause(&self) -> Option<String> {
        self.0.lock().ok().and_then(|c| c.clone())
    }
}

/// One step's connection settings; clients are made per step, so nothing is shared
/// between checks.
struct Kafka {
    addr: String,
    diag: Diag,
}

impl Kafka {
    fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        let ep = cx.endpoint;
        Ok(Self {
            addr: format!("{}:{}", ep.host, ep.port("kafka")?),
            diag: Diag::default(),
        })
    }

    fn config(&self) -> ClientConfig {
        let ms = |d: Duration| d.as_millis().to_string();
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr)
            .set("client.id", "platform-harness")
            .set("socket.timeout.ms", ms(REQUEST_TIMEOUT))
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("reconnect.backoff.max.ms", "1000");
        c
    }

    /// "kafka at 127.0.0.1:9092: <what>: <librdkafka error> (<its reason>)".
    fn error(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> StepError {
        StepError::Error(self.message(what, e))
    }

    fn message(&self, what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
        let mut msg = format!("kafka at {}: {what}: {e}", self.addr);
        if let Some(cause) = self.diag.cause() {
            msg.push_str(&format!(" ({cause})"));
        }
        msg
    }

    fn admin(&self) -> Result<AdminClient<Diag>, StepError> {
        self.config()
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the admin client", e))
    }

    /// An idempotent producer: no duplicates or reordering from its own retries.
    fn producer(&self, delivery_timeout: Duration) -> Result<FutureProducer<Diag>, StepError> {
        self.config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set(
                "request.timeout.ms",
                REQUEST_TIMEOUT.as_millis().to_string(),
            )
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the producer", e))
    }

    /// A group member that commits only what the check asks it to.
    fn consumer(&self, group: &str, from: StartFrom) -> Result<StreamConsumer<Diag>, StepError> {
        let reset = match from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        self.config()
            .set("group.id", group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the consumer", e))
    }

    /// Brokers and topics. librdkafka waits out the whole timeout when no broker is
    /// reachable; asking in short slices lets a refused connection fail at once.
    async fn metadata(&self) -> Result<Value, StepError> {
        self.poll_metadata(None, |m| Some(metadata_json(m)))
            .await
            .map_err(|e| self.error("fetching metadata", e))
    }

    /// Waits until every partition of a new topic has a leader: until then producers
    /// and consumers of it only wait and retry.
    async fn wait_for_leaders(&self, topic: &str) -> Result<(), StepError> {
        let t = topic.to_string();
        self.poll_metadata(Some(topic), move |m| {
            let led = m.topics().iter().find(|x| x.name() == t).is_some_and(|x| {
                x.error().is_none()
                    && !x.partitions().is_empty()
                    && x.partitions().iter().all(|p| p.leader() >= 0)
            });
            led.then_some(())
        })
        .await
        .map_err(|e| self.error(format!("waiting for leaders of `{topic}`"), e))
    }

    /// Asks for metadata until `done` takes it, the broker connection fails, or the
    /// request timeout passes.
    async fn poll_metadata<T: Send + 'static>(
        &self,
        topic: Option<&str>,
        done: impl Fn(&rdkafka::metadata::Metadata) -> Option<T> + Send + 'static,
    ) -> Result<T, String> {
        let config = self.config();
        let diag = self.diag.clone();
        let topic = topic.map(str::to_string);
        blocking(move || {
            let client: BaseConsumer<Diag> = config
                .create_with_context(diag.clone())
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            loop {
                let last = match client.fetch_metadata(topic.as_deref(), Duration::from_millis(500))
                {
                    Ok(m) => match done(&m) {
                        Some(out) => return Ok(out),
                        None => "not there yet".to_string(),
                    },
                    Err(e) => e.to_string(),
                };
                // Without a group, the consumer's poll serves librdkafka's main queue, where
                // a failed connection to the broker shows: no use asking again then.
                let mut broken = false;
                while let Some(r) = client.poll(Duration::ZERO) {
                    broken |= r.is_err_and(|e| {
                        matches!(
                            e.rdkafka_error_code(),
                            Some(RDKafkaErrorCode::BrokerTransportFailure)
                                | Some(RDKafkaErrorCode::AllBrokersDown)
                        )
                    });
                }
                if broken {
                    return Err(last);
                }
                // A little past the socket timeout, so librdkafka's own verdict is in.
                let bound = REQUEST_TIMEOUT + Duration::from_secs(2);
                if started.elapsed() >= bound {
                    return Err(format!("{last} (gave up after {} s)", bound.as_secs()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .map_err(|e| e.message().to_string())?
    }

    async fn create_topic(
        &self,
        admin: &AdminClient<Diag>,
        topic: &str,
        partitions: i32,
        exists_ok: bool,
    ) -> Result<(), StepError> {
        let what = format!("creating topic `{topic}` ({partitions} partitions)");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = bounded(admin.create_topics([&new], &admin_options()))
            .await
            .map_err(|e| self.error(&what, e))?
            .map_err(|e| self.error(&what, e))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exists_ok => {}
                Err((_, code)) => return Err(self.error(&what, code)),
            }
        }
        self.wait_for_leaders(topic).await
    }

    async fn delete_topic(&self, admin: &AdminClient<Diag>, topic: &str) -> Result<(), StepError> {
        let what = format!("deleting topic `{topic}`");
        let results = bounded(admin.delete_topics(&[topic], &admin_options()))
            .await
            .map_err(|e| self.error(&what, e))?
            .map_err(|e| self.error(&what, e))?;
        match results.into_iter().find_map(Result::err) {
            Some((_, code)) => Err(self.error(&what, code)),
            None => Ok(()),
        }
    }
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// A librdkafka future, given up on a little after its own timeouts should have fired.
async fn bounded<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    let limit = REQUEST_TIMEOUT + Duration::from_secs(5);
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("no answer within {} s", limit.as_secs()))
}

/// librdkafka's synchronous calls (metadata, commit, offsets) block their thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::Error(format!("kafka client task failed: {e}")))
}

fn metadata_json(m: &rdkafka::metadata::Metadata) -> Value {
    let brokers: Vec<Value> = m
        .brokers()
        .iter()
        .map(|b| json!({"id": b.id(), "host": b.host(), "port": b.port()}))
        .collect();
    let mut partitions = Map::new();
    for t in m.topics() {
        partitions.insert(t.name().to_string(), json!(t.partitions().len()));
    }
    let topics: Vec<&String> = partitions.keys().collect();
    json!({"brokers": brokers, "topics": topics, "partitions": partitions})
}

/// A header value as text; not-UTF-8 bytes are replaced, absent values are null.
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

fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| json!(String::from_utf8_lossy(b)))
}

async fn produce(k: &Kafka, cx: &StepContext<'_>, spec: &ProduceSpec) -> Result<Value, StepError> {
    let topic = cx.render(&spec.topic)?;
    if spec.partitions < 1 {
        return Err(StepError::Error("`partitions` must be at least 1".into()));
    }
    // Explicitly, not by auto-create: platforms often turn auto-create off.
    k.create_topic(&k.admin()?, &topic, spec.partitions, true)
        .await?;
    let producer = k.producer(DELIVERY_TIMEOUT)?;
    let mut pending = Vec::new();
    for (i, m) in spec.messages.iter().enumerate() {
        let key = m.key.as_deref().map(|t| cx.render(t)).transpose()?;
        let value = m.value.as_deref().map(|t| cx.render(t)).transpose()?;
        let mut headers = OwnedHeaders::new();
        for (name, v) in &m.headers {
            let v = cx.render(v)?;
            headers = headers.insert(Header {
                key: name,
                value: Some(&v),
            });
        }
        let mut record = FutureRecord::<String, String>::to(&topic).headers(headers);
        if let Some(key) = &key {
            record = record.key(key);
        }
        if let Some(value) = &value {
            record = record.payload(value);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| k.error(format!("producing message {} to `{topic}`", i + 1), e))?;
        pending.push((key, delivery));
    }
    let mut out = Vec::new();
    for (i, (key, delivery)) in pending.into_iter().enumerate() {
        let what = format!("producing message {} to `{topic}`", i + 1);
        match delivery.await {
            Ok(Ok(d)) => {
                out.push(json!({"key": key, "partition": d.partition, "offset": d.offset}))
            }
            Ok(Err((e, _))) => return Err(k.error(what, e)),
            Err(_) => return Err(k.error(what, "the producer went away")),
        }
    }
    Ok(json!({"topic": topic, "count": out.len(), "messages": out}))
}

async fn consume(k: &Kafka, cx: &StepContext<'_>, spec: &ConsumeSpec) -> Result<Value, StepError> {
    let topic = cx.render(&spec.topic)?;
    let group = match &spec.group {
        Some(g) => cx.render(g)?,
        None => format!("harness-consume-{}", short_id()),
    };
    let consumer = Arc::new(k.consumer(&group, spec.from)?);
    consumer
        .subscribe(&[&topic])
        .map_err(|e| k.error(format!("subscribing to `{topic}`"), e))?;
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
                "partition": m.partition(),
                "offset": m.offset(),
            })
        })
        .collect();
    Ok(json!({"topic": topic, "group": group, "count": messages.len(), "messages": messages}))
}

/// "received 97 of 100 messages from `t` within 30 s (last consumer error: ...)".
fn shortfall(
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
async fn receive(
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

/// Next offset of each partition of `topic` after the messages consumed.
fn next_offsets(got: &[(OwnedMessage, Instant)]) -> BTreeMap<i32, i64> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (m, _) in got {
        let e = next.entry(m.partition()).or_default();
        *e = (*e).max(m.offset() + 1);
    }
    next
}

/// Commits synchronously, so what is committed can be read back at once.
async fn commit(
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

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

// ---------------------------------------------------------------------------------------
// The roundtrip.

/// What the roundtrip's message `seq` carries, so the consumer side can recompute and
/// compare every byte.
struct Expected;

impl Expected {
    /// 16 keys: several messages per key, so "same key, same partition" is checked too.
    fn key(seq: usize) -> String {
        format!("key-{:02}", seq % 16)
    }

    /// Distinct (the sequence number leads), deterministic, and varied in length and in
    /// byte values (not UTF-8), so truncation or re-encoding shows.
    fn payload(seq: usize) -> Vec<u8> {
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

    fn headers(seq: usize, run: &str) -> Vec<(&'static str, String)> {
        vec![
            ("harness-seq", seq.to_string()),
            ("harness-run", run.to_string()),
            ("content-type", "application/octet-stream".to_string()),
        ]
    }
}

/// One produced message as the broker acknowledged it.
struct Sent {
    enqueued: Instant,
    acked: Instant,
    partition: i32,
    offset: i64,
}

/// Creates a topic, runs the exchange, deletes the topic whatever happened.
async fn roundtrip(k: &Kafka, spec: &RoundtripSpec) -> Result<Value, StepError> {
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
    let consumer = Arc::new(k.consumer(&group, StartFrom::Earliest)?);
    consumer
        .subscribe(&[topic])
        .map_err(|e| k.error(format!("subscribing to `{topic}`"), e))?;
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

/// Polls until the group gives this consumer its partitions; `None` at the deadline.
/// Messages arriving meanwhile (none: the topic is new) are kept.
async fn join_group(
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
        match result {
            Ok(Ok(d)) => sent.push(Sent {
                enqueued,
                acked,
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => return Err(k.error(what(seq), e)),
            Err(_) => return Err(k.error(what(seq), "the producer went away")),
        }
    }
    Ok(sent)
}

/// Committed offset (`None` if nothing is committed) and end offset of each partition.
async fn committed_and_end(
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

fn seq_of<M: Message>(m: &M) -> Option<usize> {
    m.headers()?
        .iter()
        .find(|h| h.key == "harness-seq")
        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// Everything wrong with what was consumed, compared with what was sent: missing or
/// duplicate messages, altered keys, payloads or headers, order within a partition,
/// a key in two partitions, a position other than the acknowledged one.
fn verify(sent: &[Sent], got: &[(OwnedMessage, Instant)], run: &str) -> Vec<String> {
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
fn summarize(problems: &[String]) -> String {
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
    use rdkafka::message::Timestamp;
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
    fn payloads_are_distinct_and_deterministic() {
        let all: BTreeSet<Vec<u8>> = (0..1000).map(Expected::payload).collect();
        assert_eq!(all.len(), 1000);
        assert_eq!(Expected::payload(7), Expected::payload(7));
        assert!(std::str::from_utf8(&Expected::payload(3)).is_err());
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
    fn next_offsets_follow_the_last_message_of_each_partition() {
        let g = got(vec![message(0, 0, 4), message(1, 2, 9), message(2, 0, 5)]);
        assert_eq!(next_offsets(&g), BTreeMap::from([(0, 6), (2, 10)]));
    }

    #[rstest]
    #[case(vec![], json!({"p50": null, "max": null}))]
    #[case(vec![3.0], json!({"p50": 3.0, "max": 3.0}))]
    #[case(vec![9.0, 1.04, 5.0, 2.0], json!({"p50": 2.0, "max": 9.0}))]
    #[case(vec![1.26, 0.5, 7.0], json!({"p50": 1.3, "max": 7.0}))]
    fn median_and_maximum(#[case] values: Vec<f64>, #[case] expected: Value) {
        assert_eq!(p50_max(values), expected);
    }

    #[test]
    fn summaries_show_five_problems_and_count_the_rest() {
        let problems: Vec<String> = (1..=7).map(|i| format!("p{i}")).collect();
        assert_eq!(summarize(&problems), "p1; p2; p3; p4; p5 (and 2 more)");
        assert_eq!(summarize(&problems[..2]), "p1; p2");
    }

    #[rstest]
    #[case(
        "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect failed",
        "127.0.0.1:9092/bootstrap: Connect failed"
    )]
    #[case("Connect failed: [x]: y", "Connect failed: [x]: y")]
    fn causes_lose_the_thread_name(#[case] line: &str, #[case] expected: &str) {
        let d = Diag::default();
        d.set(line);
        assert_eq!(d.cause().as_deref(), Some(expected));
    }

    #[derive(Deserialize)]
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
    fn rejects_mistakes(#[case] text: &str, #[case] expected: &str) {
        let err = parse(text).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}
