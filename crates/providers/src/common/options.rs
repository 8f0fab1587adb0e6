//! How a tenant's payloads are read ([`MapOptions`]): its stores, where each
//! payment provider names the store's order ([`OrderReference`]), Adyen's
//! capture mode and the currency of the stores' product costs; [`MapContext`]
//! carries them into one mapping call.

use storefold_core::Currency;

/// How one tenant's payloads are read: which stores it runs, and how each
/// payment provider names the store order it is paying for. Built from the
/// tenant's configuration (`[tenants.<id>.stores]`, `[tenants.<id>.payments]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOptions {
    /// The stores the tenant runs (`shopify`, `woocommerce`), first = default:
    /// a bare order id from a payment provider (`727`) names an order of the
    /// provider's own `store`, else of the first store listed. An id that
    /// already names its store (`woocommerce:727`) is taken as it is.
    pub stores: Vec<String>,
    /// Where Stripe names the order (metadata keys; default `order_id`).
    pub stripe: OrderReference,
    /// Where PayPal names the order (default `custom_id`, then `invoice_id`).
    pub paypal: OrderReference,
    /// How Adyen's merchant reference names the order (default: all of it).
    pub adyen: OrderReference,
    /// Whether Adyen captures authorisations by itself (Adyen's default) or the
    /// merchant captures them (then only CAPTURE notifications are money in).
    pub adyen_capture: AdyenCapture,
    /// The currency of the product costs a store sends without one (Shopify's
    /// inventory item `cost`, WooCommerce's Cost of Goods meta): the shop's
    /// own currency. `None`: a cost that comes without a currency cannot be
    /// mapped ([`MapContext::cost_currency`] names the key to set).
    pub cost_currency: Option<Currency>,
}

/// Where a payment provider's payload names the store's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderReference {
    /// Stripe: metadata keys, tried in order (`order_id`). PayPal: `custom_id`
    /// and/or `invoice_id`, tried in order. Adyen: unused (the merchant
    /// reference is the only place).
    pub fields: Vec<String>,
    /// The store the order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
    /// The part of the reference that is the order id: a regular expression
    /// whose group `order` (or else first group) is the id, e.g.
    /// `^(?P<order>\d+)-\d+$` for Adyen merchant references like `1001-2`.
    /// `None`: the whole value.
    pub pattern: Option<ReferencePattern>,
}

/// A compiled [`OrderReference::pattern`].
#[derive(Clone, Debug)]
pub struct ReferencePattern(regex::Regex);

impl ReferencePattern {
    /// Compiles `pattern`; it must have a capture group.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        if re.captures_len() < 2 {
            return Err(format!(
                "pattern {pattern:?} has no group: put the order id in `(?P<order>...)`"
            ));
        }
        Ok(Self(re))
    }

    /// The order id inside `value`, `None` when the value does not match.
    pub fn order_id<'a>(&self, value: &'a str) -> Option<&'a str> {
        let caps = self.0.captures(value)?;
        caps.name("order")
            .or_else(|| caps.get(1))
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for ReferencePattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ReferencePattern {}

/// See [`MapOptions::adyen_capture`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdyenCapture {
    /// AUTHORISATION is captured by Adyen (immediately or after a delay) unless
    /// cancelled; CAPTURE notifications, when enabled, itemise it.
    #[default]
    Automatic,
    /// Only CAPTURE notifications move money; an AUTHORISATION is a hold.
    Manual,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            stores: vec!["shopify".into()],
            stripe: OrderReference {
                fields: vec!["order_id".into()],
                ..OrderReference::default()
            },
            paypal: OrderReference {
                fields: vec!["custom_id".into(), "invoice_id".into()],
                ..OrderReference::default()
            },
            adyen: OrderReference::default(),
            adyen_capture: AdyenCapture::Automatic,
            cost_currency: None,
        }
    }
}

impl MapOptions {
    /// Options for a tenant that runs `stores` (first = default), all else default.
    pub fn for_stores<S: Into<String>>(stores: impl IntoIterator<Item = S>) -> Self {
        let stores: Vec<String> = stores.into_iter().map(Into::into).collect();
        Self {
            stores: if stores.is_empty() {
                MapOptions::default().stores
            } else {
                stores
            },
            ..MapOptions::default()
        }
    }

    /// The store a bare order id from `provider` belongs to.
    pub fn store_for(&self, provider: &str) -> &str {
        let own = match provider {
            "stripe" => self.stripe.store.as_deref(),
            "paypal" => self.paypal.store.as_deref(),
            "adyen" => self.adyen.store.as_deref(),
            _ => None,
        };
        own.or(self.stores.first().map(String::as_str))
            .unwrap_or("shopify")
    }
}

/// Context of one mapping call.
#[derive(Clone, Copy, Debug)]
pub struct MapContext<'a> {
    /// The tenant the event belongs to.
    pub tenant: &'a str,
    /// How this tenant's payloads are read.
    pub options: &'a MapOptions,
}

impl MapContext<'_> {
    /// The currency of a store's product cost sent without one
    /// ([`MapOptions::cost_currency`]), or an error on `field` that names the
    /// configuration key to set: the payload then goes to the dead-letter
    /// topic with that reason, and nothing is guessed.
    pub fn cost_currency(&self, field: &str) -> Result<Currency, crate::MapError> {
        self.options
            .cost_currency
            .ok_or_else(|| crate::MapError::InvalidField {
                field: field.to_string(),
                reason: format!(
                    "the payload does not say the cost's currency (it is the shop's): \
                     set tenants.{}.cost_currency",
                    self.tenant
                ),
            })
    }
}
