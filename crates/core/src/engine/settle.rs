//! Settling a batch: erasures, customer and order views, versions, triggers and the changed records.

use super::*;

/// The claims listed as a shared identity's evidence, oldest first.
const SHARED_EVIDENCE_MAX: usize = 10;

impl Engine {
    /// Ends the batch: recomputes the views touched by it and returns the changed
    /// records and the outputs. The working set is emptied.
    pub fn finish(&mut self, src: &dyn Source) -> BatchOutput {
        let mut out = self.settle(src);
        let mut changes: Vec<(StateKey, Option<StateValue>)> = self
            .cache
            .drain()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| (k, s.value))
            .collect();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        out.changes = changes;
        self.books.clear();
        out
    }

    /// Ends the batch like [`Engine::finish`], but keeps the working set as a
    /// cache for the next batches and hands each changed record to `visit` by
    /// reference (in key order) instead of returning copies: the processor
    /// serialises them straight into its write batch. `BatchOutput::changes` is
    /// empty. Call [`Engine::trim`] to bound the cache.
    pub fn finish_retaining(
        &mut self,
        src: &dyn Source,
        mut visit: impl FnMut(&StateKey, Option<&StateValue>),
    ) -> BatchOutput {
        let out = self.settle(src);
        // Borrowed from the working set, sorted by key, without looking any up again.
        let mut dirty: Vec<(&StateKey, Option<&StateValue>)> = self
            .cache
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| (k, s.value.as_ref()))
            .collect();
        dirty.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, v) in dirty {
            visit(k, v);
        }
        for slot in self.cache.values_mut() {
            slot.dirty = false;
        }
        out
    }

    /// Drops the cached (clean) working set when it holds more than `max` records.
    pub fn trim(&mut self, max: usize) {
        if self.cache.len() > max {
            self.cache.retain(|_, s| s.dirty);
            self.books.clear();
        }
    }

    /// Erasure, derived from state so that arrival order does not matter: an
    /// identity is erased when a redaction named it, or when an identity whose
    /// erasure was asked for carries it. The erasure of a person goes as far as
    /// the person does: a named email's claims (phones, ids, anonymous ids) and
    /// the other emails a store customer id links with it (an email change),
    /// with their claims; an id carried by too many emails to link
    /// ([`IdentityRules::link_max_emails`]) takes no email with it. An order is
    /// erased when a redaction named it or it was placed under an erased
    /// identity (with the parcels it holds).
    pub(super) fn settle_erasure(&mut self, src: &dyn Source) -> Vec<(String, IdentityKey)> {
        let mut work: Vec<(String, IdentityKey)> = self.dirty_keys.iter().cloned().collect();
        // An identity is looked at again when it became erased, or asked to
        // take its claims along, after it was first looked at.
        let mut done: BTreeSet<(String, IdentityKey, bool, bool)> = BTreeSet::new();
        let mut erased: Vec<(String, IdentityKey)> = Vec::new();
        let config = Arc::clone(&self.config);
        while let Some((tenant, k)) = work.pop() {
            let (redacted, requested) =
                match self.get(src, StateKey::new(&tenant, Item::Fragment(k.clone()))) {
                    Some(StateValue::Fragment(f)) => (f.redacted, f.erasure_requested),
                    _ => (false, false),
                };
            if !redacted || !done.insert((tenant.clone(), k.clone(), redacted, requested)) {
                continue;
            }
            if requested {
                let rules = config.identity_rules(&tenant);
                let node = self.index(src, &tenant, &k);
                // (identity, whether it is the same person: its own claims go too)
                let targets: Vec<(IdentityKey, bool)> = match k.kind {
                    IdentityKind::Email => {
                        let mut t = Vec::new();
                        for c in node.claims {
                            let links = c.kind == IdentityKind::External
                                && self.index(src, &tenant, &c).links(rules);
                            t.push((c, links));
                        }
                        t
                    }
                    IdentityKind::External if node.links(rules) => node
                        .claimed_by
                        .into_iter()
                        .filter(|c| c.kind == IdentityKind::Email)
                        .map(|c| (c, true))
                        .collect(),
                    _ => Vec::new(),
                };
                for (c, person) in targets {
                    let up_to_date = matches!(
                        self.get(src, StateKey::new(&tenant, Item::Fragment(c.clone()))),
                        Some(StateValue::Fragment(f)) if f.redacted && (f.erasure_requested || !person)
                    );
                    if !up_to_date {
                        let f = self.fragment_mut(src, &tenant, &c);
                        if !f.redacted {
                            f.scrub();
                        }
                        f.erasure_requested |= person;
                    }
                    self.dirty_keys.insert((tenant.clone(), c.clone()));
                    work.push((tenant.clone(), c));
                }
            }
            erased.push((tenant, k));
        }
        for (tenant, k) in &erased {
            for oid in self.index(src, tenant, k).orders {
                self.erase_order(src, tenant, &oid);
            }
            self.erase_parked(src, tenant, k);
        }
        // An erased order's parcels, whenever the order came to hold them,
        // and the events still waiting for it.
        let orders: Vec<(String, OrderId)> = self.dirty_orders.iter().cloned().collect();
        for (tenant, oid) in orders {
            let parcels = match self.get(src, StateKey::new(&tenant, Item::Order(oid.clone()))) {
                Some(StateValue::Order(o)) if o.redacted => o.parcels.clone(),
                _ => continue,
            };
            self.erase_parcels(src, &tenant, parcels);
            self.scrub_parked(src, &tenant, format!("order:{oid}"));
        }
        erased
    }

    pub(super) fn erase_order(&mut self, src: &dyn Source, tenant: &str, oid: &str) {
        let key = StateKey::new(tenant, Item::Order(oid.to_string()));
        let parcels = match self.get(src, key) {
            Some(StateValue::Order(o)) if !o.redacted => o.parcels.clone(),
            _ => return,
        };
        let config = Arc::clone(&self.config);
        self.order_mut(src, tenant, oid)
            .scrub(config.key_scope(tenant));
        self.erase_parcels(src, tenant, parcels);
        self.dirty_orders
            .insert((tenant.to_string(), oid.to_string()));
    }

    /// Marks an erased order's parcels erased (those not marked yet).
    fn erase_parcels(&mut self, src: &dyn Source, tenant: &str, parcels: BTreeSet<String>) {
        for t in parcels {
            let key = StateKey::new(tenant, Item::Parcel(t));
            if matches!(self.get(src, key.clone()), Some(StateValue::Parcel(p)) if !p.redacted)
                && let Some(StateValue::Parcel(p)) = self.get_mut(src, key).as_mut()
            {
                p.redacted = true;
                p.entry.scrub();
            }
        }
    }

    /// Recomputes the views touched by the batch and collects the outputs.
    pub(super) fn settle(&mut self, src: &dyn Source) -> BatchOutput {
        let mut out = BatchOutput::default();
        let mut erased = self.settle_erasure(src);
        erased.sort();
        erased.dedup();
        out.erased = erased;
        // Orders whose customer may have changed mark their customers dirty.
        let dirty_orders: Vec<(String, OrderId)> = self.dirty_orders.iter().cloned().collect();
        for (tenant, oid) in &dirty_orders {
            if let Some(k) = self.order_customer(src, tenant, oid) {
                self.dirty_keys.insert((tenant.clone(), k));
            }
            if let Some(StateValue::OrderMeta(m)) =
                self.get(src, StateKey::new(tenant, Item::OrderMeta(oid.clone())))
                && let Some(k) = m
                    .customer_id
                    .as_ref()
                    .and_then(|c| IdentityKey::from_customer_id(&crate::CustomerId(c.clone())))
            {
                self.dirty_keys.insert((tenant.clone(), k));
            }
        }
        // Which customers to recompute. Candidates: every dirty key, the
        // customer it was last published under (which may have lost it), and,
        // for a linking id, the emails that carried it (one more email can
        // take it over its limit and split them). Every customer a candidate
        // resolves to is recomputed; its members are published as merged into
        // it, and a candidate that is its own root again loses its merge.
        self.resolved.clear();
        let dirty: Vec<(String, IdentityKey)> =
            std::mem::take(&mut self.dirty_keys).into_iter().collect();
        let mut candidates: BTreeSet<(String, IdentityKey)> = BTreeSet::new();
        for (tenant, k) in &dirty {
            candidates.insert((tenant.clone(), k.clone()));
            // Only what this needs of the node (an identity's orders may be many).
            let (merged_into, id_claimers, was_shared) =
                match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
                    // A linking id's emails, and the customers of an
                    // identity several claim (each lists it as shared, with
                    // the claims as evidence, which this change may add to).
                    Some(StateValue::Index(n)) => (
                        n.merged_into.clone(),
                        if n.source.is_some() || n.claimed_by.len() > 1 {
                            n.claimed_by.iter().cloned().collect()
                        } else {
                            Vec::new()
                        },
                        n.shared,
                    ),
                    _ => (None, Vec::new(), false),
                };
            if let Some(prev) = merged_into {
                candidates.insert((tenant.clone(), prev));
            }
            for c in id_claimers {
                if let Some(prev) = self.merged_into(src, tenant, &c) {
                    candidates.insert((tenant.clone(), prev));
                }
                candidates.insert((tenant.clone(), c));
            }
            // A group that became shared, or stopped being: the customers of
            // everything that claims one of its identities change (the flag,
            // or the members they lose or gain). Every identity of the group
            // keeps the group's status, so the next change is seen wherever
            // it comes from.
            if k.kind != IdentityKind::Email {
                let now = self.is_ambiguous(src, tenant, k);
                if now != was_shared {
                    let (group, _) = self.group(src, tenant, k);
                    for g in group {
                        let (merged_into, claimed_by) =
                            match self.get(src, StateKey::new(tenant, Item::Index(g.clone()))) {
                                Some(StateValue::Index(n)) => (
                                    n.merged_into.clone(),
                                    n.claimed_by.iter().cloned().collect::<Vec<_>>(),
                                ),
                                _ => (None, Vec::new()),
                            };
                        self.update_index(src, tenant, &g, |n| {
                            std::mem::replace(&mut n.shared, now) != now
                        });
                        candidates.insert((tenant.clone(), g.clone()));
                        if let Some(prev) = merged_into {
                            candidates.insert((tenant.clone(), prev));
                        }
                        for c in claimed_by {
                            if let Some(prev) = self.merged_into(src, tenant, &c) {
                                candidates.insert((tenant.clone(), prev));
                            }
                            candidates.insert((tenant.clone(), c));
                        }
                    }
                }
            }
        }
        let mut roots: BTreeSet<(String, IdentityKey)> = BTreeSet::new();
        for (tenant, k) in candidates {
            let r = self.root(src, &tenant, &k);
            if r == k && self.merged_into(src, &tenant, &k).is_some() {
                // It was merged and no longer is (its phone became ambiguous).
                self.update_index(src, &tenant, &k, |n| {
                    n.merged_into = None;
                    true
                });
            }
            roots.insert((tenant, r));
        }
        for (tenant, root) in roots {
            let (members, shared) = self.members(src, &tenant, &root);
            for (m, joined) in members.iter().skip(1) {
                self.publish_merge(src, &tenant, m, &root, joined, &mut out);
            }
            self.recompute_customer(src, &tenant, &root, &members, &shared, &mut out);
        }
        let all_orders: BTreeSet<(String, OrderId)> = std::mem::take(&mut self.dirty_orders);
        for (tenant, oid) in &all_orders {
            self.recompute_order(src, tenant, oid, &mut out);
        }
        self.settle_payouts(src, &mut out);
        // Forget the books of orders no longer alive (changed since, or gone
        // from the working set).
        self.books.retain(|_, (w, _)| w.strong_count() > 0);
        self.resolved.clear();
        out
    }

    /// Publishes `m` as merged into `survivor`, once, and only when there was a
    /// customer to merge (a phone nobody used on its own merges nothing visible).
    fn publish_merge(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        m: &IdentityKey,
        survivor: &IdentityKey,
        joined: &super::identity::Joined,
        out: &mut BatchOutput,
    ) {
        let (has_orders, merged_into, merged_version) =
            match self.get(src, StateKey::new(tenant, Item::Index(m.clone()))) {
                Some(StateValue::Index(n)) => (
                    !n.orders.is_empty(),
                    n.merged_into.clone(),
                    n.merged_version,
                ),
                _ => (false, None, 0),
            };
        if merged_into.as_ref() == Some(survivor) {
            return;
        }
        let has_data = has_orders || self.has_fragment(src, tenant, m);
        if !has_data {
            return;
        }
        // Above the customer it was, and above an earlier merge notice (it
        // moves from one survivor to another).
        let version = self
            .bump_customer_version(src, tenant, m, None)
            .max(merged_version + 1);
        self.update_index(src, tenant, m, |n| {
            n.merged_into = Some(survivor.clone());
            n.merged_version = version;
            true
        });
        let merge = Merge {
            tenant: tenant.to_string(),
            survivor: survivor.customer_id().0,
            merged: m.customer_id().0,
            reason: joined.reason.clone(),
        };
        self.put(StateKey::new(tenant, Item::Customer(m.clone())), None);
        out.projections.push(Projection::CustomerMerged {
            tenant: tenant.to_string(),
            customer_id: merge.merged.clone(),
            merged_into: merge.survivor.clone(),
            reason: merge.reason.clone(),
            version,
        });
        out.merges.push(merge);
    }

    pub(super) fn bump_customer_version(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        anchor: &IdentityKey,
        computed: Option<u64>,
    ) -> u64 {
        let key = StateKey::new(tenant, Item::Customer(anchor.clone()));
        let prev = match self.get(src, key) {
            Some(StateValue::Customer(c)) => Some(c.version),
            _ => None,
        };
        match (prev, computed) {
            (Some(p), Some(c)) if c > p => c,
            (Some(p), _) => p + 1,
            (None, Some(c)) => c.max(1),
            (None, None) => 1,
        }
    }

    /// The parcels an order holds, from the working set.
    pub(super) fn load_parcels(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        order: &Order,
    ) -> Vec<StateKey> {
        let keys: Vec<StateKey> = order
            .parcels
            .iter()
            .map(|t| StateKey::new(tenant, Item::Parcel(t.clone())))
            .collect();
        for k in &keys {
            self.get(src, k.clone());
        }
        keys
    }

    pub(super) fn books_of(&self, tenant: &str, order: &Order) -> Books {
        ledger::books(order, self.config.reporting(tenant))
    }

    /// Makes sure `self.books` holds the books of `order` as it is now.
    pub(super) fn ensure_books(&mut self, tenant: &str, order: &Arc<Order>) {
        let at = Arc::as_ptr(order) as usize;
        if let Some((w, _)) = self.books.get(&at)
            && w.strong_count() > 0
        {
            return;
        }
        let books = self.books_of(tenant, order);
        self.books.insert(at, (Arc::downgrade(order), books));
    }

    /// Recomputes the customer anchored at `root` from its members (`shared`:
    /// the identities flagged on it) and publishes it when it changed.
    pub(super) fn recompute_customer(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        root: &IdentityKey,
        members: &[(IdentityKey, super::identity::Joined)],
        shared: &BTreeSet<IdentityKey>,
        out: &mut BatchOutput,
    ) {
        let mut order_ids: BTreeSet<OrderId> = BTreeSet::new();
        let mut merged = Vec::new();
        let mut version: u64 = 0;
        // Each shared identity with the claims that show several customers
        // hold it (when it stopped merging, and why).
        let mut shared_list: Vec<SharedIdentity> = Vec::new();
        for k in shared {
            let mut claims: Vec<Evidence> =
                match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
                    Some(StateValue::Index(n)) => n.evidence.values().cloned().collect(),
                    _ => Vec::new(),
                };
            claims.sort();
            claims.dedup();
            claims.truncate(SHARED_EVIDENCE_MAX);
            shared_list.push(SharedIdentity {
                key: k.to_string(),
                kind: k.kind.merge_reason().to_string(),
                at: claims.iter().map(|e| e.at).max(),
                evidence: claims.into_iter().map(|e| e.event_id).collect(),
            });
        }
        let mut present: Vec<StateKey> = Vec::new();
        let mut decisions: Vec<DecisionRecord> = Vec::new();
        for (m, joined) in members {
            let node_key = StateKey::new(tenant, Item::Index(m.clone()));
            let (claimed, has_orders) = match self.get(src, node_key) {
                Some(StateValue::Index(n)) => {
                    order_ids.extend(n.orders.iter().cloned());
                    decisions.extend(n.decisions.iter().map(|(other, d)| DecisionRecord {
                        key: m.to_string(),
                        other: other.to_string(),
                        decision: d.decision.as_str().to_string(),
                        at: d.evidence.at,
                        event_id: d.evidence.event_id.clone(),
                    }));
                    (
                        n.claimed_by.len() as u64 + n.decisions.len() as u64,
                        !n.orders.is_empty(),
                    )
                }
                _ => (0, false),
            };
            version += claimed;
            let fkey = StateKey::new(tenant, Item::Fragment(m.clone()));
            let has_fragment = match self.get(src, fkey.clone()) {
                Some(StateValue::Fragment(f)) => {
                    version += f.seen.count();
                    true
                }
                _ => false,
            };
            if has_fragment {
                present.push(fkey);
            }
            if m != root && (has_fragment || has_orders) {
                merged.push(MergeRecord {
                    merged_id: m.customer_id().0,
                    reason: joined.reason.clone(),
                    at: joined.evidence.iter().map(|e| e.at).max(),
                    evidence: joined.evidence.iter().map(|e| e.event_id.clone()).collect(),
                });
            }
        }
        let root_id = root.customer_id().0;
        let mut orders: Vec<Arc<Order>> = Vec::new();
        for oid in &order_ids {
            let okey = StateKey::new(tenant, Item::Order(oid.clone()));
            let order = match self.get(src, okey) {
                Some(StateValue::Order(o)) if o.snapshot.is_some() => Arc::clone(o),
                _ => continue,
            };
            let Some(ck) = order.customer_key(self.config.key_scope(tenant)) else {
                continue;
            };
            if self.root(src, tenant, &ck) != *root {
                continue;
            }
            version += order.seen.count();
            // Published under another customer id before (a merge moved it
            // here): publish it again, whatever batch the merge came in.
            let meta = StateKey::new(tenant, Item::OrderMeta(oid.clone()));
            if let Some(StateValue::OrderMeta(m)) = self.get(src, meta)
                && m.customer_id.as_deref() != Some(root_id.as_str())
            {
                self.dirty_orders.insert((tenant.to_string(), oid.clone()));
            }
            orders.push(order);
        }
        if present.is_empty() && orders.is_empty() {
            return;
        }
        merged.sort();
        for o in &orders {
            self.ensure_books(tenant, o);
        }
        let frag_refs: Vec<&Fragment> = present
            .iter()
            .filter_map(|k| match self.peek(k) {
                Some(StateValue::Fragment(f)) => Some(&**f),
                _ => None,
            })
            .collect();
        // Every order has its books (just ensured above).
        let order_refs: Vec<(&Order, &Books)> = orders
            .iter()
            .filter_map(|o| {
                let (_, b) = self.books.get(&(Arc::as_ptr(o) as usize))?;
                Some((&**o, b))
            })
            .collect();
        let mut built = Customer::build(
            tenant,
            root,
            &frag_refs,
            &order_refs,
            merged,
            &self.config.limits,
        );
        decisions.sort_by(|a, b| (a.at, &a.event_id, &a.key).cmp(&(b.at, &b.event_id, &b.key)));
        // A decision between two of its own identities is listed once.
        let own: BTreeSet<String> = members.iter().map(|(m, _)| m.to_string()).collect();
        decisions.retain(|d| !(own.contains(&d.other) && d.other < d.key));
        built.identity_decisions = decisions;
        built.shared_identities = shared_list;
        let view = Arc::new(built);
        // Each order's touches as of its time, from the customer's touches.
        let mut touch_list: Vec<TouchEntry> = frag_refs
            .iter()
            .flat_map(|f| f.first_touch.iter().chain(f.touches.values()).cloned())
            .collect();
        touch_list.sort();
        touch_list.dedup_by(|a, b| a.touch_id == b.touch_id && a == b);
        let mut order_touches: Vec<(OrderId, Option<Box<OrderTouches>>)> = Vec::new();
        for o in &orders {
            let Some(created) = o.created_at() else {
                continue;
            };
            let before: Vec<&TouchEntry> = touch_list.iter().filter(|t| t.at <= created).collect();
            let touches = (!before.is_empty()).then(|| {
                Box::new(OrderTouches {
                    first: before.first().map(|t| (*t).clone()),
                    last: before.last().map(|t| (*t).clone()),
                })
            });
            order_touches.push((o.order_id.clone(), touches));
        }
        // First and repeat orders, by when they were placed.
        let mut placed: Vec<(&Order, &Books)> = order_refs
            .iter()
            .copied()
            .filter(|(o, b)| {
                o.counts()
                    && !(o.snapshot.as_ref().is_some_and(|s| {
                        matches!(s.value.status, OrderStatus::Cancelled | OrderStatus::Failed)
                    }) && b.figures.paid.is_empty())
            })
            .collect();
        placed.sort_by(|a, b| {
            (a.0.created_at(), &a.0.order_id).cmp(&(b.0.created_at(), &b.0.order_id))
        });
        let mut placed_triggers: BTreeMap<String, Trigger> = BTreeMap::new();
        for (i, (o, _)) in placed.iter().enumerate() {
            let kind = if i == 0 {
                "first_order"
            } else {
                "repeat_order"
            };
            let t = Trigger {
                trigger_id: trigger_id("placed", &o.order_id, ""),
                tenant: tenant.to_string(),
                kind: kind.to_string(),
                customer_id: Some(root_id.clone()),
                order_id: Some(o.order_id.clone()),
                occurred_at: o.created_at().unwrap_or(OffsetDateTime::UNIX_EPOCH),
                source_event_id: format!("order:{}", o.order_id),
                data: serde_json::json!({"orders_count": i + 1}),
            };
            placed_triggers.insert(t.trigger_id.clone(), t);
        }
        let placed_hashes: BTreeMap<String, String> = placed_triggers
            .iter()
            .map(|(id, t)| (id.clone(), trigger_hash(t)))
            .collect();
        drop(order_refs);
        drop(frag_refs);
        for (oid, touches) in order_touches {
            // In place: the order's meta changes (and the order is published
            // again) only when its touches do.
            let meta_key = StateKey::new(tenant, Item::OrderMeta(oid.clone()));
            let slot = self.slot(src, meta_key);
            let changed = match &mut slot.value {
                Some(StateValue::OrderMeta(m)) => {
                    if m.touches != touches {
                        m.touches = touches;
                        true
                    } else {
                        false
                    }
                }
                other => {
                    *other = Some(StateValue::OrderMeta(OrderMeta {
                        touches,
                        ..OrderMeta::default()
                    }));
                    true
                }
            };
            if changed {
                slot.dirty = true;
                self.dirty_orders.insert((tenant.to_string(), oid));
            }
        }
        // The published record, read and replaced in place: unchanged view and
        // triggers publish nothing; otherwise the triggers whose content moved
        // go out.
        let merged_version = match self.get(src, StateKey::new(tenant, Item::Index(root.clone()))) {
            Some(StateValue::Index(n)) if n.merged_version > 0 => Some(n.merged_version),
            _ => None,
        };
        let slot = self.slot(src, StateKey::new(tenant, Item::Customer(root.clone())));
        let prev_version = match &slot.value {
            Some(StateValue::Customer(c)) => {
                if c.view == view && c.triggers == placed_hashes {
                    return;
                }
                for (id, t) in placed_triggers {
                    if c.triggers.get(&id) != placed_hashes.get(&id) {
                        out.triggers.push(t);
                    }
                }
                Some(c.version)
            }
            _ => {
                out.triggers.extend(placed_triggers.into_values());
                None
            }
        };
        // A customer that was merged and is published again starts above its
        // merge notice.
        let floor = prev_version.or(merged_version);
        let version = match floor {
            Some(p) if version > p => version,
            Some(p) => p + 1,
            None => version.max(1),
        };
        slot.value = Some(StateValue::Customer(Box::new(CustomerRecord {
            version,
            view: Arc::clone(&view),
            triggers: placed_hashes,
        })));
        slot.dirty = true;
        out.projections.push(Projection::Customer { version, view });
    }

    pub(super) fn recompute_order(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        oid: &str,
        out: &mut BatchOutput,
    ) {
        let order = match self.get(src, StateKey::new(tenant, Item::Order(oid.to_string()))) {
            Some(StateValue::Order(o)) if o.snapshot.is_some() => Arc::clone(o),
            _ => return,
        };
        let customer_id = order
            .customer_key(self.config.key_scope(tenant))
            .map(|k| self.root(src, tenant, &k).customer_id().0);
        let parcel_keys = self.load_parcels(src, tenant, &order);
        // Derived already when the order is one of a recomputed customer's.
        let books = match self.books.get(&(Arc::as_ptr(&order) as usize)) {
            Some((w, b)) if w.strong_count() > 0 => b.clone(),
            _ => self.books_of(tenant, &order),
        };
        let parcels: BTreeMap<String, &Parcel> = parcel_keys
            .iter()
            .filter_map(|k| match (self.peek(k), &k.item) {
                (Some(StateValue::Parcel(p)), Item::Parcel(t)) => Some((t.clone(), &**p)),
                _ => None,
            })
            .collect();
        let parcel_events: u64 = parcels.values().map(|p| p.seen.count()).sum();
        let shipments = order.shipment_views(&parcels);
        drop(parcels);
        let meta_key = StateKey::new(tenant, Item::OrderMeta(oid.to_string()));
        // Replaced below: taken, not copied.
        let prev = match self.get_mut(src, meta_key.clone()).take() {
            Some(StateValue::OrderMeta(m)) => Some(m),
            _ => None,
        };
        let computed = order.seen.count() + parcel_events;
        // The version follows the set of events folded in; a republish without a
        // new event (the customer id moved after a merge, an erasure) still moves
        // it forward so that sinks accept it.
        let version = match &prev {
            None => computed.max(1),
            Some(p) if computed > p.version => computed,
            Some(p) => p.version + 1,
        };
        let triggers = order_triggers(tenant, &order, &shipments, customer_id.as_deref());
        let hashes: BTreeMap<String, String> = triggers
            .iter()
            .map(|(id, t)| (id.clone(), trigger_hash(t)))
            .collect();
        let prev_hashes = prev.as_ref().map(|p| &p.triggers);
        for (id, t) in triggers {
            if prev_hashes.and_then(|h| h.get(&id)) != hashes.get(&id) {
                out.triggers.push(t);
            }
        }
        let touches = prev.as_ref().and_then(|p| p.touches.clone());
        self.put(
            meta_key,
            Some(StateValue::OrderMeta(OrderMeta {
                version,
                customer_id: customer_id.clone(),
                triggers: hashes,
                touches: touches.clone(),
            })),
        );
        out.projections.push(Projection::Order {
            version,
            view: Box::new(OrderView {
                tenant: tenant.to_string(),
                order_id: oid.to_string(),
                customer_id,
                figures: books.figures,
                ledger: books.entries,
                shipments,
                touches,
                order,
            }),
        });
    }
}

