//! Orders and their references: events placed by order, payment, tracking or number, and events parked until their order is known.

use super::*;

impl Engine {
    pub(super) fn order_mut<'a>(
        &'a mut self,
        src: &dyn Source,
        tenant: &str,
        order_id: &str,
    ) -> &'a mut Order {
        let slot = self.get_mut(
            src,
            StateKey::new(tenant, Item::Order(order_id.to_string())),
        );
        if !matches!(slot, Some(StateValue::Order(_))) {
            *slot = Some(StateValue::Order(Arc::new(Order::new(order_id))));
        }
        match slot {
            Some(StateValue::Order(o)) => Arc::make_mut(o),
            _ => unreachable!("just set"),
        }
    }

    /// Applies to the order; true when it changed.
    pub(super) fn apply_to_order(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        order_id: &str,
    ) -> bool {
        let tenant = env.tenant.as_str();
        let checkpoints = self.config.limits.checkpoints;
        let config = Arc::clone(&self.config);
        let order = self.order_mut(src, tenant, order_id);
        let tracking = match &env.event {
            Event::ShipmentUpdated(s) if !s.tracking_number.starts_with("fulfillment:") => {
                Some(s.tracking_number.clone())
            }
            _ => None,
        };
        if !order.apply(env, config.key_scope(tenant)) {
            return false;
        }
        if matches!(env.event, Event::ShipmentUpdated(_)) {
            for s in order.shipments.values_mut() {
                s.bound(checkpoints);
            }
        }
        self.dirty_orders
            .insert((tenant.to_string(), order_id.to_string()));
        if let Event::PayoutLine(l) = &env.event {
            self.place_payout_line(src, tenant, l, order_id);
        }
        if let Some(t) = tracking {
            // A store's fulfillment names its parcel: the carrier's events of
            // that number belong to this order too.
            self.learn_ref(src, tenant, &format!("tracking:{t}"), order_id);
        }
        true
    }

    /// Whether the order exists (the store's snapshot of it has arrived).
    pub(super) fn order_exists(&mut self, src: &dyn Source, tenant: &str, order_id: &str) -> bool {
        matches!(
            self.get(src, StateKey::new(tenant, Item::Order(order_id.to_string()))),
            Some(StateValue::Order(o)) if o.snapshot.is_some()
        )
    }

    pub(super) fn learn_ref(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        reference: &str,
        order_id: &str,
    ) {
        let slot = self.slot(src, StateKey::new(tenant, Item::Ref(reference.to_string())));
        let added = match &mut slot.value {
            Some(StateValue::Ref(set)) => set.insert(order_id.to_string()),
            other => {
                *other = Some(StateValue::Ref(BTreeSet::from([order_id.to_string()])));
                true
            }
        };
        if !added {
            return;
        }
        slot.dirty = true;
        if let Some(t) = reference.strip_prefix("tracking:") {
            // The order holds the parcel: its view shows the carrier's events.
            let t = t.to_string();
            let order = self.order_mut(src, tenant, order_id);
            order.parcels.insert(t);
            self.dirty_orders
                .insert((tenant.to_string(), order_id.to_string()));
        }
        self.release(src, tenant, reference);
    }

    /// The orders a reference names.
    pub(super) fn ref_orders(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        reference: &str,
    ) -> BTreeSet<OrderId> {
        match self.get(src, StateKey::new(tenant, Item::Ref(reference.to_string()))) {
            Some(StateValue::Ref(s)) => s.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// The order a reference resolves to: the one it names, or, when a
    /// reference names several (which the providers' data should not do), the
    /// smallest id, so the choice does not depend on arrival.
    pub(super) fn resolve_ref(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        reference: &str,
    ) -> Option<OrderId> {
        match self.get(src, StateKey::new(tenant, Item::Ref(reference.to_string()))) {
            Some(StateValue::Ref(s)) => s.first().cloned(),
            _ => None,
        }
    }

    /// Applies an event that names its order through links.
    ///
    /// An order named outright (`OrderLink::Order`) wins over any reference;
    /// the event waits (parked under `order:<id>`) until that order exists and
    /// never makes an order of its own. Otherwise the first reference that
    /// resolves decides; with none, the event waits under every reference it
    /// names. A payment event that found its order teaches it the payment
    /// references it carries (the provider's own word that they belong to it).
    pub(super) fn apply_linked(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        links: &[OrderLink],
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        if links.is_empty() {
            return Err(FoldError::NoOrderLink);
        }
        let explicit: Vec<&OrderId> = links
            .iter()
            .filter_map(|l| match l {
                OrderLink::Order { order_id } => Some(order_id),
                _ => None,
            })
            .collect();
        let refs: Vec<String> = links
            .iter()
            .filter(|l| !matches!(l, OrderLink::Order { .. }))
            .map(link_key)
            .collect();
        let target = if explicit.is_empty() {
            match refs.iter().find_map(|r| self.resolve_ref(src, tenant, r)) {
                Some(o) => o,
                None => return Ok(self.park(src, env, refs)),
            }
        } else {
            match explicit
                .iter()
                .find(|o| self.order_exists(src, tenant, o))
                .map(|o| (*o).clone())
            {
                Some(o) => o,
                None => {
                    let keys = explicit.iter().map(|o| format!("order:{o}")).collect();
                    return Ok(self.park(src, env, keys));
                }
            }
        };
        let changed = self.apply_to_order(src, env, &target);
        for r in refs.iter().filter(|r| r.starts_with("payment:")) {
            self.learn_ref(src, tenant, r, &target);
        }
        Ok(if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        })
    }

    /// A carrier's tracking event: it belongs to the parcel of its tracking
    /// number, which every order holding the number shows (a combined parcel
    /// shows on each). An order the carrier names (outright or by its number)
    /// comes to hold the parcel once it exists. With no order holding the
    /// number yet, the event also waits (parked) so that an order that never
    /// comes is noticed.
    pub(super) fn apply_parcel(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        s: &Shipment,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let number = s.tracking_number.clone();
        let key = StateKey::new(tenant, Item::Parcel(number.clone()));
        let checkpoints = self.config.limits.checkpoints;
        let changed = {
            let slot = self.slot(src, key);
            let changed = match &mut slot.value {
                Some(StateValue::Parcel(p)) => p.apply(s, env),
                other => {
                    let mut p = Parcel::new(&number);
                    let changed = p.apply(s, env);
                    *other = Some(StateValue::Parcel(Box::new(p)));
                    changed
                }
            };
            if changed && let Some(StateValue::Parcel(p)) = &mut slot.value {
                p.entry.bound(checkpoints);
            }
            slot.dirty |= changed;
            changed
        };
        let tracking_ref = format!("tracking:{number}");
        // Orders the carrier names: they hold the parcel once they exist.
        let mut unresolved = Vec::new();
        for l in &s.links {
            let claimed = match l {
                OrderLink::Order { order_id } => self
                    .order_exists(src, tenant, order_id)
                    .then(|| order_id.clone()),
                OrderLink::Number { .. } => self.resolve_ref(src, tenant, &link_key(l)),
                _ => continue,
            };
            match claimed {
                Some(o) => self.learn_ref(src, tenant, &tracking_ref, &o),
                None => unresolved.push(link_key(l)),
            }
        }
        let holders = self.ref_orders(src, tenant, &tracking_ref);
        let mut waiting = unresolved;
        if holders.is_empty() {
            waiting.push(tracking_ref);
        }
        let outcome = if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        };
        if !waiting.is_empty() {
            let parked = self.park(src, env, waiting);
            if holders.is_empty() {
                return Ok(match parked {
                    Outcome::Duplicate => outcome,
                    p => p,
                });
            }
        }
        for o in holders {
            self.dirty_orders.insert((tenant.to_string(), o));
        }
        Ok(outcome)
    }

    pub(super) fn park(&mut self, src: &dyn Source, env: &Envelope, refs: Vec<String>) -> Outcome {
        let tenant = env.tenant.as_str();
        let received_at = self.received_at;
        let slot = self.slot(
            src,
            StateKey::new(tenant, Item::Parked(env.event_id.clone())),
        );
        if slot.value.is_some() {
            return Outcome::Duplicate;
        }
        let erasure_keys = self.persons_of(env);
        // A person already erased, or an order a redaction named: the event
        // waits without its personal data.
        let mut envelope = env.clone();
        if erasure_keys
            .iter()
            .any(|k| self.is_redacted(src, tenant, k))
            || refs
                .iter()
                .any(|r| self.names_redacted_order(src, tenant, r))
        {
            envelope.event.scrub();
        }
        for k in &erasure_keys {
            let slot = self.get_mut(src, StateKey::new(tenant, Item::ParkedBy(who(k))));
            match slot {
                Some(StateValue::ParkedBy(set)) => {
                    set.insert(env.event_id.clone());
                }
                other => {
                    *other = Some(StateValue::ParkedBy(BTreeSet::from([env.event_id.clone()])));
                }
            }
        }
        self.put(
            StateKey::new(tenant, Item::Parked(env.event_id.clone())),
            Some(StateValue::Parked(Box::new(ParkedEvent {
                envelope,
                received_at,
                erasure_keys,
            }))),
        );
        for r in &refs {
            // In place; written (marked changed) even when the id was there.
            let slot = self.get_mut(src, StateKey::new(tenant, Item::ParkedBy(r.clone())));
            match slot {
                Some(StateValue::ParkedBy(set)) => {
                    set.insert(env.event_id.clone());
                }
                other => {
                    *other = Some(StateValue::ParkedBy(BTreeSet::from([env.event_id.clone()])));
                }
            }
        }
        Outcome::Parked(refs)
    }

    /// Applies the events parked under a reference that just became known.
    pub(super) fn release(&mut self, src: &dyn Source, tenant: &str, reference: &str) {
        // Taken out of the working set (the record is deleted), not copied.
        let slot = self.slot(
            src,
            StateKey::new(tenant, Item::ParkedBy(reference.to_string())),
        );
        if !matches!(slot.value, Some(StateValue::ParkedBy(_))) {
            return;
        }
        slot.dirty = true;
        let Some(StateValue::ParkedBy(ids)) = slot.value.take() else {
            return;
        };
        for id in ids {
            let slot = self.slot(src, StateKey::new(tenant, Item::Parked(id.clone())));
            if !matches!(slot.value, Some(StateValue::Parked(_))) {
                continue; // released through another reference already
            }
            slot.dirty = true;
            let Some(StateValue::Parked(parked)) = slot.value.take() else {
                continue;
            };
            self.unfile_persons(src, tenant, &parked, &id);
            // It resolves now (or parks again under what it still waits for, with
            // its original receive time). It cannot fail: only events with links
            // are parked, and the link error is the only one linking returns.
            let _ = self.apply_received(src, &parked.envelope, parked.received_at);
        }
    }

    /// Gives up on a parked event: removes it (and its entries under the
    /// references it waited for) and returns it, for the dead-letter topic.
    /// `None` when it is no longer parked (it was released meanwhile).
    pub fn expire_parked(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        event_id: &str,
    ) -> Option<ParkedEvent> {
        let pkey = StateKey::new(tenant, Item::Parked(event_id.to_string()));
        let parked = match self.get(src, pkey.clone()) {
            Some(StateValue::Parked(p)) => (**p).clone(),
            _ => return None,
        };
        self.put(pkey, None);
        self.unfile_persons(src, tenant, &parked, event_id);
        // (An event waiting for an order a redaction named was scrubbed when
        // it was parked or when the redaction came: it leaves as stored.)
        for r in parked_keys(&parked.envelope) {
            self.unfile(src, tenant, r, event_id);
        }
        Some(parked)
    }

    /// Whether the filing `r` is `order:<id>` of an order a redaction named
    /// (or an erased order).
    fn names_redacted_order(&mut self, src: &dyn Source, tenant: &str, r: &str) -> bool {
        r.strip_prefix("order:").is_some_and(|oid| {
            matches!(
                self.get(src, StateKey::new(tenant, Item::Order(oid.to_string()))),
                Some(StateValue::Order(o)) if o.redacted
            )
        })
    }
}

