//! Avro encode and decode of the records the processor handles per event: the
//! raw event it reads, the changelog's state records it writes, and the
//! customer projections it publishes (with the typed 360 view of a customer
//! folded from a generated history). Figures are printed, never asserted.
//!
//! Run with the test profile, which shares CI's RocksDB build (the bench
//! profile would compile RocksDB once more):
//! `cargo bench --profile test -p storefold-benches --bench codec`.

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storefold_codec::{
    AvroCodec, CustomerProjection, CustomerView, RawEvent, StateKind, StateRecord, Verification,
    WireFormat, epoch_millis,
};
use storefold_core::{Engine, MemStore};
use storefold_scenario::{self as scenario, ScenarioSpec};

fn raw_event() -> RawEvent {
    RawEvent {
        event_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
        tenant: "tenant-0042".into(),
        provider: "shopify".into(),
        topic: "orders/create".into(),
        received_at: 1_732_780_800_123,
        headers: BTreeMap::from([
            ("x-shopify-topic".to_owned(), "orders/create".to_owned()),
            (
                "x-shopify-shop-domain".to_owned(),
                "acme.myshopify.com".to_owned(),
            ),
            ("x-shopify-webhook-id".to_owned(), "b54557e4".to_owned()),
        ]),
        body: vec![b'x'; 390],
        verification: Verification::verified("shopify-hmac-sha256"),
        trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        encryption: None,
        residue: None,
    }
}

fn state_record() -> StateRecord {
    StateRecord {
        key: "tenant-0042/cust/email:jane@example.com".into(),
        kind: StateKind::Aggregate,
        epoch: 7,
        sequence: 1234,
        value: Some(vec![b'{'; 600]),
    }
}

/// The projection of the customer with the largest 360 view in a small
/// generated history (orders, refunds, shipments, touches, tickets).
fn customer_projection() -> CustomerProjection {
    let events = scenario::generate(
        5,
        &ScenarioSpec {
            customers: 8,
            ..ScenarioSpec::default()
        },
    );
    let mut store = MemStore::default();
    let mut engine = Engine::new();
    for e in &events {
        engine.apply(&store, e).expect("fold");
    }
    let out = engine.finish(&store);
    store.commit(out.changes);
    let customers = store.customers();
    let c = customers
        .values()
        .max_by_key(|c| serde_json::to_string(c).map_or(0, |s| s.len()))
        .expect("a customer");
    CustomerProjection {
        tenant: c.tenant.clone(),
        customer_id: c.customer_id.clone(),
        generation: 1,
        version: 3,
        email: c.email.clone(),
        phone: c.phone.clone(),
        redacted: c.redacted,
        merged_into: None,
        updated_at: c.last_event_at.map_or(0, epoch_millis),
        doc: serde_json::to_string(c).expect("json"),
        view: Some(CustomerView::from(c)),
    }
}

fn codec(c: &mut Criterion) {
    let codec = AvroCodec::embedded().expect("codec");
    let raw = raw_event();
    let state = state_record();
    let customer = customer_projection();
    let raw_bytes = codec.encode(&raw, WireFormat::SingleObject).expect("raw");
    let state_bytes = codec
        .encode(&state, WireFormat::SingleObject)
        .expect("state");
    let customer_bytes = codec
        .encode(&customer, WireFormat::SingleObject)
        .expect("customer");
    eprintln!(
        "encoded sizes: raw event {} B, state record {} B, customer projection {} B",
        raw_bytes.len(),
        state_bytes.len(),
        customer_bytes.len()
    );

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_event/decode", |b| {
        b.iter(|| codec.decode::<RawEvent>(&raw_bytes).expect("decode"))
    });
    g.bench_function("state_record/encode", |b| {
        b.iter(|| {
            codec
                .encode(&state, WireFormat::SingleObject)
                .expect("encode")
        })
    });
    g.bench_function("state_record/decode", |b| {
        b.iter(|| codec.decode::<StateRecord>(&state_bytes).expect("decode"))
    });
    g.bench_function("customer_projection/encode", |b| {
        b.iter(|| {
            codec
                .encode(&customer, WireFormat::SingleObject)
                .expect("encode")
        })
    });
    g.bench_function("customer_projection/decode", |b| {
        b.iter(|| {
            codec
                .decode::<CustomerProjection>(&customer_bytes)
                .expect("decode")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
