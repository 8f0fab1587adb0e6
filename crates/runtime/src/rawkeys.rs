//! Crypto-shredding of the raw log.
//!
//! Raw topics keep each webhook body for as long as their retention says, and
//! Kafka cannot delete one record from the middle of a log. So, for a tenant
//! with `[tenants.<id>.raw_encryption]`, the ingest encrypts each body under a
//! **data key of its subject** (the identity key the fold files the body's
//! data under; `tenant` for a body naming nobody) and keeps
//! the data keys in the compacted `keys.raw` topic, wrapped under a
//! key-encryption key derived from the configuration. Erasing a subject writes
//! a tombstone for each of its data keys: once the processor starts again (a
//! replay, a restart) it cannot read those bodies, and once compaction has run
//! nobody can.
//!
//! A data key's record key is `<tenant>/<subject>/<key_id>`; several keys of
//! one subject can exist (two ingests creating one at once, one created after
//! an erasure): each is a record of its own, so compaction never drops a live
//! key in favour of another.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use crate::config::KafkaConfig;

/// The only scheme: AES-256-GCM with a random 96-bit nonce per body.
pub const SCHEME: &str = "aes-256-gcm";

/// The subject of a body that names no email or phone.
pub const TENANT_SUBJECT: &str = "tenant";

/// What went wrong with a key or a ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys topic record key {0:?} is not <tenant>/<subject>/<key id>")]
    RecordKey(String),
    #[error("keys topic record {key}: {why}")]
    Record { key: String, why: String },
    #[error("decryption failed: wrong key, or the ciphertext or its envelope was altered")]
    Open,
    #[error("the system's random number generator failed")]
    Random,
    #[error("the keys topic was not read to its end within {0:?}")]
    CatchUpTimeout(Duration),
    #[error("the keys topic {0} does not exist (run `storefold topics create`)")]
    NoTopic(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// A tenant's key-encryption key: wraps the data keys kept in the topic.
pub struct Kek(LessSafeKey);

impl Kek {
    /// Derived from the configured `raw_encryption.key` (SHA-256 under a
    /// fixed label, so the same secret used elsewhere yields another key).
    pub fn derive(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"storefold raw-log key-encryption key v1\0");
        h.update(secret.trim().as_bytes());
        let bytes = h.finalize();
        Kek(aes_key(&bytes))
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

fn aes_key(bytes: &[u8]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, bytes)
            .unwrap_or_else(|_| unreachable!("AES-256 keys are 32 bytes")),
    )
}

/// One subject's data key. The 32 bytes only: the AES key schedule is made
/// per use (microseconds), so a processor holding every subject's key keeps
/// about 150 bytes per subject, not ring's kilobyte of tables.
pub struct DataKey {
    pub tenant: String,
    pub subject: String,
    pub key_id: String,
    key: [u8; 32],
}

impl Drop for DataKey {
    /// A key dropped (a shredded one the ingest forgets) is overwritten
    /// before its memory is freed.
    fn drop(&mut self) {
        self.key = [0; 32];
        // Keeps the write from being optimised away as dead (best effort).
        std::hint::black_box(&self.key);
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("record", &self.record_key())
            .finish_non_exhaustive()
    }
}

/// The authenticated data of a raw body: its envelope's tenant, provider and
/// event id, so a ciphertext cannot be moved to another event.
pub fn body_aad(tenant: &str, provider: &str, event_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(tenant.len() + provider.len() + event_id.len() + 3);
    for part in [tenant, provider, event_id] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad
}

/// `<tenant>/<subject>/<key_id>`.
pub fn record_key(tenant: &str, subject: &str, key_id: &str) -> String {
    format!("{tenant}/{subject}/{key_id}")
}

fn parse_record_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.splitn(3, '/');
    let (t, s, k) = (parts.next()?, parts.next()?, parts.next()?);
    (!t.is_empty() && !s.is_empty() && !k.is_empty()).then_some((t, s, k))
}

impl DataKey {
    /// A new random key for `subject`, and the value of its keys-topic record
    /// (the key wrapped under `kek`); the record's key is [`DataKey::record_key`].
    pub fn generate(kek: &Kek, tenant: &str, subject: &str) -> Result<(Self, Vec<u8>), KeyError> {
        let rng = SystemRandom::new();
        let mut id = [0u8; 16];
        let mut bytes = [0u8; 32];
        rng.fill(&mut id).map_err(|_| KeyError::Random)?;
        rng.fill(&mut bytes).map_err(|_| KeyError::Random)?;
        let key_id = hex::encode(id);
        let record = record_key(tenant, subject, &key_id);
        let (nonce, wrapped) = seal_with(&kek.0, record.as_bytes(), &bytes)?;
        let value = serde_json::json!({
            "v": 1,
            "wrapped": hex::encode([nonce, wrapped].concat()),
        });
        let key = DataKey {
            tenant: tenant.to_string(),
            subject: subject.to_string(),
            key_id,
            key: bytes,
        };
        Ok((key, value.to_string().into_bytes()))
    }

