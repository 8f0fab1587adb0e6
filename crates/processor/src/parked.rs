//! Parked events are bounded in time: what a task knows about the events
//! waiting for their order, and how far its input has been read.
//!
//! An event naming an order that does not exist yet is parked by the fold
//! (`Outcome::Parked`). The task keeps every parked event's receive time and
//! the raw topics its order can come from (its **release topics**, see
//! [`release_topics`]) in a [`ParkedIndex`] (scanned from its state at start,
//! then kept up to date from the fold's outcomes and each batch's state
//! changes). It gives up on an event once every one of its release topics has
//! been read past `processor.park_timeout_hours` after the event was received,
//! without its order: each topic partition is read in its own order, which is
//! the order of the receive times, so whatever pace the consumer reads the
//! topics at (a replay, a catch-up, a restart), the same events are given up
//! on. Such events go to `dlq.processor` with reason `unresolved_order`, in the
//! batch that gives up on them.
//!
//! Both structures journal what the open batch changed, so an abandoned batch
//! rolls them back to the committed state with the engine's working set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use storefold_core::Envelope;
use storefold_core::engine::ParkedEvent;

/// (tenant, event id) of a parked event.
pub type ParkedId = (String, String);

/// Receive time and release topics of a parked event.
type Entry = (i64, Vec<String>);

/// The parked events of a task, grouped by release topics, each group by
/// receive time (milliseconds since the epoch).
#[derive(Debug, Default)]
pub struct ParkedIndex {
    groups: BTreeMap<Vec<String>, BTreeSet<(i64, String, String)>>,
    by_id: HashMap<ParkedId, Entry>,
    /// Previous values of what the open batch changed, oldest first.
    undo: Vec<(ParkedId, Option<Entry>)>,
}

impl ParkedIndex {
    /// Parked events waiting.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn set(&mut self, id: ParkedId, entry: Option<Entry>) -> Option<Entry> {
        let before = match &entry {
            Some(e) => self.by_id.insert(id.clone(), e.clone()),
            None => self.by_id.remove(&id),
        };
        if let Some((at, topics)) = &before
            && let Some(group) = self.groups.get_mut(topics)
        {
            group.remove(&(*at, id.0.clone(), id.1.clone()));
            if group.is_empty() {
                self.groups.remove(topics);
            }
        }
        if let Some((at, topics)) = entry {
            self.groups
                .entry(topics)
                .or_default()
                .insert((at, id.0, id.1));
        }
        before
    }

    /// Records that `(tenant, event_id)` is parked since `received_at`,
    /// waiting for an order from `release_topics`.
    pub fn insert(
        &mut self,
        tenant: &str,
        event_id: &str,
        received_at: i64,
        release_topics: Vec<String>,
    ) {
        let id = (tenant.to_string(), event_id.to_string());
        let entry = (received_at, release_topics);
        let before = self.set(id.clone(), Some(entry.clone()));
        if before.as_ref() != Some(&entry) {
            self.undo.push((id, before));
        }
    }

    /// Records that `(tenant, event_id)` is no longer parked.
    pub fn remove(&mut self, tenant: &str, event_id: &str) {
        let id = (tenant.to_string(), event_id.to_string());
        if let Some(before) = self.set(id.clone(), None) {
            self.undo.push((id, Some(before)));
        }
    }

    /// The events every release topic of which has been read past `timeout`
    /// after they were received (`read` tells how far a topic was read: the
    /// newest receive time read from it), oldest first per group.
    pub fn due(&self, timeout: i64, read: impl Fn(&str) -> Option<i64>) -> Vec<ParkedId> {
        let mut out = Vec::new();
        for (topics, events) in &self.groups {
            let Some(read_to) = topics.iter().map(|t| read(t)).min().flatten() else {
                continue;
            };
            let cutoff = read_to.saturating_sub(timeout);
            out.extend(
                events
                    .iter()
                    .take_while(|(at, _, _)| *at < cutoff)
                    .map(|(_, t, e)| (t.clone(), e.clone())),
            );
        }
        out
    }

    /// The open batch is committed: its changes stay.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The open batch is abandoned: back to the committed state.
    pub fn rollback(&mut self) {
        while let Some((id, before)) = self.undo.pop() {
            self.set(id, before);
        }
    }
}

