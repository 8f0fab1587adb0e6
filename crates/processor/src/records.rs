//! How state, outbox entries and projections are laid out: keys, column
//! families, value encodings, and the conversion of the fold's outputs into the
//! Avro records of the projection and trigger topics.

use std::collections::BTreeMap;

use storefold_codec::{CustomerProjection, OrderProjection, StateKind, StateRecord};
use storefold_core::engine::{Projection, StateValue, Trigger};
use time::OffsetDateTime;

/// RocksDB column families of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Orders, customers, identity fragments, order metadata, carriers' parcels.
    Aggregates,
    /// Identity index entries and order references (correlation).
    Indexes,
    /// Provider event ids already applied, with their receive time.
    Idempotency,
    /// Events waiting for the order they refer to, and the per-reference lists.
    Parked,
    /// Projections, triggers and dead letters still to be produced.
    Outbox,
    /// Positions, epoch, generation, the log identity.
    Meta,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Aggregates,
        Family::Indexes,
        Family::Idempotency,
        Family::Parked,
        Family::Outbox,
        Family::Meta,
    ];

    /// Column family name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Aggregates => "aggregates",
            Family::Indexes => "indexes",
            Family::Idempotency => "idempotency",
            Family::Parked => "parked",
            Family::Outbox => "outbox",
            Family::Meta => "meta",
        }
    }

    /// The changelog kind of records of this family.
    pub fn kind(self) -> StateKind {
        match self {
            Family::Aggregates => StateKind::Aggregate,
            Family::Indexes => StateKind::Index,
            Family::Idempotency => StateKind::Idempotency,
            Family::Parked => StateKind::Parked,
            Family::Outbox => StateKind::Other(OUTBOX_KIND.into()),
            Family::Meta => StateKind::Meta,
        }
    }
}

/// Changelog kind of outbox records (a string kind the schema leaves open).
pub const OUTBOX_KIND: &str = "outbox";
/// Key prefix of outbox entries (`~outbox/<sequence>/<index>`).
pub const OUTBOX_PREFIX: &str = "~outbox/";
/// Key prefix of commit markers (`~marker/<epoch>`): one live marker per epoch.
pub const MARKER_PREFIX: &str = "~marker/";
/// Key prefix of fence records (`~fence/<epoch>`).
pub const FENCE_PREFIX: &str = "~fence/";

/// The family a state key belongs to, from its kind segment
/// (`tenant/<kind>/id`, see `StateKey::encode`), `None` for keys that are not
/// state (markers, fences) or unknown.
pub fn family_of(key: &str) -> Option<Family> {
    if key.starts_with(OUTBOX_PREFIX) {
        return Some(Family::Outbox);
    }
    if crate::idem::is_batch_key(key) {
        return Some(Family::Idempotency);
    }
    if key.starts_with('~') {
        return None;
    }
    let (_, rest) = key.split_once('/')?;
    let (kind, _) = rest.split_once('/')?;
    Some(match kind {
        "order" | "ordermeta" | "frag" | "cust" | "parcel" | "sku" | "payout" => Family::Aggregates,
        "idx" | "ref" => Family::Indexes,
        "parked" | "parkedby" => Family::Parked,
        IDEM_KIND => Family::Idempotency,
        _ => return None,
    })
}

const IDEM_KIND: &str = "idem";

/// Idempotency key of a raw event: `tenant/idem/provider:event_id`.
pub fn idempotency_key(tenant: &str, provider: &str, event_id: &str) -> String {
    format!("{tenant}/{IDEM_KIND}/{provider}:{event_id}")
}

/// Idempotency value: the raw event's receive time (ms), big-endian.
pub fn idempotency_value(received_at_ms: i64) -> Vec<u8> {
    received_at_ms.to_be_bytes().to_vec()
}

