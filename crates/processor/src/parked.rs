//! Parked events are bounded in time: what a task knows about the events
//! waiting for their order, and the task's log time they are measured in.
//!
//! An event naming an order that does not exist yet is parked by the fold
//! (`Outcome::Parked`). The task keeps every parked event's receive time in a
//! [`ParkedIndex`] (scanned from its state at start, then kept up to date from
//! the fold's outcomes and each batch's state changes) and gives up on those
//! received more than `processor.park_timeout_hours` before its [`LogClock`]:
//! they go to `dlq.processor` with reason `unresolved_order`, in the batch that
//! expires them.
//!
//! Both structures journal what the open batch changed, so an abandoned batch
//! rolls them back to the committed state with the engine's working set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use storefold_core::Envelope;
use storefold_core::engine::ParkedEvent;
use storefold_core::event::{Event, OrderLink};

/// (tenant, event id) of a parked event.
pub type ParkedId = (String, String);

/// The parked events of a task by receive time (milliseconds since the epoch).
#[derive(Debug, Default)]
pub struct ParkedIndex {
    by_time: BTreeSet<(i64, String, String)>,
    by_id: HashMap<ParkedId, i64>,
    /// Previous values of what the open batch changed, oldest first.
    undo: Vec<(ParkedId, Option<i64>)>,
}

