//! Identity resolution: the identity index, fragments and the customers they resolve to.

use super::*;

impl Engine {
    pub(super) fn index(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> IndexNode {
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => n.clone(),
            _ => IndexNode::default(),
        }
    }

    /// The customer `k` was last published as merged into, read in place.
    pub(super) fn merged_into(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> Option<IdentityKey> {
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => n.merged_into.clone(),
            _ => None,
        }
    }

    pub(super) fn update_index(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        f: impl FnOnce(&mut IndexNode) -> bool,
    ) {
        // In place: the record is marked changed only when `f` changed it (most
        // claims repeat what the index already knows).
        let slot = self.slot(src, StateKey::new(tenant, Item::Index(k.clone())));
        let changed = match &mut slot.value {
            Some(StateValue::Index(n)) => f(n),
            other => {
                let mut n = IndexNode::default();
                let changed = f(&mut n);
                if changed {
                    *other = Some(StateValue::Index(n));
                }
                changed
            }
        };
        slot.dirty |= changed;
    }

    pub(super) fn fragment_mut<'a>(
        &'a mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> &'a mut Fragment {
        let slot = self.get_mut(src, StateKey::new(tenant, Item::Fragment(k.clone())));
        if !matches!(slot, Some(StateValue::Fragment(_))) {
            *slot = Some(StateValue::Fragment(Box::new(Fragment::new(k.clone()))));
        }
        match slot {
            Some(StateValue::Fragment(f)) => f,
            _ => unreachable!("just set"),
        }
    }

    pub(super) fn with_fragment(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        env: &Envelope,
    ) -> bool {
        let limits = self.config.limits;
        let fragment = self.fragment_mut(src, tenant, k);
        let changed = fragment.apply(env);
        if changed {
            fragment.bound(&limits);
        }
        self.dirty_keys.insert((tenant.to_string(), k.clone()));
        changed
    }

    /// Records the identities an event carried together: its primary identity
    /// (the email when there is one) claims the others, with the event as the
    /// claim's evidence (the earliest such event is kept), and an external id
    /// remembers the system that issued it.
    pub(super) fn claim(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        id: &crate::identity::Identity,
    ) {
        let tenant = env.tenant.as_str();
        let config = Arc::clone(&self.config);
        let keys = id.keys(config.key_scope(tenant));
        let Some(anchor) = keys.first().cloned() else {
            return;
        };
        let evidence = Evidence {
            at: env.occurred_at,
            event_id: env.event_id.clone(),
        };
        for (i, other) in keys.iter().enumerate().skip(1) {
            // `keys` lists the external ids in `id.external`'s order, after the email.
            let source = match other.kind {
                IdentityKind::External => {
                    let at = i - usize::from(id.email.is_some());
                    id.external.get(at).map(|x| x.source.as_str())
                }
                _ => None,
            };
            self.update_index(src, tenant, other, |n| {
                let mut changed = n.claimed_by.insert(anchor.clone());
                match n.evidence.get_mut(&anchor) {
                    Some(e) if *e <= evidence => {}
                    Some(e) => {
                        *e = evidence.clone();
                        changed = true;
                    }
                    None => {
                        n.evidence.insert(anchor.clone(), evidence.clone());
                        changed = true;
                    }
                }
                if let Some(s) = source
                    && n.source.as_deref() != Some(s)
                {
                    n.source = Some(s.to_string());
                    changed = true;
                }
                changed
            });
            self.update_index(src, tenant, &anchor, |n| n.claims.insert(other.clone()));
            self.dirty_keys.insert((tenant.to_string(), other.clone()));
        }
        self.dirty_keys.insert((tenant.to_string(), anchor));
    }

    pub(super) fn apply_to_customer(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        id: &crate::identity::Identity,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let config = Arc::clone(&self.config);
        let Some(primary) = id.primary_key(config.key_scope(tenant)) else {
            return Err(FoldError::NoIdentity);
        };
        let changed = self.with_fragment(src, tenant, &primary, env);
        self.claim(src, env, id);
        Ok(if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        })
    }

    pub(super) fn has_fragment(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> bool {
        self.get(src, StateKey::new(tenant, Item::Fragment(k.clone())))
            .is_some()
    }

    /// The customer key of an order, without copying it.
    pub(super) fn order_customer(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        id: &str,
    ) -> Option<IdentityKey> {
        let config = Arc::clone(&self.config);
        match self.get(src, StateKey::new(tenant, Item::Order(id.to_string()))) {
            Some(StateValue::Order(o)) => o.customer_key(config.key_scope(tenant)),
            _ => None,
        }
    }
}

