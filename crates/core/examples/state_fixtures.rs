//! Writes the golden state fixtures of this build's state version: one stored
//! value of each kind, folded from a generated history, under
//! `crates/core/fixtures/state/v<STATE_VERSION>/` (and `v0/`, the shape
//! written before versions existed, while it equals version 1's).
//!
//! `cargo run -p storefold-core --example state_fixtures`. Refuses to touch a
//! version directory that exists: fixtures of a released version are frozen.

#![allow(clippy::print_stdout)] // a command-line tool: it reports what it wrote

use std::collections::BTreeMap;
use std::path::PathBuf;

use storefold_core::engine::{Engine, MemStore, StateValue};
use storefold_core::state::{STATE_VERSION, encode};
use storefold_scenario::{self as scenario, ScenarioSpec};

fn kind(v: &StateValue) -> &'static str {
    match v {
        StateValue::Order(_) => "order",
        StateValue::OrderMeta(_) => "order_meta",
        StateValue::Fragment(_) => "fragment",
        StateValue::Index(_) => "index",
        StateValue::Customer(_) => "customer",
        StateValue::Ref(_) => "ref",
        StateValue::Parcel(_) => "parcel",
        StateValue::Parked(_) => "parked",
        StateValue::ParkedBy(_) => "parked_by",
        StateValue::Sku(_) => "sku",
        StateValue::Payout(_) => "payout",
    }
}

fn main() -> Result<(), String> {
    let spec = ScenarioSpec {
        customers: 4,
        ..ScenarioSpec::default()
    };
    let events = scenario::generate(17, &spec);
    let mut store = MemStore::default();
    // Folded backwards, one event per batch, so that payments and shipments
    // wait parked (and are stored so) for orders that come later.
    let mut picked: BTreeMap<&'static str, (String, StateValue)> = BTreeMap::new();
    for e in events.iter().rev() {
        let mut engine = Engine::new();
        engine.apply(&store, e).map_err(|e| e.to_string())?;
        let out = engine.finish(&store);
        for (k, v) in &out.changes {
            if let Some(v) = v {
                let key = k.encode();
                let slot = picked.entry(kind(v)).or_insert((key.clone(), v.clone()));
                if key < slot.0 {
                    *slot = (key, v.clone());
                }
            }
        }
        store.commit(out.changes);
    }
    if picked.len() != 9 {
        return Err(format!(
            "the history gave only {:?}",
            picked.keys().collect::<Vec<_>>()
        ));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/state");
    let mut versions = vec![STATE_VERSION];
    if STATE_VERSION == 1 {
        versions.insert(0, 0);
    }
    for version in versions {
        let dir = root.join(format!("v{version}"));
        if dir.exists() {
            println!("{} exists: left as it is", dir.display());
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, (key, value)) in &picked {
            let bytes = if version == 0 {
                serde_json::to_vec(value).map_err(|e| e.to_string())?
            } else {
                encode(value)
            };
            let path = dir.join(format!("{name}.state"));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{} ({key})", path.display());
        }
    }
    Ok(())
}
