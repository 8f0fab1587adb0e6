//! The order a payment event belongs to: a payment provider's order reference
//! read through the tenant's [`MapOptions`] (pattern, store) and turned into
//! namespaced order ids and [`OrderLink`]s.

use storefold_core::event::OrderLink;

use crate::{MapOptions, OrderReference};

/// The namespaced order id of an order reference a payment carries. A value that
/// already names a store (`shopify:123`, `woocommerce:727`) is kept as it is;
/// a bare one belongs to the provider's store ([`MapOptions::store_for`]).
pub(crate) fn namespaced_order_id(opts: &MapOptions, provider: &str, reference: &str) -> String {
    if names_a_store(opts, reference) {
        return reference.to_string();
    }
    format!("{}:{reference}", opts.store_for(provider))
}

/// Whether `reference` is already a namespaced order id (`woocommerce:727`).
fn names_a_store(opts: &MapOptions, reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(store, id)| {
        !id.is_empty() && (opts.stores.iter().any(|s| s == store) || KNOWN_STORES.contains(&store))
    })
}

/// Stores whose namespaced order ids (`shopify:1`) a payment may carry as is.
const KNOWN_STORES: [&str; 2] = ["shopify", "woocommerce"];

/// Where `provider` names the store's order, per the tenant's options.
fn order_reference_of<'a>(opts: &'a MapOptions, provider: &str) -> Option<&'a OrderReference> {
    match provider {
        "stripe" => Some(&opts.stripe),
        "paypal" => Some(&opts.paypal),
        "adyen" => Some(&opts.adyen),
        _ => None,
    }
}

/// The namespaced order id a payment provider's order reference names, or
/// `None` when it names none: an empty value, or one the provider's configured
/// [`OrderReference::pattern`] does not match (`1001-2` with
/// `^(?P<order>\d+)-\d+$` names order `1001`). A value that already names its
/// store is taken as it is.
pub(crate) fn payment_order_id(opts: &MapOptions, provider: &str, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if names_a_store(opts, raw) {
        return Some(raw.to_string());
    }
    let pattern = order_reference_of(opts, provider).and_then(|r| r.pattern.as_ref());
    let id = match pattern {
        Some(p) => p.order_id(raw)?.trim(),
        None => raw,
    };
    (!id.is_empty()).then(|| namespaced_order_id(opts, provider, id))
}

/// The order links of a payment event (Stripe, Adyen, PayPal): each order
/// reference that names an order ([`payment_order_id`]: through the provider's
/// pattern, namespaced in the provider's store), then each payment reference of
/// `provider`. Empty references are skipped; each link appears once, in the
/// order given.
pub(crate) fn payment_order_links<'a>(
    opts: &MapOptions,
    provider: &str,
    order_references: impl IntoIterator<Item = String>,
    payment_references: impl IntoIterator<Item = &'a str>,
) -> Vec<OrderLink> {
    let orders = order_references
        .into_iter()
        .filter_map(|r| payment_order_id(opts, provider, &r))
        .map(|order_id| OrderLink::Order { order_id });
    let payments = payment_references
        .into_iter()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| OrderLink::Payment {
            provider: provider.to_string(),
            reference: r.to_string(),
        });
    let mut links: Vec<OrderLink> = Vec::new();
    for link in orders.chain(payments) {
        if !links.contains(&link) {
            links.push(link);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReferencePattern;

    #[test]
    fn payment_order_references_follow_the_providers_options() {
        let mut opts = MapOptions::for_stores(["shopify", "woocommerce"]);
        opts.adyen.pattern = Some(ReferencePattern::new(r"^(?P<order>\d+)-\d+$").unwrap());
        opts.adyen.store = Some("woocommerce".into());
        // Through the pattern, in the provider's store.
        assert_eq!(
            payment_order_id(&opts, "adyen", "1001-2").as_deref(),
            Some("woocommerce:1001")
        );
        // A reference the pattern does not match names no order.
        assert_eq!(payment_order_id(&opts, "adyen", "gift-card-7"), None);
        // One that already names its store is taken as it is.
        assert_eq!(
            payment_order_id(&opts, "adyen", "shopify:77").as_deref(),
            Some("shopify:77")
        );
        // Without a pattern the whole value, in the first store.
        assert_eq!(
            payment_order_id(&opts, "stripe", " 1001-2 ").as_deref(),
            Some("shopify:1001-2")
        );
        assert_eq!(payment_order_id(&opts, "paypal", "  "), None);
        assert_eq!(
            payment_order_links(
                &opts,
                "adyen",
                [
                    "1001-2".to_string(),
                    "nope".to_string(),
                    "1001-3".to_string()
                ],
                ["PSP1", "", "PSP1"],
            ),
            vec![
                OrderLink::Order {
                    order_id: "woocommerce:1001".into()
                },
                OrderLink::Payment {
                    provider: "adyen".into(),
                    reference: "PSP1".into()
                },
            ]
        );
    }
}