    /// Reads a keys-topic record.
    fn unwrap(kek: &Kek, record: &str, value: &[u8]) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::Record {
            key: record.to_string(),
            why: why.to_string(),
        };
        let (tenant, subject, key_id) =
            parse_record_key(record).ok_or_else(|| KeyError::RecordKey(record.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_slice(value).map_err(|_| bad("the value is not JSON"))?;
        if v.get("v").and_then(|v| v.as_u64()) != Some(1) {
            return Err(bad("unknown version"));
        }
        let wrapped = v
            .get("wrapped")
            .and_then(|w| w.as_str())
            .and_then(|w| hex::decode(w).ok())
            .ok_or_else(|| bad("no hex `wrapped`"))?;
        if wrapped.len() < NONCE_LEN {
            return Err(bad("`wrapped` is too short"));
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let bytes = open_with(&kek.0, nonce, record.as_bytes(), ct)
            .map_err(|_| bad("cannot be unwrapped with this tenant's raw_encryption.key"))?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        Ok(DataKey {
            tenant: tenant.to_string(),
            subject: subject.to_string(),
            key_id: key_id.to_string(),
            key,
        })
    }

    pub fn record_key(&self) -> String {
        record_key(&self.tenant, &self.subject, &self.key_id)
    }

    /// Encrypts `body`: the nonce and the ciphertext (tag at the end).
    pub fn seal(&self, aad: &[u8], body: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
        seal_with(&aes_key(&self.key), aad, body)
    }

    /// Decrypts what [`DataKey::seal`] made with the same `aad`.
    pub fn open(&self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, KeyError> {
        open_with(&aes_key(&self.key), nonce, aad, ciphertext)
    }
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Random)?;
    let mut out = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut out,
    )
    .map_err(|_| KeyError::Random)?;
    Ok((nonce.to_vec(), out))
}

fn open_with(
    key: &LessSafeKey,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Open)?;
    let mut buf = ciphertext.to_vec();
    let n = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Open)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// What is known of one data key.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<DataKey>),
    /// Tombstoned, or not in the topic read to its end: the body is shredded.
    Shredded,
    /// Not seen yet: read the topic further before deciding.
    Unknown,
    /// The tenant has no `raw_encryption.key` here: nothing can be decided.
    NoKek,
}

/// The data keys read from the keys topic, per tenant with a key-encryption key.
#[derive(Debug)]
pub struct KeyBook {
    keks: HashMap<String, Kek>,
    keys: HashMap<String, Arc<DataKey>>,
    by_subject: HashMap<(String, String), BTreeSet<String>>,
    shredded: HashSet<String>,
    /// The processor keeps a key it has loaded after its tombstone, for the
    /// life of the process: a body received before the erasure and folded
    /// after it is still read (then scrubbed by the fold), whatever the order
    /// in which the task reads its topics. The ingest forgets it, so the
    /// subject's next body gets a new key.
    keep_loaded: bool,
}

impl KeyBook {
    pub fn new(keks: HashMap<String, Kek>, keep_loaded: bool) -> Self {
        Self {
            keks,
            keys: HashMap::new(),
            by_subject: HashMap::new(),
            shredded: HashSet::new(),
            keep_loaded,
        }
    }

    /// The key-encryption keys of the tenants of `config` that encrypt.
    pub fn keks(config: &crate::Config) -> HashMap<String, Kek> {
        config
            .tenants
            .iter()
            .filter_map(|(id, t)| {
                t.raw_encryption
                    .as_ref()
                    .map(|e| (id.clone(), Kek::derive(&e.key.0)))
            })
            .collect()
    }

    /// Whether no tenant encrypts.
    pub fn is_empty(&self) -> bool {
        self.keks.is_empty()
    }

    pub fn kek(&self, tenant: &str) -> Option<&Kek> {
        self.keks.get(tenant)
    }