/// The filing of parked events under a person's identity key.
pub(super) fn who(k: &IdentityKey) -> String {
    format!("who:{k}")
}

impl Engine {
    /// The identity keys of the person a parkable event names: a payment's
    /// payer (the only personal data an order-linked event carries as an
    /// identity).
    fn persons_of(&self, env: &Envelope) -> Vec<IdentityKey> {
        match &env.event {
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => {
                p.payer.keys(self.config.key_scope(&env.tenant))
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn is_redacted(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> bool {
        matches!(
            self.get(src, StateKey::new(tenant, Item::Fragment(k.clone()))),
            Some(StateValue::Fragment(f)) if f.redacted
        )
    }

    /// Takes a parked event that is no longer parked out of its persons' filings.
    fn unfile_persons(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        parked: &ParkedEvent,
        event_id: &str,
    ) {
        for k in &parked.erasure_keys {
            self.unfile(src, tenant, who(k), event_id);
        }
    }

    /// Takes `event_id` out of the events filed under `filing` (the record
    /// goes when it was the last one).
    fn unfile(&mut self, src: &dyn Source, tenant: &str, filing: String, event_id: &str) {
        let key = StateKey::new(tenant, Item::ParkedBy(filing));
        let next = match self.get(src, key.clone()) {
            Some(StateValue::ParkedBy(s)) if s.contains(event_id) => {
                let mut s = s.clone();
                s.remove(event_id);
                Some(s)
            }
            _ => None,
        };
        if let Some(s) = next {
            let value = (!s.is_empty()).then_some(StateValue::ParkedBy(s));
            self.put(key, value);
        }
    }

    /// Erases the personal data of the events parked that name `k`'s person.
    pub(super) fn erase_parked(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) {
        self.scrub_parked(src, tenant, who(k));
    }

    /// Scrubs the events waiting under `filing` (`who:<key>`, `order:<id>`).
    pub(super) fn scrub_parked(&mut self, src: &dyn Source, tenant: &str, filing: String) {
        let ids = match self.get(src, StateKey::new(tenant, Item::ParkedBy(filing))) {
            Some(StateValue::ParkedBy(s)) => s.clone(),
            _ => return,
        };
        for id in ids {
            let key = StateKey::new(tenant, Item::Parked(id));
            let Some(StateValue::Parked(p)) = self.get(src, key.clone()) else {
                continue;
            };
            let mut event = p.envelope.event.clone();
            event.scrub();
            if event != p.envelope.event
                && let Some(StateValue::Parked(p)) = self.get_mut(src, key).as_mut()
            {
                p.envelope.event = event;
            }
        }
    }
}
