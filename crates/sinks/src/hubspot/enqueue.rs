//! Projections and triggers turned into the queue's upserts, coalesced per HubSpot object.

use super::*;

impl Portal {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.queue.seq += 1;
        self.queue.seq
    }

    pub(super) fn enqueue_customer(&mut self, c: &CustomerProjection) {
        let key = customer_key(&c.tenant, &c.customer_id);
        if c.merged_into.is_some() {
            self.metrics.skip("merged");
            self.memory.emails.remove(&key);
            return;
        }
        if c.redacted {
            self.metrics.skip("redacted");
            self.memory.emails.remove(&key);
            return;
        }
        let Some(email) = c
            .email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
        else {
            self.metrics.skip("no_email");
            return;
        };
        bounded(&mut self.memory.emails);
        self.memory.emails.insert(key.clone(), email.clone());
        let stamp = (c.generation, c.version);
        if self.memory.written_at_least('c', &key, stamp) {
            return;
        }
        let orders = c
            .customer_view()
            .map(|v| v.orders.iter().map(|o| o.order_id.clone()).collect())
            .unwrap_or_default();
        let part = CustomerPart {
            source: SourceId::of(&Item::Customer(c.clone())),
            key,
            stamp,
            updated_at: c.updated_at,
            props: self.mapping.contact(c),
            orders,
        };
        let seq = self.next_seq();
        let op = self
            .queue
            .contacts
            .entry(email)
            .or_insert_with(|| ContactOp::empty(seq));
        let Some(cur) = op.customer.as_mut() else {
            op.customer = Some(part);
            return;
        };
        let newer = if cur.key == part.key {
            part.stamp > cur.stamp
        } else {
            // Two customers with one email (a merge in flight): the most
            // recently changed one speaks for the contact.
            part.updated_at >= cur.updated_at
        };
        if newer {
            let old = std::mem::replace(cur, part);
            op.also.push(old.source);
        } else if part.source != cur.source {
            op.also.push(part.source);
        }
    }

    pub(super) fn enqueue_trigger(&mut self, t: &Trigger) {
        if self.memory.triggers_done.contains(&t.trigger_id) {
            return;
        }
        let key = customer_key(&t.tenant, &t.customer_id);
        let Some(email) = self.memory.emails.get(&key).cloned() else {
            self.metrics.skip("trigger_unknown_customer");
            return;
        };
        let priority = PRIORITY_TRIGGERS.contains(&t.kind.as_str());
        let newer = self
            .memory
            .last_trigger_at
            .get(&email)
            .is_none_or(|at| t.occurred_at > *at);
        let props = if newer {
            self.mapping.trigger(t)
        } else {
            BTreeMap::new()
        };
        let source = SourceId::Trigger {
            trigger_id: t.trigger_id.clone(),
        };
        if props.is_empty() && !priority && !self.queue.contacts.contains_key(&email) {
            // Nothing to send for it.
            self.memory.triggers_done.insert(t.trigger_id.clone());
            return;
        }
        let seq = self.next_seq();
        let op = self
            .queue
            .contacts
            .entry(email)
            .or_insert_with(|| ContactOp::empty(seq));
        op.priority |= priority;
        if !props.is_empty() && t.occurred_at > op.trigger_at {
            op.trigger_props = props;
            op.trigger_at = t.occurred_at;
        }
        if !op.also.contains(&source) {
            op.also.push(source);
        }
    }

    pub(super) fn enqueue_order(&mut self, o: &OrderProjection) {
        let key = order_key(&o.tenant, &o.order_id);
        let stamp = (o.generation, o.version);
        if self.memory.written_at_least('o', &key, stamp) {
            return;
        }
        let source = SourceId::of(&Item::Order(o.clone()));
        let props = self.mapping.deal(o);
        let customer_key = o.customer_id.as_deref().map(|c| customer_key(&o.tenant, c));
        let seq = self.next_seq();
        match self.queue.deals.get_mut(&o.order_id) {
            Some(cur) if cur.key == key && cur.stamp >= stamp => {
                if cur.source != source {
                    cur.also.push(source);
                }
            }
            Some(cur) => {
                let old = std::mem::replace(
                    cur,
                    DealOp {
                        source,
                        key,
                        stamp,
                        customer_key,
                        props,
                        also: Vec::new(),
                        seq,
                    },
                );
                cur.also = old.also;
                cur.also.push(old.source);
            }
            None => {
                self.queue.deals.insert(
                    o.order_id.clone(),
                    DealOp {
                        source,
                        key,
                        stamp,
                        customer_key,
                        props,
                        also: Vec::new(),
                        seq,
                    },
                );
            }
        }
    }
}