    /// Applies one record of the keys topic (`None`: a tombstone). Records of
    /// tenants without a key-encryption key here are skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), KeyError> {
        let record = String::from_utf8_lossy(key).into_owned();
        let (tenant, subject, _) =
            parse_record_key(&record).ok_or_else(|| KeyError::RecordKey(record.clone()))?;
        let Some(kek) = self.keks.get(tenant) else {
            return Ok(());
        };
        let slot = (tenant.to_string(), subject.to_string());
        match value {
            Some(v) => {
                let k = DataKey::unwrap(kek, &record, v)?;
                self.by_subject
                    .entry(slot)
                    .or_default()
                    .insert(record.clone());
                self.shredded.remove(&record);
                self.keys.insert(record, Arc::new(k));
            }
            None => {
                if !(self.keep_loaded && self.keys.contains_key(&record)) {
                    self.keys.remove(&record);
                    if let Some(set) = self.by_subject.get_mut(&slot) {
                        set.remove(&record);
                    }
                }
                self.shredded.insert(record);
            }
        }
        Ok(())
    }

    /// Adds a key this process created (before the topic is read back).
    pub fn insert(&mut self, key: Arc<DataKey>) {
        let record = key.record_key();
        self.by_subject
            .entry((key.tenant.clone(), key.subject.clone()))
            .or_default()
            .insert(record.clone());
        self.keys.insert(record, key);
    }

    /// Records that `record` is not in the topic read to its end.
    pub fn mark_missing(&mut self, record: &str) {
        if !self.keys.contains_key(record) {
            self.shredded.insert(record.to_string());
        }
    }

    pub fn lookup(&self, tenant: &str, subject: &str, key_id: &str) -> Lookup {
        if !self.keks.contains_key(tenant) {
            return Lookup::NoKek;
        }
        let record = record_key(tenant, subject, key_id);
        match self.keys.get(&record) {
            Some(k) => Lookup::Found(Arc::clone(k)),
            None if self.shredded.contains(&record) => Lookup::Shredded,
            None => Lookup::Unknown,
        }
    }

    /// A usable key of `subject` (the first by id), not tombstoned.
    pub fn live_key(&self, tenant: &str, subject: &str) -> Option<Arc<DataKey>> {
        self.by_subject
            .get(&(tenant.to_string(), subject.to_string()))?
            .iter()
            .filter(|r| !self.shredded.contains(*r))
            .find_map(|r| self.keys.get(r).cloned())
    }

    /// The record keys of every data key of `subject` this book knows.
    pub fn subject_records(&self, tenant: &str, subject: &str) -> Vec<String> {
        self.by_subject
            .get(&(tenant.to_string(), subject.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// A reader of the keys topic (every partition, from the beginning) that
/// applies what it reads to its [`KeyBook`].
pub struct KeyLog {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    /// Next offset to read per partition.
    next: HashMap<i32, i64>,
    book: Arc<Mutex<KeyBook>>,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLog")
            .field("topic", &self.topic)
            .field("keys", &self.book().len())
            .finish_non_exhaustive()
    }
}

impl KeyLog {
    /// Assigns every partition of `topic` from its beginning (nothing is read yet).
    pub fn open(
        kafka: &KafkaConfig,
        topic: &str,
        book: Arc<Mutex<KeyBook>>,
        timeout: Duration,
    ) -> Result<Self, KeyError> {
        let consumer: BaseConsumer = crate::kafka::client_config(kafka)
            .set("group.id", "storefold-keys")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(KeyError::NoTopic(topic.to_string()));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            next: partitions.iter().map(|p| (*p, 0)).collect(),
            partitions,
            book,
        })
    }

    /// The book this log applies its records to (locked; a poisoned lock is
    /// taken over: every record is applied whole or not at all).
    pub fn book(&self) -> std::sync::MutexGuard<'_, KeyBook> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shared book.
    pub fn shared_book(&self) -> &Arc<Mutex<KeyBook>> {
        &self.book
    }

    /// Applies one record read from the topic. A record that cannot be read
    /// is logged and skipped: it decides nothing (a body under it is
    /// refused, never guessed at).
    fn take(&mut self, m: &rdkafka::message::OwnedMessage) {
        self.next.insert(m.partition(), m.offset() + 1);
        if let Some(key) = m.key()
            && let Err(e) = self.book().apply(key, m.payload())
        {
            tracing::error!(error = %e, "unreadable record in the keys topic");
        }
    }

    /// Reads what arrives within `wait` (a tail).
    pub fn poll(&mut self, wait: Duration) -> Result<(), KeyError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left) {
                None => return Ok(()),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let m = m.detach();
                    self.take(&m);
                }
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Reads every partition up to the end it had when called, within
    /// `timeout`. The end is the high watermark, or a partition-end event
    /// followed by a quiet poll (compaction may remove a partition's last
    /// tombstones, leaving the watermark past the last record).
    pub fn catch_up(&mut self, timeout: Duration) -> Result<(), KeyError> {
        let started = Instant::now();
        let mut high: HashMap<i32, i64> = HashMap::new();
        for p in &self.partitions {
            let (_, h) = self.consumer.fetch_watermarks(&self.topic, *p, timeout)?;
            high.insert(*p, h);
        }
        let mut at_end: HashSet<i32> = HashSet::new();
        // Anything fetched after an end event comes after it in the queue, so
        // the event is trusted once a poll after it is quiet.
        let mut pending_end: Vec<i32> = Vec::new();
        loop {
            let done = self
                .partitions
                .iter()
                .all(|p| at_end.contains(p) || self.next.get(p).copied().unwrap_or(0) >= high[p]);
            if done {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(KeyError::CatchUpTimeout(timeout));
            }
            let wait = if pending_end.is_empty() { 100 } else { 50 };
            match self.consumer.poll(Duration::from_millis(wait)) {
                None => at_end.extend(pending_end.drain(..)),
                Some(Err(KafkaError::PartitionEOF(p))) => pending_end.push(p),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let m = m.detach();
                    pending_end.retain(|p| *p != m.partition());
                    self.take(&m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> (KeyBook, Kek) {
        let keks = HashMap::from([(
            "acme".to_string(),
            Kek::derive("a key-encryption key of 32+ characters"),
        )]);
        (
            KeyBook::new(keks, false),
            Kek::derive("a key-encryption key of 32+ characters"),
        )
    }

    #[test]
    fn a_body_sealed_under_a_topic_key_opens_only_with_it_and_its_envelope() {
        let (mut book, kek) = book();
        let (key, value) = DataKey::generate(&kek, "acme", "em_0a1b").unwrap();
        let aad = body_aad("acme", "shopify", "evt-1");
        let (nonce, ct) = key.seal(&aad, b"{\"email\":\"ann@example.com\"}").unwrap();
        assert!(
            !ct.windows(3).any(|w| w == b"ann"),
            "the ciphertext shows the body"
        );
        // The value as read back from the topic unwraps to the same key.
        book.apply(key.record_key().as_bytes(), Some(&value))
            .unwrap();
        let Lookup::Found(read) = book.lookup("acme", "em_0a1b", &key.key_id) else {
            panic!("the key was not found");
        };
        assert_eq!(
            read.open(&nonce, &aad, &ct).unwrap(),
            b"{\"email\":\"ann@example.com\"}"
        );
        // Another envelope, another key, or an altered byte: refused.
        let other = body_aad("acme", "shopify", "evt-2");
        assert!(matches!(
            read.open(&nonce, &other, &ct),
            Err(KeyError::Open)
        ));
        let (stranger, _) = DataKey::generate(&kek, "acme", "em_0a1b").unwrap();
        assert!(stranger.open(&nonce, &aad, &ct).is_err());
        let mut bent = ct.clone();
        bent[0] ^= 1;
        assert!(read.open(&nonce, &aad, &bent).is_err());
    }

    #[test]
    fn a_tombstone_shreds_for_the_ingest_and_a_loaded_key_stays_for_the_processor() {
        let (_, kek) = book();
        let (key, value) = DataKey::generate(&kek, "acme", "em_0a1b").unwrap();
        let record = key.record_key();
        for keep in [false, true] {
            let (mut b, _) = book();
            b.keep_loaded = keep;
            assert!(matches!(
                b.lookup("acme", "em_0a1b", &key.key_id),
                Lookup::Unknown
            ));
            b.apply(record.as_bytes(), Some(&value)).unwrap();
            assert!(b.live_key("acme", "em_0a1b").is_some());
            b.apply(record.as_bytes(), None).unwrap();
            assert!(b.live_key("acme", "em_0a1b").is_none());
            let found = matches!(b.lookup("acme", "em_0a1b", &key.key_id), Lookup::Found(_));
            assert_eq!(found, keep);
            // A book that starts after the tombstone never had it.
            let (mut fresh, _) = book();
            fresh.keep_loaded = keep;
            fresh.apply(record.as_bytes(), Some(&value)).unwrap();
            fresh.apply(record.as_bytes(), None).unwrap();
            if !keep {
                assert!(matches!(
                    fresh.lookup("acme", "em_0a1b", &key.key_id),
                    Lookup::Shredded
                ));
            }
        }
        // A tenant without a key-encryption key decides nothing.
        let (b, _) = book();
        assert!(matches!(b.lookup("other", "em_0a1b", "00"), Lookup::NoKek));
    }

    #[test]
    fn a_key_wrapped_under_another_kek_or_record_key_is_refused() {
        let (mut book, _) = book();
        let wrong = Kek::derive("another key-encryption key, 32+ chars");
        let (key, value) = DataKey::generate(&wrong, "acme", "em_0a1b").unwrap();
        let err = book
            .apply(key.record_key().as_bytes(), Some(&value))
            .unwrap_err();
        assert!(err.to_string().contains("cannot be unwrapped"), "{err}");
        let (_, kek) = super::tests::book();
        let (_, value) = DataKey::generate(&kek, "acme", "em_0a1b").unwrap();
        assert!(book.apply(b"acme/em_ffff/0011", Some(&value)).is_err());
        assert!(book.apply(b"no-slashes", None).is_err());
    }
}