impl ParkedIndex {
    /// Parked events waiting.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Receive time of the oldest parked event.
    pub fn oldest(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _, _)| *at)
    }

    fn set(&mut self, id: ParkedId, at: Option<i64>) -> Option<i64> {
        let before = match at {
            Some(at) => self.by_id.insert(id.clone(), at),
            None => self.by_id.remove(&id),
        };
        if let Some(b) = before {
            self.by_time.remove(&(b, id.0.clone(), id.1.clone()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, id.0, id.1));
        }
        before
    }

    /// Records that `(tenant, event_id)` is parked since `received_at`.
    pub fn insert(&mut self, tenant: &str, event_id: &str, received_at: i64) {
        let id = (tenant.to_string(), event_id.to_string());
        let before = self.set(id.clone(), Some(received_at));
        if before != Some(received_at) {
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

    /// The events received before `cutoff`, oldest first.
    pub fn received_before(&self, cutoff: i64) -> Vec<ParkedId> {
        self.by_time
            .iter()
            .take_while(|(at, _, _)| *at < cutoff)
            .map(|(_, t, e)| (t.clone(), e.clone()))
            .collect()
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

/// A task's log time: how far its input has been read, in the ingest's receive
/// times, never the processor's clock (a replay reaches the same times).
///
/// A task reads several raw topics whose partitions the consumer fetches at
/// their own pace: during a catch-up or a replay one topic may be read days
/// ahead of another. The log time is therefore the newest receive time read
/// from each raw topic that still has records to read (the slowest of them
/// decides), and the newest read from any topic once every topic is read to
/// the end of what it held when last measured. It never goes back.
#[derive(Debug, Default)]
pub struct LogClock {
    /// Newest receive time read per raw topic since the task started.
    progress: BTreeMap<String, i64>,
    /// The end (high watermark) of each raw topic partition, as last measured.
    ends: BTreeMap<String, i64>,
    now: i64,
    newest: i64,
    committed: (BTreeMap<String, i64>, i64, i64),
}

impl LogClock {
    pub fn new() -> Self {
        Self {
            now: i64::MIN,
            newest: i64::MIN,
            committed: (BTreeMap::new(), i64::MIN, i64::MIN),
            ..Self::default()
        }
    }

    /// A raw event of `topic` received at `received_at` was read.
    pub fn read(&mut self, topic: &str, received_at: i64) {
        let p = self.progress.entry(topic.to_string()).or_insert(i64::MIN);
        *p = (*p).max(received_at);
        self.newest = self.newest.max(received_at);
    }

    /// Where `topic`'s partition ends (its high watermark), as just measured.
    pub fn set_end(&mut self, topic: &str, end: i64) {
        self.ends.insert(topic.to_string(), end);
    }

    /// The newest receive time read from any topic: the log time can be no later.
    pub fn newest(&self) -> i64 {
        self.newest.max(self.now)
    }

    /// The log time, given the task's next offset per raw topic.
    pub fn now(&mut self, positions: &BTreeMap<String, i64>) -> i64 {
        let mut slowest: Option<i64> = None;
        let mut hold = false;
        for (topic, next) in positions {
            let read_to_end = self.ends.get(topic).is_some_and(|end| next >= end);
            if read_to_end {
                continue;
            }
            match self.progress.get(topic) {
                Some(p) => slowest = Some(slowest.map_or(*p, |s| s.min(*p))),
                // Records to read and none read yet: nothing is known of its time.
                None => hold = true,
            }
        }
        let candidate = if hold {
            None
        } else {
            slowest.or((self.newest > i64::MIN).then_some(self.newest))
        };
        if let Some(c) = candidate {
            self.now = self.now.max(c);
        }
        self.now
    }

    pub fn commit(&mut self) {
        self.committed = (self.progress.clone(), self.now, self.newest);
    }

    pub fn rollback(&mut self) {
        let (progress, now, newest) = self.committed.clone();
        self.progress = progress;
        self.now = now;
        self.newest = newest;
    }
}

/// The order references a parked event waits for, as the fold files it: an
/// order it names outright (`order:woocommerce:727`), else every reference it
/// carries (`payment:stripe:pi_1`, `tracking:1Z…`, `number:#1001`).
pub fn waited_for(env: &Envelope) -> Vec<String> {
    let links: &[OrderLink] = match &env.event {
        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => &p.links,
        Event::RefundIssued(r) => &r.links,
        Event::DisputeOpened(d) | Event::DisputeClosed(d) => &d.links,
        Event::ShipmentUpdated(s) => &s.links,
        Event::ReturnRequested(r) | Event::ReturnResolved(r) => &r.links,
        _ => &[],
    };
    let key = |l: &OrderLink| match l {
        OrderLink::Order { order_id } => format!("order:{order_id}"),
        OrderLink::Payment {
            provider,
            reference,
        } => format!("payment:{provider}:{reference}"),
        OrderLink::Tracking { number } => format!("tracking:{number}"),
        OrderLink::Number { number } => format!("number:{number}"),
    };
    let explicit: Vec<String> = links
        .iter()
        .filter(|l| matches!(l, OrderLink::Order { .. }))
        .map(key)
        .collect();
    let mut out = if explicit.is_empty() || matches!(env.event, Event::ShipmentUpdated(_)) {
        links.iter().map(key).collect()
    } else {
        explicit
    };
    if let Event::ShipmentUpdated(s) = &env.event {
        out.push(format!("tracking:{}", s.tracking_number));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(p: &[(&str, i64)]) -> BTreeMap<String, i64> {
        p.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn the_index_finds_the_old_ones_and_rolls_an_abandoned_batch_back() {
        let mut ix = ParkedIndex::default();
        ix.insert("acme", "e1", 100);
        ix.insert("acme", "e2", 300);
        ix.insert("globex", "e3", 200);
        ix.commit();
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.oldest(), Some(100));
        assert_eq!(
            ix.received_before(300),
            vec![("acme".into(), "e1".into()), ("globex".into(), "e3".into())]
        );
        // A batch removes one, re-times one and adds one, then is abandoned.
        ix.remove("acme", "e1");
        ix.insert("globex", "e3", 50);
        ix.insert("acme", "e4", 10);
        ix.remove("acme", "e4");
        assert_eq!(ix.oldest(), Some(50));
        ix.rollback();
        assert_eq!(ix.len(), 3);
        assert_eq!(
            ix.received_before(i64::MAX),
            vec![
                ("acme".into(), "e1".into()),
                ("globex".into(), "e3".into()),
                ("acme".into(), "e2".into())
            ]
        );
        // A committed batch stays.
        ix.remove("acme", "e2");
        ix.commit();
        ix.rollback();
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn log_time_follows_the_slowest_topic_that_still_has_records() {
        let mut c = LogClock::new();
        c.set_end("raw.shopify", 10);
        c.set_end("raw.stripe", 10);
        c.set_end("raw.zendesk", 0);
        // Nothing read from shopify yet while it has records: no time known.
        c.read("raw.stripe", 5_000);
        let pos = positions(&[("raw.shopify", 0), ("raw.stripe", 3), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), i64::MIN);
        // Stripe is read far ahead of shopify: shopify's time decides.
        c.read("raw.shopify", 1_000);
        c.read("raw.stripe", 90_000);
        let pos = positions(&[("raw.shopify", 2), ("raw.stripe", 8), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), 1_000);
        assert_eq!(c.newest(), 90_000);
        // Stripe read to its end no longer holds anything back; shopify goes on.
        c.read("raw.shopify", 4_000);
        let pos = positions(&[("raw.shopify", 5), ("raw.stripe", 10), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), 4_000);
        c.commit();
        // Everything read: the newest receive time of all.
        c.read("raw.shopify", 7_000);
        let pos = positions(&[("raw.shopify", 10), ("raw.stripe", 10), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), 90_000);
        // Abandoned: back to the committed time and progress.
        c.rollback();
        let pos = positions(&[("raw.shopify", 5), ("raw.stripe", 10), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), 4_000);
        c.read("raw.shopify", 7_000);
        let pos = positions(&[("raw.shopify", 10), ("raw.stripe", 10), ("raw.zendesk", 0)]);
        assert_eq!(c.now(&pos), 90_000);
        // New shopify records (measured again): shopify's 7 000 holds the
        // time from going further, but it never goes back.
        c.set_end("raw.shopify", 20);
        assert_eq!(c.now(&pos), 90_000);
    }
}
