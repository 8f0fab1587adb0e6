//! "Newest per key": what of a batch is worth writing.

use std::collections::HashMap;

use crate::{Item, SinkRecord};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Customer(String, String),
    Order(String, String),
    /// Tenant, provider, payout id: payout ids are unique per provider only.
    Payout(String, String, String),
    Trigger(String),
}

fn key_of(item: &Item) -> Key {
    match item {
        Item::Customer(c) => Key::Customer(c.tenant.clone(), c.customer_id.clone()),
        Item::Order(o) => Key::Order(o.tenant.clone(), o.order_id.clone()),
        Item::Payout(p) => Key::Payout(p.tenant.clone(), p.provider.clone(), p.payout_id.clone()),
        Item::Trigger(t) => Key::Trigger(t.trigger_id.clone()),
    }
}

/// Keeps the newest `(generation, version)` of every customer, order and payout (the
/// later record on a tie) and the first record of every `trigger_id`, in the
/// order of first appearance. Returns the kept records and the superseded ones.
pub fn newest_per_key(records: Vec<SinkRecord>) -> (Vec<SinkRecord>, Vec<SinkRecord>) {
    let mut kept: Vec<SinkRecord> = Vec::with_capacity(records.len());
    let mut superseded = Vec::new();
    let mut at: HashMap<Key, usize> = HashMap::with_capacity(records.len());
    for r in records {
        match at.entry(key_of(&r.item)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(kept.len());
                kept.push(r);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let old = &mut kept[*o.get()];
                let newer = match (r.item.generation_version(), old.item.generation_version()) {
                    (Some(new), Some(cur)) => new >= cur,
                    // A trigger is written once: the first delivery stands.
                    _ => false,
                };
                if newer {
                    superseded.push(std::mem::replace(old, r));
                } else {
                    superseded.push(r);
                }
            }
        }
    }
    (kept, superseded)
}

#[cfg(test)]
mod tests {
    use storefold_codec::{CustomerProjection, PayoutProjection, Trigger};

    use super::*;
    use crate::SourcePosition;

    fn customer(id: &str, generation: i64, version: i64) -> SinkRecord {
        SinkRecord {
            item: Item::Customer(CustomerProjection {
                tenant: "acme".into(),
                customer_id: id.into(),
                generation,
                version,
                email: None,
                phone: None,
                redacted: false,
                merged_into: None,
                updated_at: 0,
                doc: "{}".into(),
                view: None,
            }),
            key: format!("acme/{id}").into_bytes(),
            value: Vec::new(),
            headers: Vec::new(),
            source: SourcePosition {
                topic: "customers".into(),
                partition: 0,
                offset: version,
            },
            received_at_ms: None,
        }
    }

    fn payout(provider: &str, generation: i64, version: i64) -> SinkRecord {
        SinkRecord {
            item: Item::Payout(PayoutProjection {
                tenant: "acme".into(),
                provider: provider.into(),
                payout_id: "po_1".into(),
                generation,
                version,
                status: None,
                currency: None,
                amount: None,
                difference: None,
                reconciled: false,
                updated_at: 0,
                doc: "{}".into(),
            }),
            key: format!("acme/{provider}:po_1").into_bytes(),
            value: Vec::new(),
            headers: Vec::new(),
            source: SourcePosition {
                topic: "payouts".into(),
                partition: 0,
                offset: version,
            },
            received_at_ms: None,
        }
    }

    fn trigger(id: &str, offset: i64) -> SinkRecord {
        SinkRecord {
            item: Item::Trigger(Trigger {
                trigger_id: id.into(),
                tenant: "acme".into(),
                customer_id: "c1".into(),
                order_id: None,
                kind: "delivered".into(),
                occurred_at: 0,
                source_event_id: "e".into(),
                data: "{}".into(),
            }),
            key: b"acme/c1".to_vec(),
            value: Vec::new(),
            headers: Vec::new(),
            source: SourcePosition {
                topic: "triggers".into(),
                partition: 0,
                offset,
            },
            received_at_ms: None,
        }
    }

    #[test]
    fn newest_per_key_keeps_the_newest_generation_then_version() {
        let (kept, superseded) = newest_per_key(vec![
            customer("c1", 1, 5),
            customer("c2", 1, 1),
            customer("c1", 1, 3),
            customer("c1", 2, 1),
            customer("c2", 1, 2),
            customer("c1", 1, 9),
        ]);
        let gv: Vec<(String, Option<(i64, i64)>)> = kept
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone()).unwrap(),
                    r.item.generation_version(),
                )
            })
            .collect();
        assert_eq!(
            gv,
            vec![
                ("acme/c1".to_string(), Some((2, 1))),
                ("acme/c2".to_string(), Some((1, 2)))
            ]
        );
        assert_eq!(superseded.len(), 4);
    }

    #[test]
    fn newest_per_key_writes_each_trigger_once() {
        let (kept, superseded) =
            newest_per_key(vec![trigger("t1", 0), trigger("t2", 1), trigger("t1", 2)]);
        let offsets: Vec<i64> = kept.iter().map(|r| r.source.offset).collect();
        assert_eq!(offsets, vec![0, 1]);
        assert_eq!(superseded.len(), 1);
        assert_eq!(superseded[0].source.offset, 2);
    }

    #[test]
    fn newest_per_key_keeps_the_newest_payout_per_provider() {
        let (kept, superseded) = newest_per_key(vec![
            payout("stripe", 1, 4),
            payout("adyen", 1, 1),
            payout("stripe", 1, 6),
            payout("stripe", 1, 5),
            payout("adyen", 2, 1),
        ]);
        let gv: Vec<(String, Option<(i64, i64)>)> = kept
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone()).unwrap(),
                    r.item.generation_version(),
                )
            })
            .collect();
        assert_eq!(
            gv,
            vec![
                ("acme/stripe:po_1".to_string(), Some((1, 6))),
                ("acme/adyen:po_1".to_string(), Some((2, 1)))
            ]
        );
        assert_eq!(superseded.len(), 3);
    }
}
