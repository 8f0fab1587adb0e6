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
        let keys = id.keys_with_sources(config.key_scope(tenant));
        let Some(anchor) = keys.first().map(|(k, _)| k.clone()) else {
            return;
        };
        let evidence = Evidence {
            at: env.occurred_at,
            event_id: env.event_id.clone(),
        };
        for (other, source) in keys.iter().skip(1) {
            let source = *source;
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

    /// Folds an operator's decision about two identities: kept on both, the
    /// latest (by time, then event id) replacing an earlier one. Both are
    /// marked dirty, so the customers they belong to now and belonged to
    /// before are settled again.
    pub(super) fn apply_decision(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        d: &IdentityDecided,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let config = Arc::clone(&self.config);
        let scope = config.key_scope(tenant);
        let (Some(a), Some(b)) = (d.a.key(scope), d.b.key(scope)) else {
            return Err(FoldError::NoIdentity);
        };
        if a == b {
            return Err(FoldError::NoIdentity);
        }
        let decided = Decided {
            evidence: Evidence {
                at: env.occurred_at,
                event_id: env.event_id.clone(),
            },
            decision: d.decision,
        };
        // Everything of the customers the two belong to before the decision
        // is settled again: what the decision moves away must be published
        // where it goes, and what stays may change its flags (a phone kept
        // from one customer is shared with the one it went to).
        for k in [&a, &b] {
            let root = self.root(src, tenant, k);
            let (members, shared) = self.members(src, tenant, &root);
            for m in members.into_iter().map(|(m, _)| m).chain(shared) {
                self.dirty_keys.insert((tenant.to_string(), m));
            }
        }
        // Resolutions are remembered within a settle only.
        self.resolved.clear();
        let mut changed = false;
        for (k, other) in [(&a, &b), (&b, &a)] {
            self.update_index(src, tenant, k, |n| match n.decisions.get(other) {
                Some(cur) if *cur >= decided => false,
                _ => {
                    n.decisions.insert(other.clone(), decided.clone());
                    changed = true;
                    true
                }
            });
            self.dirty_keys.insert((tenant.to_string(), k.clone()));
        }
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
    /// For a customer whose emails the operator's decisions split off part of
    /// their linked emails: those emails (the anchor excluded) and how each
    /// joined, since walking the links from the anchor no longer finds them
    /// (a link shared with the part split off leads to neither).
    joins: HashMap<IdentityKey, Vec<(IdentityKey, Joined)>, FxBuild>,
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

    /// The index entry of `k`, in one read: what it claims and what claims
    /// it, and the operator's decisions about it (the other identity and the
    /// latest decision).
    fn edges(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> (Vec<IdentityKey>, Vec<(IdentityKey, Decided)>) {
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => (
                n.claims.iter().chain(&n.claimed_by).cloned().collect(),
                n.decisions
                    .iter()
                    .map(|(o, d)| (o.clone(), d.clone()))
                    .collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// The group of `k` (a non-email identity, see above) and where it resolves.
    ///
    /// The operator's decisions come first: identities they merged are in one
    /// group; an email merged with a member takes the group to its customer
    /// (when the merged emails name one customer, whatever other emails claim);
    /// an email split or blocked from a member neither takes the group nor
    /// counts towards it, and nor does any email of its customer.
    pub(super) fn group(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> (Vec<IdentityKey>, IdentityKey) {
        let mut group: BTreeSet<IdentityKey> = BTreeSet::from([k.clone()]);
        let mut emails: BTreeSet<IdentityKey> = BTreeSet::new();
        let mut merged_emails: BTreeSet<IdentityKey> = BTreeSet::new();
        let mut kept_apart: BTreeSet<IdentityKey> = BTreeSet::new();
        let mut queue = vec![k.clone()];
        while let Some(cur) = queue.pop() {
            let (neighbours, decisions) = self.edges(src, tenant, &cur);
            let mut next: Vec<IdentityKey> = Vec::new();
            for (n, d) in decisions {
                match (n.kind, d.decision.separates()) {
                    (IdentityKind::Email, true) => {
                        kept_apart.insert(n);
                    }
                    (IdentityKind::Email, false) => {
                        merged_emails.insert(n);
                    }
                    // Two other identities kept apart: not a decision the fold
                    // takes (the operator provider refuses it).
                    (_, true) => {}
                    (_, false) => next.push(n),
                }
            }
            for n in neighbours {
                if n.kind == IdentityKind::Email {
                    emails.insert(n);
                } else {
                    next.push(n);
                }
            }
            for n in next {
                if group.insert(n.clone()) {
                    queue.push(n);
                }
            }
        }
        let mut excluded: BTreeSet<IdentityKey> = BTreeSet::new();
        for e in &kept_apart {
            excluded.insert(self.root(src, tenant, e));
        }
        let mut roots: BTreeSet<IdentityKey> = BTreeSet::new();
        let chosen = if merged_emails.is_empty() {
            emails
        } else {
            merged_emails
        };
        for e in chosen {
            if kept_apart.contains(&e) {
                continue;
            }
            let r = self.root(src, tenant, &e);
            if excluded.contains(&r) {
                continue;
            }
            roots.insert(r);
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
    ///
    /// Linked: through a linking id both carried, or merged by the operator.
    /// When the operator split or blocked two emails of one such component, it
    /// is divided (see [`Engine::divide`]) and the part of `email` is returned.
    fn email_component(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        email: &IdentityKey,
    ) -> (Vec<IdentityKey>, IdentityKey) {
        let mut seen: BTreeSet<IdentityKey> = BTreeSet::from([email.clone()]);
        let mut queue = vec![email.clone()];
        // The component's links: linking ids, and the operator's decisions
        // between two of its emails (each pair once).
        let mut links: BTreeSet<IdentityKey> = BTreeSet::new();
        let mut decided: BTreeMap<(IdentityKey, IdentityKey), Decided> = BTreeMap::new();
        while let Some(cur) = queue.pop() {
            let (neighbours, decisions) = self.edges(src, tenant, &cur);
            // An email's neighbours are what it claims (nothing claims an email).
            for x in neighbours
                .into_iter()
                .filter(|c| c.kind == IdentityKind::External)
            {
                let Some(emails) = self.linking_emails(src, tenant, &x) else {
                    continue;
                };
                links.insert(x);
                for e in emails {
                    if seen.insert(e.clone()) {
                        queue.push(e);
                    }
                }
            }
            for (n, d) in decisions {
                if n.kind != IdentityKind::Email {
                    continue;
                }
                let pair = if cur < n {
                    (cur.clone(), n.clone())
                } else {
                    (n.clone(), cur.clone())
                };
                if !d.decision.separates() && seen.insert(n.clone()) {
                    queue.push(n);
                }
                decided.insert(pair, d);
            }
        }
        let divided = decided
            .iter()
            .any(|((a, b), d)| d.decision.separates() && seen.contains(a) && seen.contains(b));
        if !divided {
            let root = self.earliest(src, tenant, &seen, email);
            return (seen.into_iter().collect(), root);
        }
        let parts = self.divide(src, tenant, &seen, &links, &decided);
        let mut mine = (vec![email.clone()], email.clone());
        for (root, joins) in parts {
            let members: Vec<IdentityKey> = std::iter::once(root.clone())
                .chain(joins.iter().map(|(m, _)| m.clone()))
                .collect();
            let memo = self.resolution(tenant);
            for m in &members {
                memo.roots.insert(m.clone(), root.clone());
            }
            memo.joins.insert(root.clone(), joins);
            if members.contains(email) {
                mine = (members, root);
            }
        }
        mine
    }

    /// The email of `emails` seen first (event time, then key); `fallback` when
    /// none has been seen.
    fn earliest(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        emails: &BTreeSet<IdentityKey>,
        fallback: &IdentityKey,
    ) -> IdentityKey {
        let mut best: Option<(bool, Option<OffsetDateTime>, IdentityKey)> = None;
        for e in emails {
            let first = match self.get(src, StateKey::new(tenant, Item::Fragment(e.clone()))) {
                Some(StateValue::Fragment(f)) => f.first_event_at,
                _ => None,
            };
            let cand = (first.is_none(), first, e.clone());
            if best.as_ref().is_none_or(|b| cand < *b) {
                best = Some(cand);
            }
        }
        best.map_or_else(|| fallback.clone(), |b| b.2)
    }

    /// Divides a component of linked emails that the operator split or
    /// blocked two of: the links are taken one by one, the operator's merges
    /// first (oldest first), then each pair of emails sharing a linking id (by
    /// the time both had carried it, then the id and the pair), and a link that
    /// would put two emails kept apart into one part is left out. The same
    /// component gives the same parts whichever email it was reached from, so
    /// resolution stays independent of the order events arrived in.
    ///
    /// Returns each part's anchor and the other emails with how they joined
    /// (the links from the anchor).
    fn divide(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        emails: &BTreeSet<IdentityKey>,
        links: &BTreeSet<IdentityKey>,
        decided: &BTreeMap<(IdentityKey, IdentityKey), Decided>,
    ) -> Vec<(IdentityKey, Vec<(IdentityKey, Joined)>)> {
        let list: Vec<IdentityKey> = emails.iter().cloned().collect();
        let at = |k: &IdentityKey| list.binary_search(k).ok();
        // (rank, a, b, how b joins a and a joins b).
        type Link = ((u8, Option<Evidence>, String), usize, usize, Joined);
        let mut candidates: Vec<Link> = Vec::new();
        let mut apart: BTreeSet<(usize, usize)> = BTreeSet::new();
        for ((a, b), d) in decided {
            let (Some(i), Some(j)) = (at(a), at(b)) else {
                continue;
            };
            if d.decision.separates() {
                apart.insert((i.min(j), i.max(j)));
            } else {
                let joined = Joined {
                    reason: "operator".to_string(),
                    evidence: vec![d.evidence.clone()],
                };
                candidates.push(((0, Some(d.evidence.clone()), String::new()), i, j, joined));
            }
        }
        for x in links {
            let (claimers, source) =
                match self.get(src, StateKey::new(tenant, Item::Index(x.clone()))) {
                    Some(StateValue::Index(n)) => (
                        n.claimed_by
                            .iter()
                            .filter(|c| c.kind == IdentityKind::Email)
                            .filter_map(|c| Some((at(c)?, n.evidence.get(c).cloned())))
                            .collect::<Vec<_>>(),
                        n.source.clone().unwrap_or_default(),
                    ),
                    _ => continue,
                };
            for (p, (i, ei)) in claimers.iter().enumerate() {
                for (j, ej) in &claimers[p + 1..] {
                    let both = ei.clone().max(ej.clone());
                    let joined = Joined {
                        reason: format!("{source}_customer_id"),
                        evidence: ei.iter().chain(ej.iter()).cloned().collect(),
                    };
                    candidates.push(((1, both, x.to_string()), *i, *j, joined));
                }
            }
        }
        candidates.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
        // Union-find over the emails, each part knowing its members.
        let mut part: Vec<usize> = (0..list.len()).collect();
        let mut members: Vec<Vec<usize>> = (0..list.len()).map(|i| vec![i]).collect();
        let mut used: Vec<(usize, usize, Joined)> = Vec::new();
        for (_, i, j, joined) in candidates {
            let (pi, pj) = (part[i], part[j]);
            if pi == pj {
                continue;
            }
            let clash = members[pi].iter().any(|&x| {
                members[pj]
                    .iter()
                    .any(|&y| apart.contains(&(x.min(y), x.max(y))))
            });
            if clash {
                continue;
            }
            let moved = std::mem::take(&mut members[pj]);
            for &m in &moved {
                part[m] = pi;
            }
            members[pi].extend(moved);
            used.push((i, j, joined));
        }
        let mut out = Vec::new();
        for p in 0..list.len() {
            if members[p].is_empty() {
                continue;
            }
            let these: BTreeSet<IdentityKey> =
                members[p].iter().map(|&i| list[i].clone()).collect();
            let root = self.earliest(src, tenant, &these, &list[p]);
            // How each joined: the links used, walked from the anchor.
            let r = at(&root).unwrap_or(p);
            let mut joins: Vec<(IdentityKey, Joined)> = Vec::new();
            let mut reached: BTreeMap<usize, Vec<Evidence>> = BTreeMap::from([(r, Vec::new())]);
            let mut frontier = vec![r];
            while let Some(cur) = frontier.pop() {
                let base = reached.get(&cur).cloned().unwrap_or_default();
                for (i, j, joined) in &used {
                    let next = match (*i == cur, *j == cur) {
                        (true, _) => *j,
                        (_, true) => *i,
                        _ => continue,
                    };
                    if reached.contains_key(&next) {
                        continue;
                    }
                    let mut evidence = base.clone();
                    evidence.extend(joined.evidence.iter().cloned());
                    evidence.sort();
                    evidence.dedup();
                    reached.insert(next, evidence.clone());
                    joins.push((
                        list[next].clone(),
                        Joined {
                            reason: joined.reason.clone(),
                            evidence,
                        },
                    ));
                    frontier.push(next);
                }
            }
            joins.sort_by(|a, b| a.0.cmp(&b.0));
            out.push((root, joins));
        }
        out
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
        // The emails of a component the operator divided, found when it was.
        self.root(src, tenant, root);
        if let Some(joins) = self.resolved.get(tenant).and_then(|t| t.joins.get(root)) {
            for (m, j) in joins {
                if seen.insert(m.clone()) {
                    out.push((m.clone(), j.clone()));
                }
            }
        }
        let mut at = 0;
        while at < out.len() {
            let (cur, cur_joined) = out[at].clone();
            at += 1;
            // What `cur` claims (its evidence is on the claimed identity's
            // node), what claims `cur` (evidence here), and what the operator
            // merged with it, in one read. What the operator kept apart from
            // it is neither a member through it nor shared with it.
            let config = Arc::clone(&self.config);
            let (neighbours, source, linking) =
                match self.get(src, StateKey::new(tenant, Item::Index(cur.clone()))) {
                    Some(StateValue::Index(n)) => {
                        let apart = |c: &IdentityKey| {
                            n.decisions.get(c).is_some_and(|d| d.decision.separates())
                        };
                        let claims = n
                            .claims
                            .iter()
                            .filter(|c| !apart(c))
                            .map(|c| (c.clone(), None, false));
                        let claimers = n
                            .claimed_by
                            .iter()
                            .filter(|c| !apart(c))
                            .map(|c| (c.clone(), Some(n.evidence.get(c).cloned()), false));
                        let merged = n
                            .decisions
                            .iter()
                            .filter(|(_, d)| !d.decision.separates())
                            .map(|(c, d)| (c.clone(), Some(Some(d.evidence.clone())), true));
                        let neighbours: Vec<(IdentityKey, Option<Option<Evidence>>, bool)> =
                            merged.chain(claims).chain(claimers).collect();
                        // An email joins through the linking id it shares with
                        // the customer (reached through another identity, it
                        // waits for that), or the operator's merge.
                        let linking = cur.kind == IdentityKind::External
                            && n.links(config.identity_rules(tenant));
                        (neighbours, n.source.clone(), linking)
                    }
                    _ => (Vec::new(), None, false),
                };
            for (n, claimer_evidence, by_operator) in neighbours {
                if self.root(src, tenant, &n) != *root {
                    if n.kind != IdentityKind::Email {
                        shared.insert(n);
                    } else if cur.kind != IdentityKind::Email && !by_operator {
                        shared.insert(cur.clone());
                    }
                    continue;
                }
                if n.kind == IdentityKind::Email && !linking && !by_operator {
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
                let reason = match (by_operator, n.kind, &source) {
                    (true, _, _) => "operator".to_string(),
                    (_, IdentityKind::Email, Some(s)) => format!("{s}_customer_id"),
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