/// Receive time stored in an idempotency value.
pub fn idempotency_stamp(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// Outbox key of the `index`-th chunk of batch `sequence` (sorts by batch;
/// older builds wrote one key per output in the same shape).
pub fn outbox_key(sequence: i64, index: usize) -> String {
    format!("{OUTBOX_PREFIX}{sequence:016}/{index:08}")
}

/// Batch sequence of an outbox key.
pub fn outbox_sequence(key: &str) -> Option<i64> {
    key.strip_prefix(OUTBOX_PREFIX)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

pub fn marker_key(epoch: i64) -> String {
    format!("{MARKER_PREFIX}{epoch:016}")
}

pub fn fence_key(epoch: i64) -> String {
    format!("{FENCE_PREFIX}{epoch:016}")
}

/// Header of a changelog tombstone naming the epoch that wrote it.
pub const TOMBSTONE_EPOCH_HEADER: &str = "storefold-epoch";
/// Header of a changelog tombstone naming its batch sequence.
pub const TOMBSTONE_SEQUENCE_HEADER: &str = "storefold-sequence";

/// The headers of the tombstones (deletes) of batch `sequence` of `epoch`: a
/// tombstone has no value to carry the protocol's fields, so they travel as
/// headers (decimal text), which compaction keeps with the tombstone.
pub fn tombstone_headers(epoch: i64, sequence: i64) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            TOMBSTONE_EPOCH_HEADER.to_string(),
            epoch.to_string().into_bytes(),
        ),
        (
            TOMBSTONE_SEQUENCE_HEADER.to_string(),
            sequence.to_string().into_bytes(),
        ),
    ]
}

/// The state record a changelog tombstone stands for (a delete of `key` by
/// the batch its headers name); `None` when the headers do not name one, like
/// a tombstone written by hand, which the restore skips.
pub fn tombstone_record<'a>(
    key: &[u8],
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Option<StateRecord> {
    let (mut epoch, mut sequence) = (None, None);
    for (name, value) in headers {
        let n = std::str::from_utf8(value).ok()?.parse::<i64>().ok();
        match name {
            TOMBSTONE_EPOCH_HEADER => epoch = n,
            TOMBSTONE_SEQUENCE_HEADER => sequence = n,
            _ => {}
        }
    }
    let key = String::from_utf8(key.to_vec()).ok()?;
    let kind = family_of(&key).map_or(StateKind::Meta, Family::kind);
    Some(StateRecord {
        key,
        kind,
        epoch: epoch?,
        sequence: sequence?,
        value: None,
    })
}

/// Encodes a state value: a version byte and its JSON (see
/// [`storefold_core::state`]).
pub fn encode_value(v: &StateValue) -> Vec<u8> {
    storefold_core::state::encode(v)
}

/// Decodes a state value written by this build or an older one (older shapes
/// are upcast; a newer build's value is an error naming both versions).
pub fn decode_value(bytes: &[u8]) -> Result<StateValue, serde_json::Error> {
    storefold_core::state::decode(bytes)
}

/// The value of a fence record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    /// Projection generation the epoch publishes.
    pub generation: i64,
    /// `storefold replay`: everything before this record is void.
    #[serde(default)]
    pub reset: bool,
    /// What the new owner found committed when it took the task over (absent
    /// in fences of older builds). Compaction keeps one marker per epoch, the
    /// newest: a fenced-off owner's late marker can replace the marker that
    /// committed its epoch's last batch, and the fence then still tells what
    /// was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<FenceCommitted>,
}

/// The committed state a fence's owner started from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FenceCommitted {
    /// Sequence of the newest committed batch (-1: none).
    pub sequence: i64,
    /// Newest batch whose outputs were produced.
    pub flushed: i64,
    /// Next offset per raw topic.
    pub positions: BTreeMap<String, i64>,
}

/// Something to produce after the commit: a projection, a trigger or a dead
/// letter, with its topic, key, value and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub topic: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    let rest = input.get(4..)?;
    let (b, tail) = (rest.get(..len)?, rest.get(len..)?);
    *input = tail;
    Some(b)
}