/// The receive time a parked event is measured from: the ingest's, else (a
/// record written before the fold kept it) the event's own time.
pub fn parked_since(p: &ParkedEvent) -> i64 {
    p.received_at
        .unwrap_or_else(|| (p.envelope.occurred_at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// How far a task has read each raw topic: the newest receive time read from
/// it since the task started (a topic partition is written, and read, in the
/// order its events were received).
#[derive(Debug, Default)]
pub struct Progress {
    read: BTreeMap<String, i64>,
    committed: BTreeMap<String, i64>,
}

impl Progress {
    /// A raw event of `topic` received at `received_at` was read.
    pub fn read(&mut self, topic: &str, received_at: i64) {
        let p = self.read.entry(topic.to_string()).or_insert(received_at);
        *p = (*p).max(received_at);
    }

    /// The newest receive time read from `topic`, if any was.
    pub fn get(&self, topic: &str) -> Option<i64> {
        self.read.get(topic).copied()
    }

    pub fn commit(&mut self) {
        self.committed.clone_from(&self.read);
    }

    pub fn rollback(&mut self) {
        self.read.clone_from(&self.committed);
    }
}

/// The raw topics a parked event's order can come from: for an order it names
/// outright (`order:woocommerce:727`), that store's topic; for a payment
/// reference, tracking number or order number, the tenant's stores' topics and
/// the event's own provider's (whose other events may teach the reference).
/// `raw_topic` names a provider's raw topic.
pub fn release_topics(
    env: &Envelope,
    stores: &[String],
    raw_topic: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut by_reference = false;
    for key in waited_for(env) {
        let store = key
            .strip_prefix("order:")
            .and_then(|o| o.split_once(':'))
            .and_then(|(store, _)| raw_topic(store));
        match store {
            Some(t) => {
                out.insert(t);
            }
            None => by_reference = true,
        }
    }
    if by_reference || out.is_empty() {
        out.extend(stores.iter().filter_map(|s| raw_topic(s)));
        out.extend(raw_topic(&env.provider));
    }
    out.into_iter().collect()
}

/// The order references a parked event waits for (the fold's own filing).
pub use storefold_core::engine::parked_keys as waited_for;

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_event_is_due_once_every_release_topic_is_read_past_its_timeout() {
        let mut ix = ParkedIndex::default();
        ix.insert("acme", "e1", 100, topics(&["raw.shopify"]));
        ix.insert("acme", "e2", 300, topics(&["raw.shopify"]));
        ix.insert("acme", "e3", 100, topics(&["raw.shopify", "raw.stripe"]));
        ix.insert("globex", "e4", 100, topics(&["raw.woocommerce"]));
        ix.commit();
        let mut read = BTreeMap::new();
        let due = |ix: &ParkedIndex, read: &BTreeMap<&str, i64>| {
            let mut d = ix.due(1_000, |t| read.get(t).copied());
            d.sort();
            d
        };
        // Nothing read: nothing known, nothing due.
        assert!(due(&ix, &read).is_empty());
        // Shopify read to 1 100 (exactly the timeout after e1): not yet.
        read.insert("raw.shopify", 1_100);
        assert!(due(&ix, &read).is_empty());
        // Shopify past e1's timeout; e3 also waits on Stripe, which is behind;
        // WooCommerce was never read, so globex's event waits.
        read.insert("raw.shopify", 1_101);
        read.insert("raw.stripe", 900);
        assert_eq!(due(&ix, &read), vec![("acme".into(), "e1".into())]);
        read.insert("raw.stripe", 5_000);
        assert_eq!(
            due(&ix, &read),
            vec![("acme".into(), "e1".into()), ("acme".into(), "e3".into())]
        );
        read.insert("raw.woocommerce", 2_000);
        read.insert("raw.shopify", 2_000);
        assert_eq!(due(&ix, &read).len(), 4);
    }

    #[test]
    fn the_index_rolls_an_abandoned_batch_back() {
        let mut ix = ParkedIndex::default();
        ix.insert("acme", "e1", 100, topics(&["raw.shopify"]));
        ix.insert("acme", "e2", 300, topics(&["raw.shopify"]));
        ix.commit();
        ix.remove("acme", "e1");
        ix.insert("acme", "e2", 50, topics(&["raw.woocommerce"]));
        ix.insert("acme", "e3", 10, topics(&["raw.shopify"]));
        ix.remove("acme", "e3");
        assert_eq!(ix.len(), 1);
        ix.rollback();
        assert_eq!(ix.len(), 2);
        let mut d = ix.due(0, |_| Some(i64::MAX));
        d.sort();
        assert_eq!(
            d,
            vec![("acme".into(), "e1".into()), ("acme".into(), "e2".into())]
        );
        assert!(
            ix.due(0, |t| (t == "raw.woocommerce").then_some(i64::MAX))
                .is_empty()
        );
        ix.remove("acme", "e2");
        ix.commit();
        ix.rollback();
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn progress_is_the_newest_receive_time_read_and_rolls_back() {
        let mut p = Progress::default();
        p.read("raw.shopify", 10);
        p.read("raw.shopify", 5);
        p.commit();
        p.read("raw.shopify", 20);
        p.read("raw.stripe", 7);
        assert_eq!(
            (p.get("raw.shopify"), p.get("raw.stripe")),
            (Some(20), Some(7))
        );
        p.rollback();
        assert_eq!(
            (p.get("raw.shopify"), p.get("raw.stripe")),
            (Some(10), None)
        );
    }

    #[test]
    fn an_order_named_outright_comes_from_its_store_a_reference_also_from_the_provider() {
        let raw = |p: &str| {
            matches!(p, "shopify" | "woocommerce" | "stripe" | "aftership")
                .then(|| format!("raw.{p}"))
        };
        let env = |links: serde_json::Value| -> Envelope {
            serde_json::from_value(serde_json::json!({
                "tenant": "acme", "provider": "stripe", "event_id": "evt_1",
                "occurred_at": "2026-03-01T10:00:00Z", "type": "PaymentSucceeded",
                "data": {"provider": "stripe", "payment_id": "pi_1", "links": links,
                         "status": "succeeded", "amount": {"minor": 100, "currency": "USD"},
                         "at": "2026-03-01T10:00:00Z"}
            }))
            .expect("an envelope")
        };
        let stores = topics(&["shopify", "woocommerce"]);
        let named = env(serde_json::json!([
            {"by": "order", "order_id": "woocommerce:727"},
            {"by": "payment", "provider": "stripe", "reference": "pi_1"}
        ]));
        assert_eq!(waited_for(&named), vec!["order:woocommerce:727"]);
        assert_eq!(
            release_topics(&named, &stores, raw),
            vec!["raw.woocommerce"]
        );
        let by_ref = env(serde_json::json!([
            {"by": "payment", "provider": "stripe", "reference": "pi_1"}
        ]));
        assert_eq!(waited_for(&by_ref), vec!["payment:stripe:pi_1"]);
        assert_eq!(
            release_topics(&by_ref, &stores, raw),
            vec!["raw.shopify", "raw.stripe", "raw.woocommerce"]
        );
    }
}
