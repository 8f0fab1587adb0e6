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
            self.enqueue_erasure(c);
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
        let stamp = (c.generation, c.version);
        let source = SourceId::of(&Item::Customer(c.clone()));
        // An erasure of the same or a newer version waits: this older version
        // must neither bring the contact back nor its email into memory.
        if let Some(e) = self.queue.erasures.get_mut(&key)
            && e.stamp >= stamp
        {
            if e.source != source && !e.also.contains(&source) {
                e.also.push(source);
            }
            return;
        }
        if self.memory.written_at_least('c', &key, stamp) {
            if !self.memory.erased.contains(&key) {
                bounded(&mut self.memory.emails);
                self.memory.emails.insert(key, email);
            }
            return;
        }
        bounded(&mut self.memory.emails);
        self.memory.emails.insert(key.clone(), email.clone());
        // A newer version (a replay's new generation) than a waiting erasure:
        // the newest wins, as for any other update.
        let superseded = self
            .queue
            .erasures
            .remove(&key)
            .map(|e| e.sources())
            .unwrap_or_default();
        let orders = c
            .customer_view()
            .map(|v| v.orders.iter().map(|o| o.order_id.clone()).collect())
            .unwrap_or_default();
        let part = CustomerPart {
            source,
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
        op.also.extend(superseded);
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

    /// A redacted customer: its contact is to be deleted with HubSpot's GDPR
    /// delete, and nothing older that still waits for it may be sent.
    pub(super) fn enqueue_erasure(&mut self, c: &CustomerProjection) {
        let key = customer_key(&c.tenant, &c.customer_id);
        let stamp = (c.generation, c.version);
        let source = SourceId::of(&Item::Customer(c.clone()));
        // A newer version waiting to be upserted, or written already, that is
        // not redacted (a replay's new generation) wins, as any newer version
        // does.
        if let Some(op) = self.queue.contacts.values_mut().find(|op| {
            op.customer
                .as_ref()
                .is_some_and(|p| p.key == key && p.stamp > stamp)
        }) {
            if !op.also.contains(&source) {
                op.also.push(source);
            }
            return;
        }
        if self.memory.written_at_least('c', &key, stamp) && !self.memory.erased.contains(&key) {
            return;
        }
        // Triggers of the customer no longer find its email.
        let email = self.memory.emails.remove(&key);
        // Older upserts of the customer still waiting (a write that failed
        // before they went out), and triggers waiting for its contact, must not
        // bring the contact back after the delete: they are cancelled and
        // answered by the delete.
        let mut cancelled = Vec::new();
        let stale: Vec<String> = self
            .queue
            .contacts
            .iter()
            .filter(|(e, op)| match &op.customer {
                Some(p) => p.key == key,
                None => email.as_deref() == Some(e.as_str()),
            })
            .map(|(e, _)| e.clone())
            .collect();
        for e in stale {
            if let Some(op) = self.queue.contacts.remove(&e) {
                cancelled.extend(op.sources());
            }
        }
        self.queue.wants.retain(|w| w.customer_key != key);
        if self.memory.written_at_least('c', &key, stamp) {
            // Deleted already (a redelivery).
            return;
        }
        if let Some(e) = self.queue.erasures.get_mut(&key) {
            // One delete per contact: the newest version speaks for it, the
            // others are answered with it.
            if stamp > e.stamp {
                let old = std::mem::replace(&mut e.source, source);
                e.stamp = stamp;
                e.also.push(old);
            } else if e.source != source && !e.also.contains(&source) {
                e.also.push(source);
            }
            e.also.extend(cancelled);
            if e.email.is_none() {
                e.email = email;
            }
            return;
        }
        // Addressed by the property customer_id is mapped to (it must have
        // unique values), else by the email this process remembers.
        let target = match self.mapping.contact_property("customer_id") {
            Some(p) => Some((p.to_string(), c.customer_id.clone())),
            None => email.clone().map(|e| ("email".to_string(), e)),
        };
        let Some((id_property, object_id)) = target else {
            self.metrics.skip(ERASURE_UNADDRESSABLE);
            let mut sources = vec![source];
            sources.extend(cancelled);
            self.reject(
                sources,
                ERASURE_UNADDRESSABLE,
                "the customer was erased, but its HubSpot contact cannot be addressed: \
                 [sinks.hubspot.contact_properties] maps no property to customer_id and \
                 this process does not know the contact's email; delete the contact in \
                 HubSpot by hand (GDPR delete)",
            );
            return;
        };
        let seq = self.next_seq();
        self.queue.erasures.insert(
            key,
            ErasureOp {
                source,
                stamp,
                id_property,
                object_id,
                email,
                also: cancelled,
                seq,
            },
        );
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
        // A redacted order is not linked to its customer's contact (which is
        // deleted, or about to be).
        let redacted = o.order_view().is_some_and(|v| v.redacted);
        let customer_key = o
            .customer_id
            .as_deref()
            .filter(|_| !redacted)
            .map(|c| customer_key(&o.tenant, c));
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
