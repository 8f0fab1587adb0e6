//! Bounds on what the state keeps per customer, identity and parcel.
//!
//! Every bound here keeps the fold a join: what is kept is a function of the
//! *set* of events folded in (the newest N by a total order, the oldest one,
//! counts), never of the order they came in, so trimming commutes with the
//! fold and any arrival order still gives the same state. Money is never
//! trimmed: a customer's figures are computed from every order before its
//! list of orders is cut.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How much history the state and the views keep (see `[processor]` in the
/// configuration). Each bound is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Newest touches kept per identity (the first touch is kept besides).
    pub touches: usize,
    /// Distinct values of each of utm_source, utm_medium and utm_campaign
    /// counted on their own per identity (the rest are counted as `(other)`).
    pub touch_values: usize,
    /// Newest tickets kept per identity.
    pub tickets: usize,
    /// Newest orders a customer view lists (all of them are counted).
    pub listed_orders: usize,
    /// Newest checkpoints kept per shipment or parcel (the first is kept besides).
    pub checkpoints: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            touches: 100,
            touch_values: 50,
            tickets: 200,
            listed_orders: 200,
            checkpoints: 100,
        }
    }
}

/// The bucket of values past [`Limits::touch_values`].
pub const OTHER: &str = "(other)";

/// Counts per value, with at most `max` values on their own: the `max`
/// smallest values (by their text) keep exact counts, every other value is
/// counted under [`OTHER`]. Which values keep a count of their own depends
/// only on the set of values seen, so the counts do not depend on arrival
/// order, and summing two of them and bounding again gives the bound of the
/// sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    /// Counts `n` occurrences of `value` (call [`Counts::bound`] after).
    pub fn add(&mut self, value: &str, n: u64) {
        *self.0.entry(value.to_string()).or_default() += n;
    }

    /// Keeps the `max` smallest values on their own and counts the others
    /// under [`OTHER`].
    pub fn bound(&mut self, max: usize) {
        let max = max.max(1);
        loop {
            let own = self.0.len() - usize::from(self.0.contains_key(OTHER));
            if own <= max {
                return;
            }
            let largest = self
                .0
                .keys()
                .rfind(|k| *k != OTHER)
                .cloned()
                .unwrap_or_default();
            let moved = self.0.remove(&largest).unwrap_or(0);
            *self.0.entry(OTHER.to_string()).or_default() += moved;
        }
    }

    /// Adds every count of `other`, then bounds.
    pub fn absorb(&mut self, other: &Counts, max: usize) {
        for (k, n) in &other.0 {
            self.add(k, *n);
        }
        self.bound(max);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Touches counted by their UTM source, medium and campaign (a touch without
/// one is counted under `(none)`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchCounts {
    pub source: Counts,
    pub medium: Counts,
    pub campaign: Counts,
}

impl TouchCounts {
    /// Counts one touch event (call [`TouchCounts::bound`] after).
    pub fn count(&mut self, utm: &crate::event::Utm) {
        let none = "(none)";
        for (counts, v) in [
            (&mut self.source, &utm.source),
            (&mut self.medium, &utm.medium),
            (&mut self.campaign, &utm.campaign),
        ] {
            // Long values are counted by their first 100 characters.
            let v: String = v.as_deref().unwrap_or(none).chars().take(100).collect();
            counts.add(&v, 1);
        }
    }

    pub fn bound(&mut self, max: usize) {
        self.source.bound(max);
        self.medium.bound(max);
        self.campaign.bound(max);
    }

    pub fn absorb(&mut self, other: &TouchCounts, max: usize) {
        self.source.absorb(&other.source, max);
        self.medium.absorb(&other.medium, max);
        self.campaign.absorb(&other.campaign, max);
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty() && self.medium.is_empty() && self.campaign.is_empty()
    }
}

/// Keeps the smallest element and the `newest` greatest of a set: a join
/// (the smallest and the greatest N of a union are those of the parts).
/// Returns how many elements were dropped.
pub fn keep_first_and_newest<T: Ord>(set: &mut BTreeSet<T>, newest: usize) -> usize {
    let newest = newest.max(1);
    if set.len() <= newest + 1 {
        return 0;
    }
    let mut dropped = 0;
    while set.len() > newest + 1 {
        // Drop the second smallest: neither the first nor one of the newest.
        if let Some(first) = set.pop_first() {
            set.pop_first();
            set.insert(first);
        }
        dropped += 1;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_the_smallest_values_in_any_order() {
        let values = ["m", "b", "z", "a", "b", "q", "c", "z", "a"];
        let mut reference: Option<Counts> = None;
        // Every rotation and the reverse give the same counts.
        let mut orders: Vec<Vec<&str>> = (0..values.len())
            .map(|i| {
                let mut v = values.to_vec();
                v.rotate_left(i);
                v
            })
            .collect();
        orders.push(values.iter().rev().copied().collect());
        for order in orders {
            let mut c = Counts::default();
            for v in order {
                c.add(v, 1);
                c.bound(3);
            }
            match &reference {
                None => reference = Some(c),
                Some(r) => assert_eq!(r, &c),
            }
        }
        let r = reference.unwrap();
        assert_eq!(r.0.get("a"), Some(&2));
        assert_eq!(r.0.get("b"), Some(&2));
        assert_eq!(r.0.get("c"), Some(&1));
        assert_eq!(r.0.get(OTHER), Some(&4));
        assert_eq!(r.0.values().sum::<u64>(), values.len() as u64);
        // Summing two bounded counts and bounding gives the bound of the sum.
        let (mut x, mut y, mut all) = (Counts::default(), Counts::default(), Counts::default());
        for (i, v) in values.iter().enumerate() {
            let part = if i % 2 == 0 { &mut x } else { &mut y };
            part.add(v, 1);
            part.bound(3);
            all.add(v, 1);
            all.bound(3);
        }
        x.absorb(&y, 3);
        assert_eq!(x, all);
    }

    #[test]
    fn first_and_newest_are_a_join() {
        let mut a: BTreeSet<u32> = (0..10).collect();
        assert_eq!(keep_first_and_newest(&mut a, 3), 6);
        assert_eq!(a.into_iter().collect::<Vec<_>>(), vec![0, 7, 8, 9]);
        // Trimming the parts and the union gives the trimmed union.
        let mut x: BTreeSet<u32> = (0..20).step_by(2).collect();
        let mut y: BTreeSet<u32> = (1..20).step_by(2).collect();
        keep_first_and_newest(&mut x, 3);
        keep_first_and_newest(&mut y, 3);
        let mut joined: BTreeSet<u32> = x.union(&y).copied().collect();
        keep_first_and_newest(&mut joined, 3);
        assert_eq!(joined.into_iter().collect::<Vec<_>>(), vec![0, 17, 18, 19]);
    }
}
