//! A seeded, multi-tenant history of raw provider webhooks, and the result the
//! processor must reach from it.
//!
//! [`history`] writes the webhooks a few small shops would receive over some
//! weeks, as the ingest would have stored them ([`RawEvent`]s, in arrival order):
//! Shopify orders, updates, fulfillments, refunds and customers; Stripe charges,
//! partial refunds and disputes for those orders; AfterShip tracking updates;
//! Zendesk and Gorgias tickets; and browser touches from the shops' own sites.
//! Bodies are the smallest JSON each mapper accepts (a few hundred bytes), not
//! full provider payloads, so that large histories stay cheap to store and encode.
//!
//! The history is realistic in the ways that matter to the fold: webhooks arrive
//! a little out of order, some are delivered twice, some Stripe and AfterShip
//! events arrive before what they refer to (so the engine parks them and releases
//! them later), visitors become known customers, and guest orders placed with a
//! phone number join the customer that owns that phone. Everything comes from the
//! seed: no clock, no global randomness.
//!
//! [`pure_fold`] is the reference: it maps and folds the raw events in memory, the
//! way the processor does, in one batch.
//!
//! The generator is in `generator` (the shops, ids and clocks from the seed,
//! drafts and their delivery), `orders` (an order and what follows it) and
//! `people` (sign-ups, visits, tickets, guest orders by phone).

use std::collections::{BTreeMap, HashSet};

use storefold_codec::RawEvent;
use storefold_core::engine::{Item, StateValue};
use storefold_core::{Engine, MemStore, Outcome};
use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};
use time::OffsetDateTime;

mod generator;
mod orders;
mod people;

use generator::{Gen, arrival_order};

/// The size and shape of a generated history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySpec {
    /// Number of tenants, named `t000`, `t001`, ... (at least one is made).
    pub tenants: usize,
    /// Customers each tenant knows by email (at least two are made).
    pub customers_per_tenant: usize,
    /// Number of raw events returned, redeliveries included.
    pub events: usize,
    /// Percent of the distinct events that are delivered a second time.
    pub duplicate_pct: u64,
    /// Decides everything else.
    pub seed: u64,
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            tenants: 3,
            customers_per_tenant: 200,
            events: 5000,
            duplicate_pct: 5,
            seed: 7,
        }
    }
}

/// What [`pure_fold`] did with the raw events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Raw events read.
    pub events: u64,
    /// Raw events skipped because the same (tenant, provider, event id) was read
    /// before: the processor's idempotency check.
    pub duplicates: u64,
    /// Raw events the provider mapper refused (nothing of them is folded).
    pub map_errors: u64,
    /// Canonical events the mappers produced.
    pub envelopes: u64,
    /// Envelopes the engine folded into state (`Outcome::Applied`).
    pub applied: u64,
    /// Envelopes the engine found already folded (`Outcome::Duplicate`). The
    /// raw idempotency check catches every redelivery first, so this stays zero
    /// unless two distinct raw events map to the same canonical event id.
    pub unchanged: u64,
    /// Envelopes the engine parked because their order was not known yet.
    pub parked: u64,
    /// `parked`, by the provider of the parked envelope.
    pub parked_by_provider: BTreeMap<String, u64>,
    /// Parked envelopes that a later event released into their order (counted
    /// at the end: parked minus still parked).
    pub released: u64,
    /// Parked envelopes still waiting at the end.
    pub still_parked: u64,
    /// Envelopes the engine rejected (no identity, no order link).
    pub fold_errors: u64,
}

