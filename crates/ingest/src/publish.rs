//! Producing raw events: `acks=all`, idempotence, murmur2 partitioning, and an answer
//! only once Kafka acknowledged — or definitely did not.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use storefold_runtime::config::KafkaConfig;

/// Where a record was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub partition: i32,
    pub offset: i64,
}

/// Why a record was not stored. Every variant means the provider should retry.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("the record is larger than the broker accepts")]
    TooLarge,
    #[error("Kafka refused the record: {0}")]
    Kafka(KafkaError),
}

impl PublishError {
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Timeout(_) => "kafka_timeout",
            PublishError::TooLarge => "too_large_for_kafka",
            PublishError::Kafka(_) => "kafka_error",
        }
    }
}

/// The ingest's producer.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A producer whose messages fail (rather than linger) once `timeout` passed:
    /// librdkafka's own `message.timeout.ms` is the deadline, so a request answered
    /// 503 leaves nothing behind in the queue that could be stored later.
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        let mut cfg = storefold_runtime::kafka::producer_config(kafka, timeout);
        // Room for the largest body plus the envelope, unless the operator set
        // the limit (the ingest checks `max_body_bytes` against it at start).
        if !kafka.properties.contains_key("message.max.bytes") {
            cfg.set(
                "message.max.bytes",
                crate::DEFAULT_PRODUCER_MAX_BYTES.to_string(),
            );
        }
        let producer: FutureProducer = cfg.create()?;
        Ok(Self { producer, timeout })
    }

    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Produces `payload` to `topic` keyed by `key` and waits for the acknowledgement.
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Stored, PublishError> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned);
        let started = Instant::now();
        // librdkafka fails the message at `message.timeout.ms` (checked about once a
        // second); the outer timer only guards against a lost delivery report.
        let guard = self.timeout + Duration::from_secs(10);
        let send = self.producer.send(record, Timeout::After(self.timeout));
        match tokio::time::timeout(guard, send).await {
            Ok(Ok(delivery)) => Ok(Stored {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((err, _msg))) => Err(classify(err, started.elapsed())),
            Err(_) => {
                tracing::warn!(topic, "no delivery report from librdkafka in {guard:?}");
                Err(PublishError::Timeout(guard))
            }
        }
    }

    /// Waits until everything queued was acknowledged (or failed), up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

fn classify(err: KafkaError, elapsed: Duration) -> PublishError {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => PublishError::Timeout(elapsed),
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => PublishError::TooLarge,
        _ => PublishError::Kafka(err),
    }
}
