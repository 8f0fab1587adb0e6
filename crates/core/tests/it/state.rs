//! Stored state: what a fold writes survives the processor's encoding.

use std::collections::BTreeSet;

use storefold_core::engine::{Engine, MemStore, StateValue};
use storefold_core::state::{decode, encode};
use storefold_scenario as scenario;

/// Every record a fold writes, with every identity rule at work (linked
/// emails, groups, shared phones, claim evidence), encodes and decodes to
/// itself. The engine's tests keep records in memory; a shape JSON cannot hold
/// (a map keyed by a struct) would otherwise first fail in the processor.
#[test]
fn every_record_a_fold_writes_round_trips_through_the_stored_encoding() {
    let spec = super::every_identity_rule();
    let mut store = MemStore::default();
    let mut seen = BTreeSet::new();
    for chunk in scenario::generate(3, &spec).chunks(7) {
        let mut engine = Engine::new();
        for e in chunk {
            engine.apply(&store, e).expect("fold");
        }
        let out = engine.finish(&store);
        for (k, v) in &out.changes {
            let Some(v) = v else { continue };
            let back = decode(&encode(v)).unwrap_or_else(|e| panic!("{k:?}: {e}"));
            assert_eq!(&back, v, "{k:?}");
            if let StateValue::Index(n) = v {
                if !n.evidence.is_empty() {
                    seen.insert("claim evidence");
                }
                if n.shared {
                    seen.insert("shared");
                }
                if n.source.is_some() {
                    seen.insert("source");
                }
            }
        }
        store.commit(out.changes);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["claim evidence", "shared", "source"]),
        "the history wrote every new index field"
    );
}