impl OutboxEntry {
    /// Length-prefixed fields: version 1, topic, key, value, header count, headers.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.value.len() + self.key.len() + 64);
        out.push(1);
        put_bytes(&mut out, self.topic.as_bytes());
        put_bytes(&mut out, &self.key);
        put_bytes(&mut out, &self.value);
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (k, v) in &self.headers {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<OutboxEntry> {
        let (&version, mut input) = bytes.split_first()?;
        if version != 1 {
            return None;
        }
        let topic = String::from_utf8(take_bytes(&mut input)?.to_vec()).ok()?;
        let key = take_bytes(&mut input)?.to_vec();
        let value = take_bytes(&mut input)?.to_vec();
        let n = u32::from_be_bytes(input.get(..4)?.try_into().ok()?);
        input = input.get(4..)?;
        let mut headers = Vec::new();
        for _ in 0..n {
            let k = String::from_utf8(take_bytes(&mut input)?.to_vec()).ok()?;
            headers.push((k, take_bytes(&mut input)?.to_vec()));
        }
        Some(OutboxEntry {
            topic,
            key,
            value,
            headers,
        })
    }
}

/// Version byte of an outbox chunk (several entries in one value).
const OUTBOX_CHUNK: u8 = 2;

/// Packs a batch's outputs into outbox chunk values of at most `budget` bytes
/// each (an entry larger than the budget gets a chunk of its own), in order.
/// A chunk is one changelog record, so a batch's outputs cost a few records
/// (and tombstones) instead of one each.
pub fn outbox_chunks(entries: &[OutboxEntry], budget: usize) -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut count: u32 = 0;
    let finish = |current: &mut Vec<u8>, count: &mut u32, chunks: &mut Vec<Vec<u8>>| {
        if *count > 0 {
            let mut value = Vec::with_capacity(current.len() + 5);
            value.push(OUTBOX_CHUNK);
            value.extend_from_slice(&count.to_be_bytes());
            value.append(current);
            chunks.push(value);
            *count = 0;
        }
    };
    for e in entries {
        let bytes = e.encode();
        if count > 0 && current.len() + bytes.len() + 9 > budget {
            finish(&mut current, &mut count, &mut chunks);
        }
        put_bytes(&mut current, &bytes);
        count += 1;
    }
    finish(&mut current, &mut count, &mut chunks);
    chunks
}

/// The entries of an outbox value: a chunk, or a single entry as older
/// builds wrote it; `None` when unreadable.
pub fn decode_outbox(bytes: &[u8]) -> Option<Vec<OutboxEntry>> {
    match bytes.first()? {
        1 => Some(vec![OutboxEntry::decode(bytes)?]),
        &OUTBOX_CHUNK => {
            let mut input = bytes.get(1..)?;
            let n = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
            input = input.get(4..)?;
            let mut out = Vec::with_capacity(n.min(input.len() / 4));
            for _ in 0..n {
                out.push(OutboxEntry::decode(take_bytes(&mut input)?)?);
            }
            input.is_empty().then_some(out)
        }
        _ => None,
    }
}

fn millis(t: Option<OffsetDateTime>) -> i64 {
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// Which projection topic a projection goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionTopic {
    Customers,
    Orders,
}

/// The Avro record of a projection (generation from the task).
#[derive(Debug)]
pub enum ProjectionRecord {
    Customer(CustomerProjection),
    Order(OrderProjection),
    Payout(storefold_codec::PayoutProjection),
}

impl ProjectionRecord {
    /// The record's JSON document.
    pub fn doc_mut(&mut self) -> &mut String {
        match self {
            ProjectionRecord::Customer(c) => &mut c.doc,
            ProjectionRecord::Order(o) => &mut o.doc,
            ProjectionRecord::Payout(p) => &mut p.doc,
        }
    }

    /// Drops the typed view (before trimming an oversized record).
    pub fn clear_view(&mut self) {
        match self {
            ProjectionRecord::Customer(c) => c.view = None,
            ProjectionRecord::Order(o) => o.view = None,
            ProjectionRecord::Payout(_) => {}
        }
    }

    /// Rebuilds the typed view from the (trimmed) document, so that both carry
    /// the same lists; `None` when the document no longer is a view (cut to its
    /// identifying scalars).
    pub fn view_from_doc(&mut self) {
        match self {
            ProjectionRecord::Customer(c) => {
                c.view = storefold_codec::CustomerView::from_doc(&c.doc);
            }
            ProjectionRecord::Order(o) => o.view = storefold_codec::OrderView::from_doc(&o.doc),
            ProjectionRecord::Payout(_) => {}
        }
    }
}

