//! Snapshots of what every fixture maps to: each file in
//! `src/<provider>/fixtures` and in the shared conformance corpus
//! (`shared/conformance/<provider>`), read as stored by the ingest and mapped,
//! is compared with its reviewed snapshot in `src/snapshots/`. They guard against
//! unnoticed changes in any mapped field; the per-provider tests keep their
//! explicit assertions (money above all).
//!
//! A new fixture gets its snapshot with `INSTA_UPDATE=always cargo test -p
//! storefold-providers fixture_snapshots` (or `cargo insta review`); review it
//! against the payload before committing. Under CI a missing snapshot fails.

use std::path::Path;

use serde_json::{Value, json};
use time::macros::datetime;

use crate::test_support::{conformance_corpora, fixture_dir, fixture_file_names, read_file};
use crate::{Headers, MapContext, MapOptions, ProviderKind, RawInput, WebhookRequest};

/// The topic a store or operator fixture was sent with (they send it in a
/// header): the file name up to `__`, whose start is the topic with `_` for `/`
/// or `.`.
fn store_topic(kind: ProviderKind, file: &str) -> String {
    let base = file.trim_end_matches(".json");
    let base = base.split("__").next().unwrap_or(base);
    match kind {
        ProviderKind::Shopify => {
            const TOPICS: &[&str] = &[
                "checkouts/create",
                "checkouts/update",
                "customers/create",
                "customers/data_request",
                "customers/delete",
                "customers/redact",
                "customers/update",
                "fulfillment_events/create",
                "fulfillments/create",
                "fulfillments/update",
                "inventory_items/create",
                "inventory_items/update",
                "order_transactions/create",
                "orders/cancelled",
                "orders/create",
                "orders/edited",
                "orders/paid",
                "orders/updated",
                "products/create",
                "products/update",
                "refunds/create",
                "shop/redact",
            ];
            if base.starts_with("order_transactions_") {
                return "order_transactions/create".into();
            }
            if base.starts_with("fulfillments_webhook") {
                return "fulfillments/create".into();
            }
            TOPICS
                .iter()
                .find(|t| base.starts_with(&t.replace('/', "_")))
                .unwrap_or_else(|| panic!("shopify fixture {file}: name its topic here"))
                .to_string()
        }
        ProviderKind::WooCommerce => {
            if let Some(rest) = base.strip_prefix("customer_") {
                return format!("customer.{rest}");
            }
            if let Some(rest) = base.strip_prefix("product_") {
                return format!("product.{rest}");
            }
            match base {
                "order_created" | "order_retrieve" => "order.created".into(),
                "order_deleted" => "order.deleted".into(),
                "order_restored" => "order.restored".into(),
                _ => "order.updated".into(),
            }
        }
        // `customer_erase__email.json` was sent as `customer/erase`.
        ProviderKind::Operator => base.replacen('_', "/", 1),
        // `adyen.settlement_details__bad_zone.csv`: the report's format.
        ProviderKind::Settlement => {
            let base = file.trim_end_matches(".csv");
            base.split("__").next().unwrap_or(base).to_string()
        }
        _ => String::new(),
    }
}

/// What `file` maps to when stored as the ingest stores it (topic header for the
/// stores, nothing else kept) and mapped for tenant `t1`.
fn mapped(kind: ProviderKind, dir: &Path, file: &str) -> Value {
    let body = read_file(dir, file);
    let topic = store_topic(kind, file);
    let mut headers = Headers::new();
    if let Some(h) = kind.topic_header() {
        headers.insert(h, &topic);
    }
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: None,
    };
    let refused =
        |e: crate::MapError| json!({"refused": {"code": e.code(), "reason": e.to_string()}});
    let inbound = match kind.describe(&req) {
        Ok(i) => i,
        Err(e) => return refused(e),
    };
    let kept = headers.select(kind.kept_headers());
    // Costs sent without a currency (Shopify's, WooCommerce's) are read as
    // the tenant's `cost_currency`; its absence is tested per provider.
    let options = MapOptions {
        cost_currency: Some(storefold_core::Currency::from_code("USD").expect("USD")),
        ..MapOptions::default()
    };
    let ctx = MapContext {
        tenant: "t1",
        options: &options,
    };
    let input = RawInput {
        topic: &inbound.topic,
        event_id: &inbound.event_id,
        headers: &kept,
        body: &body,
        received_at: datetime!(2030-01-01 00:00 UTC),
    };
    match kind.map(&ctx, &input) {
        Ok(events) => json!({
            "topic": inbound.topic,
            "event_id": inbound.event_id,
            "occurred_at": inbound.occurred_at.map(|t| t.unix_timestamp()),
            "events": events,
        }),
        Err(e) => refused(e),
    }
}

/// Corpus files that are not webhook bodies: API objects and signing vectors,
/// which the provider's tests wrap or use in their own way.
fn not_a_webhook(kind: ProviderKind, file: &str) -> bool {
    match kind {
        ProviderKind::Adyen => file == "hmac_known_answer_vector.json",
        ProviderKind::Easypost => file.contains("api_object"),
        // Only the event files are events; the rest are charges, disputes,
        // intents and balance transactions (API objects or an event's data).
        ProviderKind::Stripe => {
            !(file.starts_with("djstripe__event_") || file == "openapi_fixture__event.json")
        }
        // A refund resource: WooCommerce has no refund webhook (it sends the order).
        ProviderKind::WooCommerce => file == "order_refund_create.json",
        _ => false,
    }
}

/// Snapshots every `.json` (and `.jsonl`, `.csv`) file of `dir` as `<prefix>__<file>`, except
/// `skip`ped ones.
fn snapshot_dir(
    kind: ProviderKind,
    prefix: &str,
    dir: &Path,
    skip: fn(ProviderKind, &str) -> bool,
) -> usize {
    let files: Vec<String> = fixture_file_names(dir)
        .into_iter()
        .filter(|f| !skip(kind, f))
        .collect();
    for file in &files {
        let stem = file
            .strip_suffix(".csv")
            .or_else(|| file.strip_suffix(".jsonl"))
            .or_else(|| file.strip_suffix(".json"))
            .unwrap_or(file);
        let name = format!("{prefix}__{stem}");
        insta::assert_json_snapshot!(name, mapped(kind, dir, file));
    }
    files.len()
}

#[test]
fn every_fixture_of_every_provider() {
    let mut total = 0;
    for &kind in ProviderKind::ALL {
        let dir = fixture_dir(kind.name());
        assert!(dir.is_dir(), "{kind} has no fixtures directory");
        let n = snapshot_dir(kind, kind.name(), &dir, |_, _| false);
        assert!(n > 0, "{kind} has no fixtures");
        total += n;
    }
    assert!(total >= 100, "only {total} fixtures");
}

#[test]
fn every_conformance_payload() {
    let mut total = 0;
    for (kind, dir) in conformance_corpora() {
        total += snapshot_dir(
            kind,
            &format!("conformance__{}", kind.name()),
            &dir,
            not_a_webhook,
        );
    }
    // Absent only outside CI (conformance_corpora fails under CI).
    assert!(
        total == 0 || total >= 20,
        "only {total} conformance webhooks"
    );
}
