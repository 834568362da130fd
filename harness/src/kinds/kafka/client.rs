//! Connections to the broker: admin, producer and consumer clients with bounded
//! timeouts, metadata, topic creation and deletion, and error messages that say why.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot::Canceled;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Map, Value};

use super::StartFrom;
use crate::kinds::{Endpoint, StepContext, StepError};

/// How long one broker request (metadata, admin, commit) may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a produced message may take to be acknowledged (librdkafka's default is 5 min).
pub(super) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// librdkafka's return codes are generic ("Local: Broker transport failure"); its error
/// callback and log lines say why ("Connect to ipv4#127.0.0.1:9092 failed: Connection
/// refused"). The latest reason is kept for messages.
#[derive(Clone, Default)]
pub(in crate::kinds) struct Diag(Arc<Mutex<Option<String>>>);

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
/// between checks. Other kinds that read or write Kafka (connect's CDC round trip) use it
/// too, for the same timeouts and messages.
pub(in crate::kinds) struct Kafka {
    pub(super) addr: String,
    diag: Diag,
}

impl Kafka {
    pub(super) fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        Self::of(cx.endpoint)
    }

    /// The broker of `endpoint` (its `kafka` port).
    pub(in crate::kinds) fn of(endpoint: &Endpoint) -> Result<Self, StepError> {
        Ok(Self {
            addr: format!("{}:{}", endpoint.host, endpoint.port("kafka")?),
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
    pub(in crate::kinds) fn error(
        &self,
        what: impl std::fmt::Display,
        e: impl std::fmt::Display,
    ) -> StepError {
        StepError::Error(self.message(what, e))
    }

    pub(super) fn message(
        &self,
        what: impl std::fmt::Display,
        e: impl std::fmt::Display,
    ) -> String {
        let mut msg = format!("kafka at {}: {what}: {e}", self.addr);
        if let Some(cause) = self.diag.cause() {
            msg.push_str(&format!(" ({cause})"));
        }
        msg
    }

    pub(in crate::kinds) fn admin(&self) -> Result<AdminClient<Diag>, StepError> {
        self.config()
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the admin client", e))
    }

    /// An idempotent producer: no duplicates or reordering from its own retries.
    pub(super) fn producer(
        &self,
        delivery_timeout: Duration,
    ) -> Result<FutureProducer<Diag>, StepError> {
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

    /// The broker's acknowledgement of one produced message, or why there is none.
    pub(super) fn delivered(
        &self,
        what: impl std::fmt::Display,
        result: Result<OwnedDeliveryResult, Canceled>,
    ) -> Result<Delivery, StepError> {
        match result {
            Ok(Ok(d)) => Ok(d),
            Ok(Err((e, _))) => Err(self.error(what, e)),
            Err(_) => Err(self.error(what, "the producer went away")),
        }
    }

    /// A group member that commits only what the check asks it to, subscribed to `topic`.
    pub(super) fn subscriber(
        &self,
        group: &str,
        from: StartFrom,
        topic: &str,
    ) -> Result<Arc<StreamConsumer<Diag>>, StepError> {
        let reset = match from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let consumer: StreamConsumer<Diag> = self
            .config()
            .set("group.id", group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the consumer", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| self.error(format!("subscribing to `{topic}`"), e))?;
        Ok(Arc::new(consumer))
    }

    /// Partition 0 of `topic` from its first offset, with no group (so no rebalance to
    /// wait for) and short fetch waits: a reader for a single-partition topic.
    pub(in crate::kinds) fn partition_reader(
        &self,
        topic: &str,
    ) -> Result<StreamConsumer<Diag>, StepError> {
        let consumer: StreamConsumer<Diag> = self
            .config()
            .set(
                "group.id",
                format!("platform-harness-{}", crate::kinds::unique_id(8)),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(self.diag.clone())
            .map_err(|e| self.error("creating the consumer", e))?;
        let mut partition = TopicPartitionList::new();
        partition
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| self.error(format!("reading `{topic}`"), e))?;
        consumer
            .assign(&partition)
            .map_err(|e| self.error(format!("assigning `{topic}`"), e))?;
        Ok(consumer)
    }

    /// Brokers and topics. librdkafka waits out the whole timeout when no broker is
    /// reachable; asking in short slices lets a refused connection fail at once.
    pub(super) async fn metadata(&self) -> Result<Value, StepError> {
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

    pub(in crate::kinds) async fn create_topic(
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

    pub(in crate::kinds) async fn delete_topic(
        &self,
        admin: &AdminClient<Diag>,
        topic: &str,
    ) -> Result<(), StepError> {
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
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::Error(format!("kafka client task failed: {e}")))
}

/// Clients bootstrap from the endpoint, then talk to the addresses the brokers advertise;
/// an advertised address this client cannot open (a container-internal name seen from the
/// host, a port nobody mapped) is the classic misconfiguration. Each broker gets
/// `reachable`: a TCP connection to its advertised address opened within a bound.
pub(super) async fn mark_reachable(metadata: &mut Value) {
    const CONNECT: Duration = Duration::from_secs(3);
    let Some(brokers) = metadata.get_mut("brokers").and_then(Value::as_array_mut) else {
        return;
    };
    for broker in brokers {
        let host = broker["host"].as_str().unwrap_or_default().to_string();
        let reachable = match u16::try_from(broker["port"].as_i64().unwrap_or(-1)) {
            Ok(port) => matches!(
                tokio::time::timeout(
                    CONNECT,
                    tokio::net::TcpStream::connect((host.as_str(), port))
                )
                .await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        broker["reachable"] = json!(reachable);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

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
}