/// Converts one of the fold's projections to its topic record.
pub fn projection_record(p: &Projection, generation: i64) -> ProjectionRecord {
    match p {
        Projection::Customer { version, view } => ProjectionRecord::Customer(CustomerProjection {
            tenant: view.tenant.clone(),
            customer_id: view.customer_id.clone(),
            generation,
            version: *version as i64,
            email: view.email.clone(),
            phone: view.phone.clone(),
            redacted: view.redacted,
            merged_into: None,
            updated_at: millis(view.last_event_at),
            doc: serde_json::to_string(&**view).unwrap_or_default(),
            view: Some(storefold_codec::CustomerView::from(&**view)),
        }),
        Projection::CustomerMerged {
            tenant,
            customer_id,
            merged_into,
            reason,
            version,
        } => ProjectionRecord::Customer(CustomerProjection {
            tenant: tenant.clone(),
            customer_id: customer_id.clone(),
            generation,
            version: *version as i64,
            email: None,
            phone: None,
            redacted: false,
            merged_into: Some(merged_into.clone()),
            updated_at: 0,
            doc: serde_json::json!({
                "customer_id": customer_id,
                "merged_into": merged_into,
                "reason": reason,
            })
            .to_string(),
            view: None,
        }),
        Projection::Order { version, view } => {
            let status = view
                .order
                .snapshot
                .as_ref()
                .and_then(|s| serde_json::to_value(s.value.status).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            ProjectionRecord::Order(OrderProjection {
                tenant: view.tenant.clone(),
                order_id: view.order_id.clone(),
                customer_id: view.customer_id.clone(),
                generation,
                version: *version as i64,
                status,
                updated_at: millis(view.order.last_event_at),
                doc: serde_json::to_string(&**view).unwrap_or_default(),
                view: Some(storefold_codec::OrderView::from(&**view)),
            })
        }
        Projection::Payout { version, view } => {
            ProjectionRecord::Payout(storefold_codec::PayoutProjection {
                tenant: view.tenant.clone(),
                provider: view.provider.clone(),
                payout_id: view.payout_id.clone(),
                generation,
                version: *version as i64,
                status: view.status.map(|s| s.as_str().to_string()),
                currency: view.amount.map(|a| a.currency.code().to_string()),
                amount: view.amount.map(|a| a.minor),
                difference: view.difference.map(|d| d.minor),
                reconciled: view.reconciled,
                updated_at: millis(view.reported_at),
                doc: serde_json::to_string(&**view).unwrap_or_default(),
            })
        }
    }
}

/// Converts a trigger of the fold to its topic record.
pub fn trigger_record(t: &Trigger) -> storefold_codec::Trigger {
    storefold_codec::Trigger {
        trigger_id: t.trigger_id.clone(),
        tenant: t.tenant.clone(),
        customer_id: t.customer_id.clone().unwrap_or_default(),
        order_id: t.order_id.clone(),
        kind: t.kind.clone(),
        occurred_at: millis(Some(t.occurred_at)),
        source_event_id: t.source_event_id.clone(),
        data: t.data.to_string(),
    }
}

/// Positions as the marker carries them.
pub fn input_positions(
    positions: &BTreeMap<String, i64>,
    partition: i32,
) -> Vec<storefold_codec::InputPosition> {
    positions
        .iter()
        .map(|(topic, next)| storefold_codec::InputPosition {
            topic: topic.clone(),
            partition,
            next_offset: *next,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_key_kind() {
        assert_eq!(family_of("acme/order/shopify:1"), Some(Family::Aggregates));
        assert_eq!(family_of("acme/cust/email:a@b.c"), Some(Family::Aggregates));
        assert_eq!(
            family_of("acme/ref/payment:stripe:pi_1"),
            Some(Family::Indexes)
        );
        assert_eq!(family_of("acme/parkedby/tracking:1Z"), Some(Family::Parked));
        assert_eq!(
            family_of(&idempotency_key("acme", "stripe", "evt_1")),
            Some(Family::Idempotency)
        );
        assert_eq!(family_of(&outbox_key(7, 3)), Some(Family::Outbox));
        assert_eq!(
            family_of(&crate::idem::batch_key(2, 9)),
            Some(Family::Idempotency)
        );
        assert_eq!(family_of(&marker_key(2)), None);
        assert_eq!(family_of("acme/nonsense/x"), None);
    }

    /// Every kind of state record the fold writes has a column family: a key
    /// without one would live only in the changelog and the engine's cache,
    /// and be gone from the task's state after a restart.
    #[test]
    fn every_state_record_kind_is_stored() {
        use storefold_core::IdentityKey;
        use storefold_core::IdentityKind;
        use storefold_core::engine::{Item, StateKey};
        let k = IdentityKey::new("acme", IdentityKind::Email, "a@b.example");
        let items = [
            Item::Order("shopify:1".into()),
            Item::OrderMeta("shopify:1".into()),
            Item::Fragment(k.clone()),
            Item::Index(k.clone()),
            Item::Customer(k),
            Item::Ref("payment:stripe:pi_1".into()),
            Item::Parcel("1Z999".into()),
            Item::Sku("TEE-M".into()),
            Item::Payout("stripe:po_1".into()),
            Item::Parked("evt_1".into()),
            Item::ParkedBy("order:shopify:1".into()),
        ];
        for item in items {
            // A new kind of record must be given a family here.
            let family = match &item {
                Item::Order(_)
                | Item::OrderMeta(_)
                | Item::Fragment(_)
                | Item::Customer(_)
                | Item::Parcel(_)
                | Item::Sku(_)
                | Item::Payout(_) => Family::Aggregates,
                Item::Index(_) | Item::Ref(_) => Family::Indexes,
                Item::Parked(_) | Item::ParkedBy(_) => Family::Parked,
            };
            let key = StateKey::new("acme", item).encode();
            assert_eq!(family_of(&key), Some(family), "{key}");
        }
    }

    #[test]
    fn outbox_chunks_hold_every_entry_in_order_within_the_budget() {
        let entry = |i: usize, size: usize| OutboxEntry {
            topic: "storefold.orders".into(),
            key: format!("acme/o{i}").into_bytes(),
            value: vec![i as u8; size],
            headers: vec![],
        };
        let entries: Vec<OutboxEntry> = (0..50).map(|i| entry(i, 100 + i * 10)).collect();
        let chunks = outbox_chunks(&entries, 2_000);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() <= 2_000), "within the budget");
        let back: Vec<OutboxEntry> = chunks
            .iter()
            .flat_map(|c| decode_outbox(c).expect("chunk"))
            .collect();
        assert_eq!(back, entries);
        // An entry over the budget travels alone, never split or dropped.
        let big = vec![entry(1, 10), entry(2, 5_000), entry(3, 10)];
        let chunks = outbox_chunks(&big, 2_000);
        assert_eq!(chunks.len(), 3);
        assert_eq!(decode_outbox(&chunks[1]), Some(vec![big[1].clone()]));
        assert!(outbox_chunks(&[], 2_000).is_empty());
        // A value of an older build (one entry) still reads.
        assert_eq!(decode_outbox(&big[0].encode()), Some(vec![big[0].clone()]));
        assert_eq!(decode_outbox(&chunks[0][..chunks[0].len() - 1]), None);
        assert_eq!(decode_outbox(&[9, 0, 0]), None);
    }

    #[test]
    fn a_tombstone_names_its_batch_in_its_headers() {
        let headers = tombstone_headers(7, 42);
        let rec = tombstone_record(
            b"acme/parked/evt_1",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
        .expect("a tombstone of a batch");
        assert_eq!(rec.key, "acme/parked/evt_1");
        assert_eq!((rec.epoch, rec.sequence, rec.value), (7, 42, None));
        assert_eq!(rec.kind, StateKind::Parked);
        assert_eq!(tombstone_record(b"acme/parked/evt_1", []), None);
        let bad = [
            (TOMBSTONE_EPOCH_HEADER, &b"x"[..]),
            (TOMBSTONE_SEQUENCE_HEADER, b"1"),
        ];
        assert_eq!(tombstone_record(b"k", bad), None);
    }

    #[test]
    fn outbox_entries_round_trip() {
        let e = OutboxEntry {
            topic: "storefold.customers".into(),
            key: b"acme/c1".to_vec(),
            value: vec![0xC3, 0x01, 9, 9],
            headers: vec![("storefold-error".into(), b"x".to_vec())],
        };
        assert_eq!(OutboxEntry::decode(&e.encode()), Some(e.clone()));
        assert_eq!(OutboxEntry::decode(&e.encode()[..10]), None);
        assert_eq!(outbox_sequence(&outbox_key(42, 1)), Some(42));
        assert!(outbox_key(9, 0) < outbox_key(10, 0));
        assert_eq!(
            idempotency_stamp(&idempotency_value(1_700_000_000_000)),
            Some(1_700_000_000_000)
        );
    }
}
