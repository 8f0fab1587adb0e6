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

    /// The identity a key resolves to: an email is its own root; another identity
    /// joins the one email that claims it, and stays on its own when no email or
    /// several emails claim it (an ambiguous phone merges nothing).
    pub(super) fn root(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> IdentityKey {
        if k.kind == IdentityKind::Email {
            return k.clone();
        }
        match self.get(src, StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) if n.claimed_by.len() == 1 => n
                .claimed_by
                .iter()
                .next()
                .cloned()
                .unwrap_or_else(|| k.clone()),
            _ => k.clone(),
        }
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

    /// Records that `email` claims the other identities of `id`.
    pub(super) fn claim(&mut self, src: &dyn Source, tenant: &str, keys: &[IdentityKey]) {
        let Some(email) = keys.iter().find(|k| k.kind == IdentityKind::Email).cloned() else {
            return;
        };
        for other in keys.iter().filter(|k| k.kind != IdentityKind::Email) {
            self.update_index(src, tenant, other, |n| n.claimed_by.insert(email.clone()));
            self.update_index(src, tenant, &email, |n| n.claims.insert(other.clone()));
            self.dirty_keys.insert((tenant.to_string(), other.clone()));
        }
        self.dirty_keys.insert((tenant.to_string(), email));
    }

    pub(super) fn apply_to_customer(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        id: &crate::identity::Identity,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let keys = id.keys(tenant);
        let Some(primary) = keys.first().cloned() else {
            return Err(FoldError::NoIdentity);
        };
        let changed = self.with_fragment(src, tenant, &primary, env);
        self.claim(src, tenant, &keys);
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
        match self.get(src, StateKey::new(tenant, Item::Order(id.to_string()))) {
            Some(StateValue::Order(o)) => o.customer_key(tenant),
            _ => None,
        }
    }

    /// Members of the customer anchored at `root`: the root and every identity it
    /// claims that resolves to it.
    pub(super) fn members(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        root: &IdentityKey,
    ) -> Vec<IdentityKey> {
        let mut out = vec![root.clone()];
        if root.kind == IdentityKind::Email {
            let claims: Vec<IdentityKey> =
                match self.get(src, StateKey::new(tenant, Item::Index(root.clone()))) {
                    Some(StateValue::Index(n)) => n.claims.iter().cloned().collect(),
                    _ => Vec::new(),
                };
            for k in claims {
                if self.root(src, tenant, &k) == *root {
                    out.push(k);
                }
            }
        }
        out
    }
}