/// How a member joined its customer: the rule and the events that showed it.
#[derive(Clone, Debug, Default)]
pub(super) struct Joined {
    /// `phone`, `external_id`, `anonymous_id`, or for an email
    /// `<source>_customer_id` (the linking id it shares with the customer).
    pub reason: String,
    /// The claims on the way from the customer's anchor, oldest first.
    pub evidence: Vec<Evidence>,
}

/// One tenant's resolutions within a settle.
#[derive(Default)]
pub(super) struct Resolved {
    /// Identity → the anchor of its customer.
    roots: HashMap<IdentityKey, IdentityKey, FxBuild>,
    /// The identities found claimed by several customers.
    ambiguous: std::collections::HashSet<IdentityKey, FxBuild>,
}

/// Identity resolution. The rules (README, "Identity"):
///
/// - Emails link into one customer through an id of a linking source
///   ([`IdentityRules::link_sources`], a store's customer id by default) that
///   they both carried, unless that id was carried by more than
///   [`IdentityRules::link_max_emails`] emails. The customer is anchored at
///   the email seen first (event time, then key), so a customer who changes
///   email keeps its id.
/// - The other identities form groups: identities that came together in an
///   event without an email (a ticket's helpdesk id and phone, a guest
///   order's phone and cart). A group joins the customer of the emails that
///   carried any of its identities when they all resolve to one customer;
///   when none did, it is a customer of its own, anchored at its first key;
///   when they resolve to two or more, it stays on its own and is flagged on
///   each of them (a shared phone merges nothing).
///
/// Everything here is derived from the index as it is after the batch's
/// events, so it does not depend on their arrival order. Within a settle the
/// claims do not change, and resolutions are remembered.
impl Engine {
    /// The customer (its anchor) that `k` resolves to.
    pub(super) fn root(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> IdentityKey {
        if let Some(r) = self.resolved.get(tenant).and_then(|t| t.roots.get(k)) {
            return r.clone();
        }
        let (members, root) = if k.kind == IdentityKind::Email {
            self.email_component(src, tenant, k)
        } else {
            self.group(src, tenant, k)
        };
        let memo = self.resolution(tenant);
        for m in members {
            memo.roots.insert(m, root.clone());
        }
        root
    }

    /// The tenant's memo of the current settle.
    fn resolution(&mut self, tenant: &str) -> &mut Resolved {
        if !self.resolved.contains_key(tenant) {
            self.resolved
                .insert(tenant.to_string(), Resolved::default());
        }
        self.resolved
            .get_mut(tenant)
            .unwrap_or_else(|| unreachable!("just inserted"))
    }

    /// Whether `k` is claimed by several customers (see [`Engine::root`]).
    pub(super) fn is_ambiguous(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> bool {
        self.root(src, tenant, k);
        self.resolved
            .get(tenant)
            .is_some_and(|t| t.ambiguous.contains(k))
    }

    /// The index entry's claims and claimers of `k`.
    fn edges(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> (Vec<IdentityKey>, Vec<IdentityKey>) {
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => (
                n.claims.iter().cloned().collect(),
                n.claimed_by.iter().cloned().collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The group of `k` (a non-email identity, see above) and where it resolves.
    pub(super) fn group(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> (Vec<IdentityKey>, IdentityKey) {
        let mut group: BTreeSet<IdentityKey> = BTreeSet::from([k.clone()]);
        let mut emails: BTreeSet<IdentityKey> = BTreeSet::new();
        let mut queue = vec![k.clone()];
        while let Some(cur) = queue.pop() {
            let (claims, claimed_by) = self.edges(src, tenant, &cur);
            for n in claims.into_iter().chain(claimed_by) {
                if n.kind == IdentityKind::Email {
                    emails.insert(n);
                } else if group.insert(n.clone()) {
                    queue.push(n);
                }
            }
        }
        let mut roots: BTreeSet<IdentityKey> = BTreeSet::new();
        for e in emails {
            roots.insert(self.root(src, tenant, &e));
            if roots.len() > 1 {
                break;
            }
        }
        if roots.len() > 1 {
            let memo = self.resolution(tenant);
            memo.ambiguous.extend(group.iter().cloned());
        }
        let root = match roots.len() {
            1 => roots.into_iter().next(),
            _ => None,
        }
        // No email, or emails of several customers: anchored at its first key.
        .or_else(|| group.first().cloned())
        .unwrap_or_else(|| k.clone());
        (group.into_iter().collect(), root)
    }

    /// Whether `x` (an external id) links the emails that carried it, and those emails.
    fn linking_emails(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        x: &IdentityKey,
    ) -> Option<Vec<IdentityKey>> {
        let config = Arc::clone(&self.config);
        match self.get(src, StateKey::new(tenant, Item::Index(x.clone()))) {
            Some(StateValue::Index(n)) if n.links(config.identity_rules(tenant)) => Some(
                n.claimed_by
                    .iter()
                    .filter(|c| c.kind == IdentityKind::Email)
                    .cloned()
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The emails linked with `email` (sorted) and the one the customer is
    /// anchored at: the earliest seen, then the smallest key.
    fn email_component(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        email: &IdentityKey,
    ) -> (Vec<IdentityKey>, IdentityKey) {
        let mut seen: BTreeSet<IdentityKey> = BTreeSet::from([email.clone()]);
        let mut queue = vec![email.clone()];
        while let Some(cur) = queue.pop() {
            let claims: Vec<IdentityKey> =
                match self.get(src, StateKey::new(tenant, Item::Index(cur.clone()))) {
                    Some(StateValue::Index(n)) => n
                        .claims
                        .iter()
                        .filter(|c| c.kind == IdentityKind::External)
                        .cloned()
                        .collect(),
                    _ => Vec::new(),
                };
            for x in claims {
                for e in self.linking_emails(src, tenant, &x).unwrap_or_default() {
                    if seen.insert(e.clone()) {
                        queue.push(e);
                    }
                }
            }
        }
        let mut best: Option<(bool, Option<OffsetDateTime>, IdentityKey)> = None;
        for e in &seen {
            let first = match self.get(src, StateKey::new(tenant, Item::Fragment(e.clone()))) {
                Some(StateValue::Fragment(f)) => f.first_event_at,
                _ => None,
            };
            let cand = (first.is_none(), first, e.clone());
            if best.as_ref().is_none_or(|b| cand < *b) {
                best = Some(cand);
            }
        }
        let root = best.map_or_else(|| email.clone(), |b| b.2);
        (seen.into_iter().collect(), root)
    }

    /// The claim of `by` on `k` (stored on `k`).
    fn evidence_of(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        by: &IdentityKey,
    ) -> Option<Evidence> {
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => n.evidence.get(by).cloned(),
            _ => None,
        }
    }

    /// Members of the customer anchored at `root`: the root first, then every
    /// identity that resolves to it, each with how it joined (found by walking
    /// the claims from the root in key order, so the same state gives the same
    /// answer). Also the identities that stay apart although a member is
    /// linked with them, or that are members while another customer's email
    /// claims them too: shared with another customer, flagged.
    pub(super) fn members(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        root: &IdentityKey,
    ) -> (Vec<(IdentityKey, Joined)>, BTreeSet<IdentityKey>) {
        let mut out = vec![(root.clone(), Joined::default())];
        let mut shared = BTreeSet::new();
        let mut seen: BTreeSet<IdentityKey> = BTreeSet::from([root.clone()]);
        let mut at = 0;
        while at < out.len() {
            let (cur, cur_joined) = out[at].clone();
            at += 1;
            // What `cur` claims (its evidence is on the claimed identity's
            // node) and what claims `cur` (evidence here), in one read.
            let config = Arc::clone(&self.config);
            let (neighbours, source, linking) =
                match self.get(src, StateKey::new(tenant, Item::Index(cur.clone()))) {
                    Some(StateValue::Index(n)) => {
                        let claims = n.claims.iter().map(|c| (c.clone(), None));
                        let claimers = n
                            .claimed_by
                            .iter()
                            .map(|c| (c.clone(), Some(n.evidence.get(c).cloned())));
                        let neighbours: Vec<(IdentityKey, Option<Option<Evidence>>)> =
                            claims.chain(claimers).collect();
                        // An email joins through the linking id it shares with
                        // the customer (reached through another identity, it
                        // waits for that).
                        let linking = cur.kind == IdentityKind::External
                            && n.links(config.identity_rules(tenant));
                        (neighbours, n.source.clone(), linking)
                    }
                    _ => (Vec::new(), None, false),
                };
            for (n, claimer_evidence) in neighbours {
                if self.root(src, tenant, &n) != *root {
                    if n.kind != IdentityKind::Email {
                        shared.insert(n);
                    } else if cur.kind != IdentityKind::Email {
                        shared.insert(cur.clone());
                    }
                    continue;
                }
                if n.kind == IdentityKind::Email && !linking {
                    continue;
                }
                if !seen.insert(n.clone()) {
                    continue;
                }
                let mut evidence = cur_joined.evidence.clone();
                let edge = match claimer_evidence {
                    Some(here) => here,
                    None => self.evidence_of(src, tenant, &n, &cur),
                };
                evidence.extend(edge);
                let reason = match (n.kind, &source) {
                    (IdentityKind::Email, Some(s)) => format!("{s}_customer_id"),
                    _ => n.kind.merge_reason().to_string(),
                };
                out.push((n, Joined { reason, evidence }));
            }
        }
        for (_, j) in &mut out {
            j.evidence.sort();
            j.evidence.dedup();
        }
        (out, shared)
    }
}