/// An order's triggers, derived from its state: one per fact, with an id from
/// the fact, so that every arrival order gives the same set.
pub(super) fn order_triggers(
    tenant: &str,
    order: &Order,
    shipments: &[crate::aggregate::ShipmentView],
    customer_id: Option<&str>,
) -> BTreeMap<String, Trigger> {
    let oid = order.order_id.as_str();
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, subject: &str, at: OffsetDateTime, source: &str, data| {
        let t = Trigger {
            trigger_id: trigger_id(kind, oid, subject),
            tenant: tenant.to_string(),
            kind: kind.to_string(),
            customer_id: customer_id.map(str::to_string),
            order_id: Some(oid.to_string()),
            occurred_at: at,
            source_event_id: source.to_string(),
            data,
        };
        out.insert(t.trigger_id.clone(), t);
    };
    // Every delivery, exception and return a parcel's timeline shows.
    for s in shipments {
        for c in &s.checkpoints {
            let kind = match c.status {
                ShipmentStatus::Delivered => "delivered",
                ShipmentStatus::Exception => "shipment_exception",
                ShipmentStatus::Returned => "returned",
                _ => continue,
            };
            let subject = format!("{}@{}", s.tracking_number, c.at.unix_timestamp_nanos());
            add(
                kind,
                &subject,
                c.at,
                &format!("shipment:{subject}"),
                serde_json::json!({"tracking_number": s.tracking_number, "status": c.status.as_str()}),
            );
        }
    }
    // Every ETA reported past what an order placed out of stock was
    // promised, while the goods had not gone out (no store shipment holding
    // the line had a checkpoint by then) and the order stands.
    let cancelled = order
        .snapshot
        .as_ref()
        .is_some_and(|s| s.value.status == OrderStatus::Cancelled);
    if !cancelled && let Some(snapshot) = &order.snapshot {
        for (sku, b) in &order.backorders {
            let Some(promised) = b.promised else { continue };
            let lines: BTreeSet<&str> = snapshot
                .value
                .line_items
                .iter()
                .filter(|l| l.sku_key() == Some(sku.as_str()))
                .map(|l| l.id.as_str())
                .collect();
            let shipped_by = |at: OffsetDateTime| {
                order.shipments.values().any(|s| {
                    (s.line_item_ids.is_empty()
                        || s.line_item_ids.iter().any(|l| lines.contains(l.as_str())))
                        && s.checkpoints.iter().any(|c| c.at <= at)
                })
            };
            for d in &b.delays {
                if shipped_by(d.at) {
                    continue;
                }
                let subject = format!("{sku}@{}", d.eta.unix_timestamp());
                add(
                    "backorder_delayed",
                    &subject,
                    d.at,
                    &d.event_id,
                    serde_json::json!({
                        "sku": sku,
                        "promised": promised.format(&time::format_description::well_known::Rfc3339).ok(),
                        "eta": d.eta.format(&time::format_description::well_known::Rfc3339).ok(),
                    }),
                );
            }
        }
    }
    // Every failed payment attempt or capture.
    for rec in order.payments.values() {
        for (ev, p) in &rec.observations {
            if p.status == PaymentStatus::Failed {
                add(
                    "payment_failed",
                    ev,
                    p.at,
                    ev,
                    serde_json::json!({
                        "payment_id": p.payment_id,
                        "provider": p.provider,
                        "capture_id": p.capture_id,
                        "reason": p.failure_reason,
                    }),
                );
            }
        }
    }
    // Every refund that went through, once, at its first report.
    for (key, rec) in &order.refunds {
        let first = rec
            .observations
            .iter()
            .filter(|(_, r)| r.status == RefundStatus::Succeeded)
            .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        if let Some((ev, r)) = first {
            add(
                "refund_issued",
                key,
                r.at,
                ev,
                serde_json::json!({"refund_id": r.refund_id, "amount": r.amount}),
            );
        }
    }
    // Every dispute, at its first report.
    for (key, rec) in &order.disputes {
        let first = rec
            .observations
            .iter()
            .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        if let Some((ev, d)) = first {
            add(
                "chargeback_opened",
                key,
                d.at,
                ev,
                serde_json::json!({"dispute_id": d.dispute_id, "amount": d.amount}),
            );
        }
    }
    // Every return asked for or settled.
    for (id, r) in &order.returns {
        let first = [&r.requested, &r.resolved]
            .into_iter()
            .flatten()
            .min_by(|a, b| (a.value.at, &a.stamp.event_id).cmp(&(b.value.at, &b.stamp.event_id)));
        if let Some(reg) = first {
            add(
                "returned",
                &format!("return:{id}"),
                reg.value.at,
                &reg.stamp.event_id,
                serde_json::json!({"return_id": id}),
            );
        }
    }
    out
}