/// The raw events of a history, in the order the processor reads them.
///
/// The result has exactly `spec.events` entries: `events * 100 / (100 +
/// duplicate_pct)` distinct events (the story generated last may be cut short,
/// but never so that a kept event loses what it refers to), and the rest are
/// redeliveries of some of them, further on in the list, with the same event id
/// and the same body. `received_at` never goes backwards along the list.
pub fn history(spec: &HistorySpec) -> Vec<RawEvent> {
    let tenants = spec.tenants.max(1);
    let base_count = spec.events * 100 / (100 + spec.duplicate_pct as usize);
    let dup_count = spec.events - base_count;
    let mut g = Gen::new(spec.seed, tenants, spec.customers_per_tenant.max(2));
    while g.drafts.len() < base_count {
        g.story();
    }
    g.drafts.truncate(base_count);
    let drafts = std::mem::take(&mut g.drafts);
    let order = arrival_order(&mut g.rng, &drafts, dup_count);
    let mut out = Vec::with_capacity(order.len());
    let mut received: i64 = 0;
    for i in order {
        let d = &drafts[i];
        received = (received + 1 + g.rng.below(40) as i64).max(d.arrive);
        out.push(g.finish(d, received));
    }
    out
}

/// Maps and folds `events` the way the processor does, in memory and in one
/// batch: events whose (tenant, provider, event id) was already folded are
/// skipped (an event that failed to map is not remembered, as in the processor);
/// each other event is mapped by its provider with the default [`MapOptions`]
/// and every envelope is applied to one [`Engine`], which is finished into a
/// [`MemStore`] at the end. Events that do not map, and envelopes the engine
/// rejects, are counted and left out.
pub fn pure_fold(events: &[RawEvent]) -> (MemStore, FoldCounts) {
    let options = MapOptions::default();
    let mut store = MemStore::default();
    let mut engine = Engine::new();
    let mut counts = FoldCounts::default();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut parked: Vec<(String, String)> = Vec::new();
    for raw in events {
        counts.events += 1;
        let Ok(provider) = raw.provider.parse::<ProviderKind>() else {
            counts.map_errors += 1;
            continue;
        };
        let idem = (
            raw.tenant.clone(),
            provider.name().to_string(),
            raw.event_id.clone(),
        );
        if seen.contains(&idem) {
            counts.duplicates += 1;
            continue;
        }
        let headers =
            Headers::from_pairs(raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let received_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(raw.received_at) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let ctx = MapContext {
            tenant: &raw.tenant,
            options: &options,
        };
        let input = RawInput {
            topic: &raw.topic,
            event_id: &raw.event_id,
            headers: &headers,
            body: &raw.body,
            received_at,
        };
        let envelopes = match provider.map(&ctx, &input) {
            Ok(e) => e,
            Err(_) => {
                counts.map_errors += 1;
                continue;
            }
        };
        for env in &envelopes {
            counts.envelopes += 1;
            match engine.apply(&store, env) {
                Ok(Outcome::Applied) => counts.applied += 1,
                Ok(Outcome::Duplicate) => counts.unchanged += 1,
                Ok(Outcome::Parked(_)) => {
                    counts.parked += 1;
                    *counts
                        .parked_by_provider
                        .entry(env.provider.clone())
                        .or_default() += 1;
                    parked.push((env.tenant.clone(), env.event_id.clone()));
                }
                Err(_) => counts.fold_errors += 1,
            }
        }
        seen.insert(idem);
    }
    let out = engine.finish(&store);
    store.commit(out.changes);
    let waiting: HashSet<(&str, &str)> = store
        .records
        .iter()
        .filter_map(|(k, v)| match (&k.item, v) {
            (Item::Parked(id), StateValue::Parked(_)) => Some((k.tenant.as_str(), id.as_str())),
            _ => None,
        })
        .collect();
    counts.still_parked = waiting.len() as u64;
    counts.released = parked
        .iter()
        .filter(|(t, e)| !waiting.contains(&(t.as_str(), e.as_str())))
        .count() as u64;
    (store, counts)
}

/// Number of raw events per `provider topic` (e.g. `shopify orders/create`).
pub fn topic_counts(events: &[RawEvent]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(format!("{} {}", e.provider, e.topic))
            .or_default() += 1;
    }
    out
}
