//! The sink's dead-letter topic `dlq.sink.<name>`: records that can never be
//! written (undecodable, or refused by the destination), with the reason and
//! the source position in headers.

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{Runner, Stop};
use crate::{Sink, SourcePosition};

/// Dead-letter headers, as the processor writes them.
pub const ERROR_HEADER: &str = "storefold-error";
pub const ERROR_REASON_HEADER: &str = "storefold-error-reason";
pub const SOURCE_TOPIC_HEADER: &str = "storefold-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "storefold-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "storefold-source-offset";

/// Error code of a record whose value could not be decoded.
pub const UNDECODABLE: &str = "undecodable";

/// A record on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub(super) struct DeadLetter {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

pub(super) fn dead_letter(
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    mut headers: Vec<(String, Vec<u8>)>,
    source: &SourcePosition,
    code: &str,
    reason: &str,
) -> DeadLetter {
    headers.push((ERROR_HEADER.into(), code.as_bytes().to_vec()));
    headers.push((ERROR_REASON_HEADER.into(), reason.as_bytes().to_vec()));
    headers.push((SOURCE_TOPIC_HEADER.into(), source.topic.as_bytes().to_vec()));
    headers.push((
        SOURCE_PARTITION_HEADER.into(),
        source.partition.to_string().into_bytes(),
    ));
    headers.push((
        SOURCE_OFFSET_HEADER.into(),
        source.offset.to_string().into_bytes(),
    ));
    DeadLetter {
        key,
        value,
        headers,
    }
}

impl<S: Sink> Runner<'_, S> {
    /// Produces the dead letters and waits for every acknowledgement; retries
    /// the ones that failed until they are acknowledged (or shutdown).
    pub(super) async fn produce_dead_letters(
        &mut self,
        mut letters: Vec<DeadLetter>,
    ) -> Result<(), Stop> {
        let mut delays = self.delays();
        loop {
            let mut sent = Vec::with_capacity(letters.len());
            for l in &letters {
                let mut headers = OwnedHeaders::new_with_capacity(l.headers.len());
                for (k, v) in &l.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut rec: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.dlq_topic).headers(headers);
                if let Some(k) = &l.key {
                    rec = rec.key(k.as_slice());
                }
                if let Some(v) = &l.value {
                    rec = rec.payload(v.as_slice());
                }
                sent.push(self.producer.send_result(rec).map_err(|(e, _)| e));
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (l, f) in letters.into_iter().zip(sent) {
                let acked = match f {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e),
                        Err(_canceled) => Err(KafkaError::Canceled),
                    },
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(()) => self.metrics.dlq.inc(),
                    Err(e) => {
                        last_error = Some(e);
                        failed.push(l);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            let delay = delays.next().unwrap_or(self.max_retry_after);
            tracing::warn!(
                sink = self.name,
                topic = %self.dlq_topic,
                failed = failed.len(),
                error = ?last_error,
                ?delay,
                "dead letters not acknowledged; retrying (offsets stay uncommitted)"
            );
            letters = failed;
            self.pause(delay).await?;
        }
    }
}