/// An order as the CRM sees it, read from `src` (what the order projection
/// holds, and what the query API answers).
pub fn order_view(
    src: &dyn Source,
    config: &FoldConfig,
    tenant: &str,
    order_id: &str,
) -> Option<OrderView> {
    let order = match src.load(&StateKey::new(tenant, Item::Order(order_id.to_string()))) {
        Some(StateValue::Order(o)) if o.snapshot.is_some() => o,
        _ => return None,
    };
    let meta = match src.load(&StateKey::new(
        tenant,
        Item::OrderMeta(order_id.to_string()),
    )) {
        Some(StateValue::OrderMeta(m)) => m,
        _ => OrderMeta::default(),
    };
    let parcels_owned: Vec<(String, Box<Parcel>)> = order
        .parcels
        .iter()
        .filter_map(
            |t| match src.load(&StateKey::new(tenant, Item::Parcel(t.clone()))) {
                Some(StateValue::Parcel(p)) => Some((t.clone(), p)),
                _ => None,
            },
        )
        .collect();
    let parcels: BTreeMap<String, &Parcel> = parcels_owned
        .iter()
        .map(|(t, p)| (t.clone(), &**p))
        .collect();
    let books = ledger::books(&order, config.reporting(tenant));
    Some(OrderView {
        tenant: tenant.to_string(),
        order_id: order_id.to_string(),
        customer_id: meta.customer_id,
        figures: books.figures,
        ledger: books.entries,
        shipments: order.shipment_views(&parcels),
        touches: meta.touches,
        order,
    })
}
