//! What waits to be written (contacts, deals, associations) and what the sink remembers between writes.

use super::*;

/// Which record an upsert came from, to report rejections against the batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum SourceId {
    Customer {
        key: String,
        generation: i64,
        version: i64,
    },
    Order {
        key: String,
        generation: i64,
        version: i64,
    },
    /// Never queued (the sink does not consume payouts); named so that a
    /// payout handed by mistake is reported against its record.
    Payout {
        key: String,
        generation: i64,
        version: i64,
    },
    Trigger {
        trigger_id: String,
    },
}

impl SourceId {
    pub(super) fn of(item: &Item) -> SourceId {
        match item {
            Item::Customer(c) => SourceId::Customer {
                key: customer_key(&c.tenant, &c.customer_id),
                generation: c.generation,
                version: c.version,
            },
            Item::Order(o) => SourceId::Order {
                key: order_key(&o.tenant, &o.order_id),
                generation: o.generation,
                version: o.version,
            },
            Item::Payout(p) => SourceId::Payout {
                key: format!("{}/{}:{}", p.tenant, p.provider, p.payout_id),
                generation: p.generation,
                version: p.version,
            },
            Item::Trigger(t) => SourceId::Trigger {
                trigger_id: t.trigger_id.clone(),
            },
        }
    }
}

pub(super) fn customer_key(tenant: &str, customer_id: &str) -> String {
    format!("{tenant}/{customer_id}")
}

pub(super) fn order_key(tenant: &str, order_id: &str) -> String {
    format!("{tenant}/{order_id}")
}

/// A customer's part of a contact upsert.
#[derive(Debug, Clone)]
pub(super) struct CustomerPart {
    pub(super) source: SourceId,
    pub(super) key: String,
    pub(super) stamp: (i64, i64),
    pub(super) updated_at: i64,
    pub(super) props: BTreeMap<String, String>,
    /// Order ids of the customer (for associations).
    pub(super) orders: Vec<String>,
}

/// One contact waiting to be upserted.
#[derive(Debug, Clone)]
pub(super) struct ContactOp {
    pub(super) customer: Option<CustomerPart>,
    /// Properties set by the newest trigger, and its time.
    pub(super) trigger_props: BTreeMap<String, String>,
    pub(super) trigger_at: i64,
    /// Records this upsert answers for besides `customer.source`: superseded
    /// versions and triggers.
    pub(super) also: Vec<SourceId>,
    pub(super) priority: bool,
    pub(super) seq: u64,
}

impl ContactOp {
    /// Nothing to send yet; `seq` orders it among the queued upserts.
    pub(super) fn empty(seq: u64) -> Self {
        ContactOp {
            customer: None,
            trigger_props: BTreeMap::new(),
            trigger_at: i64::MIN,
            also: Vec::new(),
            priority: false,
            seq,
        }
    }
}

impl ContactOp {
    pub(super) fn sources(&self) -> Vec<SourceId> {
        let mut out: Vec<SourceId> = self.customer.iter().map(|c| c.source.clone()).collect();
        out.extend(self.also.iter().cloned());
        out
    }

    pub(super) fn properties(&self) -> BTreeMap<String, String> {
        let mut p = self
            .customer
            .as_ref()
            .map(|c| c.props.clone())
            .unwrap_or_default();
        p.extend(self.trigger_props.clone());
        p
    }
}

/// One deal waiting to be upserted.
#[derive(Debug, Clone)]
pub(super) struct DealOp {
    pub(super) source: SourceId,
    pub(super) key: String,
    pub(super) stamp: (i64, i64),
    pub(super) customer_key: Option<String>,
    pub(super) props: BTreeMap<String, String>,
    pub(super) also: Vec<SourceId>,
    pub(super) seq: u64,
}

impl DealOp {
    pub(super) fn sources(&self) -> Vec<SourceId> {
        let mut out = vec![self.source.clone()];
        out.extend(self.also.iter().cloned());
        out
    }
}

/// A redacted customer's contact waiting to be deleted (HubSpot's GDPR
/// delete), addressed by a unique-value property: `storefold_customer_id` (or
/// whatever `customer_id` is mapped to), else the remembered email.
#[derive(Debug, Clone)]
pub(super) struct ErasureOp {
    pub(super) source: SourceId,
    pub(super) stamp: (i64, i64),
    /// `idProperty` of the request.
    pub(super) id_property: String,
    /// `objectId` of the request: the property's value.
    pub(super) object_id: String,
    /// The contact's email when this process knew it, to forget what it
    /// remembers of the contact once it is deleted.
    pub(super) email: Option<String>,
    /// Records this delete answers for besides `source`: superseded versions,
    /// cancelled upserts and triggers of the customer.
    pub(super) also: Vec<SourceId>,
    pub(super) seq: u64,
}

