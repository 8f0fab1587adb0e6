//! The operator's identity decisions (`storefold identity merge|split|block`)
//! folded with the events they are about: the latest decision on a pair holds,
//! in any arrival order and batching, and a replay changes nothing.

use storefold_core::Envelope;
use storefold_core::engine::Projection;
use storefold_core::event::*;
use storefold_core::identity::{ExternalId, Identity, IdentityKey, IdentityKind};
use time::{Duration, OffsetDateTime};

use crate::fold::{
    SHARED_PHONE, T0, customer_of, env, fold_batched, folded, order, profile, same_in_every_order,
    shared_phone_events, versions_grow,
};

fn id_of(email: &str) -> String {
    IdentityKey::new("acme", IdentityKind::Email, email)
        .customer_id()
        .0
}

fn email(e: &str) -> Party {
    Party::Email(e.to_string())
}

fn decided(
    id: &str,
    at: OffsetDateTime,
    decision: IdentityDecision,
    a: Party,
    b: Party,
) -> Envelope {
    let mut e = env(
        id,
        at,
        Event::IdentityDecided(IdentityDecided {
            decision,
            a,
            b,
            requested_by: "operator".into(),
        }),
    );
    e.provider = "operator".into();
    e
}

/// A profile and an order of `who`, `days` after T0.
fn shopper(who: &str, order_id: &str, days: i64, total: i64) -> [Envelope; 2] {
    let at = T0 + Duration::days(days);
    let mut placed = order(order_id, who, total, at, "paid");
    if let Event::OrderUpserted(o) = &mut placed {
        o.created_at = at;
    }
    [
        env(
            &format!("cu-{who}"),
            at,
            profile(Identity::default().with_email(Some(who)), "X", at),
        ),
        env(&format!("or-{order_id}"), at, placed),
    ]
}

/// The newest customer projection of `customer_id`: its view, or `None` when
/// it was last published as merged into another.
fn newest(projections: &[Projection], customer_id: &str) -> Option<Option<u64>> {
    projections.iter().rev().find_map(|p| match p {
        Projection::Customer { view, .. } if view.customer_id == customer_id => {
            Some(Some(view.orders_count))
        }
        Projection::CustomerMerged { customer_id: c, .. } if c == customer_id => Some(None),
        _ => None,
    })
}

#[test]
fn an_operator_merge_joins_two_customers_no_rule_joins_with_its_evidence() {
    let mut events: Vec<Envelope> = Vec::new();
    events.extend(shopper("ann@home.example", "shopify:1", 0, 2000));
    events.extend(shopper("ann@work.example", "shopify:2", 3, 3000));
    let at = T0 + Duration::days(5);
    events.push(decided(
        "op-1",
        at,
        IdentityDecision::Merge,
        email("ann@home.example"),
        email("ann@work.example"),
    ));
    let run = same_in_every_order(&events);
    let customers = run.store.customers();
    assert_eq!(customers.len(), 1, "{:?}", customers.keys());
    let c = customer_of(&run, "ann@home.example");
    assert_eq!(c.orders_count, 2);
    assert_eq!(c.revenue[0].net, 5000);
    let m = &c.merged[0];
    assert_eq!(m.merged_id, id_of("ann@work.example"));
    assert_eq!(m.reason, "operator");
    assert_eq!(m.evidence, ["op-1"]);
    assert_eq!(m.at, Some(at));
    assert_eq!(c.identity_decisions.len(), 1, "{:?}", c.identity_decisions);
    let d = &c.identity_decisions[0];
    assert_eq!(d.decision, "merge");
    assert_eq!(d.event_id, "op-1");
    assert_eq!(d.at, at);
    assert!(run.projections.iter().any(|p| matches!(p,
        Projection::CustomerMerged { customer_id, merged_into, reason, .. }
            if *customer_id == id_of("ann@work.example")
                && *merged_into == id_of("ann@home.example") && reason == "operator")));
    // Named by the customer id the operator saw, it is the same decision.
    let mut by_id = events.clone();
    let last = by_id.len() - 1;
    by_id[last] = decided(
        "op-1",
        at,
        IdentityDecision::Merge,
        Party::CustomerId(id_of("ann@home.example")),
        email("ann@work.example"),
    );
    assert_eq!(folded(&fold_batched(&by_id, 1)), folded(&run));
}