impl ErasureOp {
    pub(super) fn sources(&self) -> Vec<SourceId> {
        let mut out = vec![self.source.clone()];
        out.extend(self.also.iter().cloned());
        out
    }
}

/// An association to make once both ids are known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Want {
    pub(super) order_id: String,
    pub(super) customer_key: String,
}

/// What waits to be written. Survives a failed write (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Queue {
    pub(super) seq: u64,
    /// Contacts to delete, by customer key (`tenant/customer_id`).
    pub(super) erasures: BTreeMap<String, ErasureOp>,
    /// By email.
    pub(super) contacts: BTreeMap<String, ContactOp>,
    /// By order id (the deal's id property value).
    pub(super) deals: BTreeMap<String, DealOp>,
    /// Associations to make, by what they need.
    pub(super) wants: HashSet<Want>,
    /// Associations ready to send: (deal id, contact id) → whether the deal
    /// belongs to that contact alone (its newest order projection names the
    /// contact's customer), so that the associations this sink made between
    /// the deal and other contacts are archived once this one is made.
    pub(super) pairs: HashMap<(String, String), bool>,
    /// Associations to archive: (deal id, contact id) this sink made before
    /// the deal's order moved to another customer.
    pub(super) unpairs: HashSet<(String, String)>,
}

/// What the sink remembers between writes (bounded, see [`MEMORY_CAP`]).
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Customer key → email.
    pub(super) emails: HashMap<String, String>,
    /// Email → HubSpot contact id.
    pub(super) contact_ids: HashMap<String, String>,
    /// Emails a contact lookup did not find (until a contact upsert gives an id).
    pub(super) not_found: HashSet<String>,
    /// Order id → HubSpot deal id.
    pub(super) deal_ids: HashMap<String, String>,
    /// Deal id → the contact ids this process associated it with (and has
    /// not archived since). Only these are ever archived: associations made
    /// by anyone else, or by this sink before a restart, are not known here.
    pub(super) associated: HashMap<String, BTreeSet<String>>,
    /// Order id → the customer key of the newest order projection whose deal
    /// was written (`None`: no customer, or redacted): a customer projection
    /// that still lists an order which has moved to another customer asks for
    /// no association.
    pub(super) deal_owners: HashMap<String, Option<String>>,
    /// Key (`c:`/`o:` + tenant/id) → newest (generation, version) written.
    pub(super) written: HashMap<String, (i64, i64)>,
    /// Customer keys whose newest version written was an erasure: an older
    /// version delivered again must not bring their email back.
    pub(super) erased: HashSet<String>,
    /// Triggers applied.
    pub(super) triggers_done: HashSet<String>,
    /// Email → time of the newest trigger applied.
    pub(super) last_trigger_at: HashMap<String, i64>,
    /// Records HubSpot refused: (code, reason), answered again on a retry.
    pub(super) rejected: HashMap<SourceId, (String, String)>,
}

impl Memory {
    /// Whether `(generation, version)` `stamp` or a newer one of the customer
    /// (`'c'`) or order (`'o'`) `key` was written already.
    pub(super) fn written_at_least(&self, kind: char, key: &str, stamp: (i64, i64)) -> bool {
        self.written
            .get(&format!("{kind}:{key}"))
            .is_some_and(|w| *w >= stamp)
    }

    pub(super) fn mark_written(&mut self, kind: char, key: &str, stamp: (i64, i64)) {
        bounded(&mut self.written);
        self.written.insert(format!("{kind}:{key}"), stamp);
    }

    /// Whether this process associated `deal` with `contact` (and has not
    /// archived it since).
    pub(super) fn is_associated(&self, deal: &str, contact: &str) -> bool {
        self.associated
            .get(deal)
            .is_some_and(|cs| cs.contains(contact))
    }

    pub(super) fn remember_association(&mut self, deal: String, contact: String) {
        if !self.associated.contains_key(&deal) {
            bounded(&mut self.associated);
        }
        self.associated.entry(deal).or_default().insert(contact);
    }

    pub(super) fn forget_association(&mut self, deal: &str, contact: &str) {
        if let Some(cs) = self.associated.get_mut(deal) {
            cs.remove(contact);
            if cs.is_empty() {
                self.associated.remove(deal);
            }
        }
    }

    /// The contacts other than `contact` this process associated `deal` with.
    pub(super) fn other_contacts(&self, deal: &str, contact: &str) -> Vec<String> {
        self.associated
            .get(deal)
            .into_iter()
            .flatten()
            .filter(|c| c.as_str() != contact)
            .cloned()
            .collect()
    }
}

pub(super) fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MEMORY_CAP {
        map.clear();
    }
}

pub(super) fn bounded_set<K: std::hash::Hash + Eq>(set: &mut HashSet<K>) {
    if set.len() >= MEMORY_CAP {
        set.clear();
    }
}