#[test]
fn a_split_undoes_a_merge_and_the_latest_decision_holds_in_any_order() {
    let mut events: Vec<Envelope> = Vec::new();
    events.extend(shopper("bo@one.example", "shopify:1", 0, 2000));
    events.extend(shopper("bo@two.example", "shopify:2", 3, 3000));
    let pair = || (email("bo@one.example"), email("bo@two.example"));
    let merge_at = T0 + Duration::days(5);
    let split_at = T0 + Duration::days(6);
    let (a, b) = pair();
    events.push(decided("op-m", merge_at, IdentityDecision::Merge, a, b));
    let (a, b) = pair();
    events.push(decided("op-s", split_at, IdentityDecision::Split, b, a));
    let run = same_in_every_order(&events);
    let customers = run.store.customers();
    assert_eq!(customers.len(), 2, "{:?}", customers.keys());
    for (who, total) in [("bo@one.example", 2000), ("bo@two.example", 3000)] {
        let c = customer_of(&run, who);
        assert_eq!(c.orders_count, 1, "{who}");
        assert_eq!(c.revenue[0].net, total, "{who}");
        assert!(c.merged.is_empty(), "{who}: {:?}", c.merged);
        assert_eq!(c.identity_decisions.len(), 1, "{who}");
        assert_eq!(c.identity_decisions[0].decision, "split");
        assert_eq!(c.identity_decisions[0].event_id, "op-s");
        assert_eq!(c.identity_decisions[0].at, split_at);
    }
    // Folded one by one in the given order, the second customer was merged,
    // then published again on its own (the un-merge reaches the CRM).
    let merged_notice = run.projections.iter().position(|p| {
        matches!(p, Projection::CustomerMerged { customer_id, .. }
            if *customer_id == id_of("bo@two.example"))
    });
    assert!(merged_notice.is_some(), "the merge was published first");
    assert_eq!(
        newest(&run.projections, &id_of("bo@two.example")),
        Some(Some(1)),
        "the newest projection is the customer itself again"
    );
    assert_eq!(
        newest(&run.projections, &id_of("bo@one.example")),
        Some(Some(1))
    );
    versions_grow(&run.projections);
    for batch in [2, 3] {
        versions_grow(&fold_batched(&events, batch).projections);
    }

    // A split older than the merge is overruled by it, whatever arrives last.
    let mut older_split = events.clone();
    let (a, b) = pair();
    older_split[5] = decided(
        "op-s",
        merge_at - Duration::hours(1),
        IdentityDecision::Split,
        a,
        b,
    );
    let run = same_in_every_order(&older_split);
    assert_eq!(run.store.customers().len(), 1);
    assert_eq!(customer_of(&run, "bo@one.example").orders_count, 2);
}

/// Ann's two emails, linked by her Shopify customer id (an email change).
fn email_change() -> Vec<Envelope> {
    let shop = |e: &str| {
        Identity::default()
            .with_email(Some(e))
            .with_external("shopify", "207119551")
    };
    let mut first = order("shopify:1", "ann@old.example", 2000, T0, "paid");
    if let Event::OrderUpserted(o) = &mut first {
        o.customer = shop("ann@old.example");
    }
    let later = T0 + Duration::days(8);
    let mut second = order("shopify:2", "ann@new.example", 3000, later, "paid");
    if let Event::OrderUpserted(o) = &mut second {
        o.customer = shop("ann@new.example");
        o.created_at = later;
    }
    vec![
        env("or-1", T0, first),
        env(
            "cu-2",
            later,
            profile(shop("ann@new.example"), "Ann", later),
        ),
        env("or-2", later, second),
    ]
}

#[test]
fn a_split_separates_emails_a_store_id_linked_and_a_later_merge_rejoins_them() {
    let mut events = email_change();
    let split_at = T0 + Duration::days(20);
    events.push(decided(
        "op-s",
        split_at,
        IdentityDecision::Split,
        email("ann@old.example"),
        email("ann@new.example"),
    ));
    let run = same_in_every_order(&events);
    assert_eq!(run.store.customers().len(), 2);
    let shop_key = Identity::default()
        .with_external("shopify", "207119551")
        .primary_key("acme")
        .unwrap()
        .to_string();
    for (who, total) in [("ann@old.example", 2000), ("ann@new.example", 3000)] {
        let c = customer_of(&run, who);
        assert_eq!(c.orders_count, 1, "{who}");
        assert_eq!(c.revenue[0].net, total, "{who}");
        // The store id both still carry is flagged on both.
        assert!(
            c.shared_identities.iter().any(|s| s.key == shop_key),
            "{who}: {:?}",
            c.shared_identities
        );
    }
    // A later merge of the same pair holds again (rules and operator agree).
    let mut rejoined = events.clone();
    rejoined.push(decided(
        "op-m",
        split_at + Duration::days(1),
        IdentityDecision::Merge,
        email("ann@new.example"),
        email("ann@old.example"),
    ));
    let run = same_in_every_order(&rejoined);
    assert_eq!(run.store.customers().len(), 1);
    let c = customer_of(&run, "ann@old.example");
    assert_eq!(c.orders_count, 2);
    assert_eq!(c.merged[0].reason, "operator");
}

#[test]
fn three_emails_of_one_store_id_divide_the_same_way_from_every_side() {
    // One Shopify id carried by three emails; the operator splits the first
    // two. The third joins one of them, and every email agrees which.
    let shop = |e: &str| {
        Identity::default()
            .with_email(Some(e))
            .with_external("shopify", "42")
    };
    let mut events: Vec<Envelope> = ["c1@x.example", "c2@x.example", "c3@x.example"]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let at = T0 + Duration::days(i as i64);
            let mut placed = order(
                &format!("shopify:{i}"),
                e,
                1000 * (i as i64 + 1),
                at,
                "paid",
            );
            if let Event::OrderUpserted(o) = &mut placed {
                o.customer = shop(e);
                o.created_at = at;
            }
            env(&format!("or-{i}"), at, placed)
        })
        .collect();
    events.push(decided(
        "op-s",
        T0 + Duration::days(9),
        IdentityDecision::Split,
        email("c1@x.example"),
        email("c2@x.example"),
    ));
    let run = same_in_every_order(&events);
    let customers = run.store.customers();
    assert_eq!(customers.len(), 2, "{:?}", customers.keys());
    assert!(
        customers.contains_key(&id_of("c1@x.example"))
            && customers.contains_key(&id_of("c2@x.example"))
    );
    let orders: u64 = customers.values().map(|c| c.orders_count).sum();
    assert_eq!(orders, 3, "every order belongs to one of them");
    let with_c3: Vec<_> = customers
        .values()
        .filter(|c| {
            c.merged
                .iter()
                .any(|m| m.merged_id == id_of("c3@x.example"))
        })
        .collect();
    assert_eq!(with_c3.len(), 1);
    assert_eq!(with_c3[0].orders_count, 2);
}

#[test]
fn a_shared_phone_goes_where_the_operator_says() {
    // A phone two emails carry merges nothing and keeps its guest order apart
    // (the rules); blocking one email from it, or merging it with the other,
    // gives the phone and its guest order to the other.
    let phone = SHARED_PHONE;
    let base = shared_phone_events();
    let phone_party = || Party::Phone(phone.to_string());
    let later = T0 + Duration::days(2);
    for decision in [
        decided(
            "op",
            later,
            IdentityDecision::Block,
            email("b@example.com"),
            phone_party(),
        ),
        decided(
            "op",
            later,
            IdentityDecision::Merge,
            phone_party(),
            email("a@example.com"),
        ),
    ] {
        let mut events = base.clone();
        events.push(decision);
        let run = same_in_every_order(&events);
        assert_eq!(
            run.store.customers().len(),
            2,
            "{:?}",
            run.store.customers().keys()
        );
        let a = customer_of(&run, "a@example.com");
        assert_eq!(a.orders_count, 1, "the guest order joins a");
        // Merged by the operator while b still claims it, the phone is
        // flagged as shared; blocked from b, b's claim no longer counts.
        let blocked = matches!(events[3].event,
            Event::IdentityDecided(ref d) if d.decision == IdentityDecision::Block);
        assert_eq!(
            a.shared_identities.len(),
            usize::from(!blocked),
            "{:?}",
            a.shared_identities
        );
        let b = customer_of(&run, "b@example.com");
        assert_eq!(b.orders_count, 0);
        // The customer that holds the phone lists the decision once (a merge
        // of two of its identities, or its phone kept from b); b lists a
        // block of its email.
        assert_eq!(a.identity_decisions.len(), 1, "{:?}", a.identity_decisions);
        assert_eq!(b.identity_decisions.len(), usize::from(blocked));
    }
}

#[test]
fn replaying_the_log_after_a_split_changes_nothing() {
    let mut events = email_change();
    events.push(decided(
        "op-s",
        T0 + Duration::days(20),
        IdentityDecision::Split,
        email("ann@old.example"),
        email("ann@new.example"),
    ));
    let mut run = fold_batched(&events, 2);
    let before = folded(&run);
    // The same log again, into the same state (a replay after a rewind).
    let mut engine = storefold_core::Engine::new();
    for e in &events {
        engine.apply(&run.store, e).expect("fold");
    }
    let out = engine.finish(&run.store);
    run.store.commit(out.changes);
    assert_eq!(folded(&run), before);
    assert!(
        out.projections.is_empty(),
        "nothing to publish again: {:?}",
        out.projections.len()
    );
    // And a fresh store folding it gives the same customers.
    assert_eq!(folded(&fold_batched(&events, events.len())), before);
}

#[test]
fn an_external_id_party_is_keyed_like_the_mappers_key_it() {
    let x = ExternalId {
        source: "shopify".into(),
        id: "207119551".into(),
    };
    let want = Identity::default()
        .with_external("shopify", "207119551")
        .primary_key("acme");
    assert_eq!(Party::External(x).key("acme"), want);
    assert_eq!(Party::CustomerId("cus_zz_1".into()).key("acme"), None);
    let mut p = Party::Email("a@example.com".into());
    p.scrub();
    assert_eq!(p, Party::Erased);
}
