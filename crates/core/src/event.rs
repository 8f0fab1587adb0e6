//! Canonical events: what every provider's webhook is normalised into.
//!
//! Events are past tense, tenant scoped and versioned. The serialised form carries
//! `type` and `v`; [`upcast`] turns any older version into the current one, so a
//! better normaliser (or an older log) never breaks the fold.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::identity::Identity;
use crate::money::Money;

/// A namespaced order id, e.g. `shopify:450789469`, `woocommerce:727`.
pub type OrderId = String;

/// A canonical event with the metadata the fold needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub tenant: String,
    /// Provider that sent it (`shopify`, `stripe`, `collect`, ...).
    pub provider: String,
    /// Unique id of this canonical event: the provider's idempotency id plus, when
    /// one webhook yields several events, a stable suffix (`evt_1#refund:re_2`).
    pub event_id: String,
    /// When it happened, from the payload (never the wall clock).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(flatten)]
    pub event: Event,
}

/// Every canonical event. `#[serde(tag = "type")]` names it; see [`Event::type_name`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    CustomerUpserted(CustomerUpserted),
    CustomerRedacted(CustomerRedacted),
    OrderUpserted(Box<OrderUpserted>),
    PaymentSucceeded(Payment),
    PaymentFailed(Payment),
    RefundIssued(Refund),
    DisputeOpened(Dispute),
    DisputeClosed(Dispute),
    ShipmentUpdated(Shipment),
    ReturnRequested(Return),
    ReturnResolved(Return),
    TicketUpdated(Ticket),
    Touch(Touch),
    Identify(Identify),
    IdentityDecided(IdentityDecided),
    InventoryUpdated(InventoryUpdated),
    PayoutUpdated(PayoutUpdated),
    PayoutLine(PayoutLine),
}

/// Current schema version of every event type. Bump one and add an arm to
/// [`upcast`] when a type's shape changes.
pub const EVENT_VERSION: u32 = 1;

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::CustomerUpserted(_) => "CustomerUpserted",
            Event::CustomerRedacted(_) => "CustomerRedacted",
            Event::OrderUpserted(_) => "OrderUpserted",
            Event::PaymentSucceeded(_) => "PaymentSucceeded",
            Event::PaymentFailed(_) => "PaymentFailed",
            Event::RefundIssued(_) => "RefundIssued",
            Event::DisputeOpened(_) => "DisputeOpened",
            Event::DisputeClosed(_) => "DisputeClosed",
            Event::ShipmentUpdated(_) => "ShipmentUpdated",
            Event::ReturnRequested(_) => "ReturnRequested",
            Event::ReturnResolved(_) => "ReturnResolved",
            Event::TicketUpdated(_) => "TicketUpdated",
            Event::Touch(_) => "Touch",
            Event::Identify(_) => "Identify",
            Event::IdentityDecided(_) => "IdentityDecided",
            Event::InventoryUpdated(_) => "InventoryUpdated",
            Event::PayoutUpdated(_) => "PayoutUpdated",
            Event::PayoutLine(_) => "PayoutLine",
        }
    }

    pub fn version(&self) -> u32 {
        EVENT_VERSION
    }
}

/// Serialises an envelope with its version tag.
pub fn to_versioned_json(env: &Envelope) -> serde_json::Value {
    let mut value = serde_json::to_value(env).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("v".into(), EVENT_VERSION.into());
    }
    value
}

/// Reads a versioned envelope, upcasting older versions to the current one. A
/// version newer than this build knows is an error (never guessed at).
pub fn upcast(mut value: serde_json::Value) -> Result<Envelope, serde_json::Error> {
    let v = value.get("v").and_then(|v| v.as_u64()).unwrap_or(1);
    if let Some(obj) = value.as_object_mut() {
        obj.remove("v");
    }
    match v {
        // Version 1 is the first and current one; a later version adds an arm
        // here that rewrites `value` from the previous shape before it is read.
        1 => serde_json::from_value(value),
        other => Err(<serde_json::Error as serde::de::Error>::custom(format!(
            "event version {other} is newer than this build understands ({EVENT_VERSION})"
        ))),
    }
}

/// Erasure: what of an event is personal data. [`Event::scrub`] removes it and
/// keeps what the books need (ids, links, money, statuses, times), so an event
/// of an erased subject still counts, anonymously.
impl Event {
    /// Removes the personal data this event carries: identities, names,
    /// addresses, notes, free text (ticket subjects, refund and return notes,
    /// tracking checkpoints' places and messages), tags, discount codes, and the
    /// pages a visit came from (a landing page may carry the email in its query).
    pub fn scrub(&mut self) {
        match self {
            Event::CustomerUpserted(c) => {
                c.identity = Identity::default();
                c.first_name = None;
                c.last_name = None;
                c.addresses.clear();
                c.tags.clear();
                c.note = None;
            }
            Event::CustomerRedacted(_) => {}
            Event::OrderUpserted(o) => o.scrub(),
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => p.scrub(),
            Event::RefundIssued(r) => r.scrub(),
            Event::DisputeOpened(_) | Event::DisputeClosed(_) => {}
            Event::ShipmentUpdated(s) => {
                for c in &mut s.checkpoints {
                    c.scrub();
                }
            }
            Event::ReturnRequested(r) | Event::ReturnResolved(r) => r.scrub(),
            Event::TicketUpdated(t) => t.scrub(),
            Event::Touch(t) => {
                t.identity = Identity::default();
                t.utm.scrub();
                t.landing_page = None;
                t.referrer = None;
                t.gclid = None;
                t.fbclid = None;
                t.cart_token = None;
            }
            Event::Identify(i) => i.identity = Identity::default(),
            // An operator's decision names its two sides and nothing else
            // about them; the fold keeps only their keys.
            Event::IdentityDecided(d) => {
                d.a.scrub();
                d.b.scrub();
            }
            // Stock and costs are about goods, not people.
            Event::InventoryUpdated(_) => {}
            // Settlement figures and references; no person is named.
            Event::PayoutUpdated(_) | Event::PayoutLine(_) => {}
        }
    }
}

impl OrderUpserted {
    /// Removes the buyer's personal data, keeping the order's figures, lines,
    /// references and times.
    pub fn scrub(&mut self) {
        self.customer = Identity::default();
        self.customer_name = None;
        self.shipping_address = None;
        self.billing_address = None;
        self.note = None;
        self.tags.clear();
        self.discount_codes.clear();
        self.cart_token = None;
        self.attribution.utm.scrub();
        self.attribution.landing_site = None;
        self.attribution.referring_site = None;
        self.attribution.note_attributes.clear();
    }
}

impl Payment {
    /// A payment without its payer.
    pub fn scrub(&mut self) {
        self.payer = Identity::default();
    }
}

impl Refund {
    /// A refund without the merchant's note (`reason`).
    pub fn scrub(&mut self) {
        self.reason = None;
    }
}

impl Return {
    /// A return without its note.
    pub fn scrub(&mut self) {
        self.note = None;
    }
}

impl Utm {
    /// Keeps the campaign (source, medium, name) and drops the free-form
    /// parts (term, content), which may carry anything a link was built with.
    pub fn scrub(&mut self) {
        self.term = None;
        self.content = None;
    }
}

impl Checkpoint {
    /// A tracking step without its place or message (a carrier's message may
    /// name who signed for the parcel); its time and status stay.
    pub fn scrub(&mut self) {
        self.location = None;
        self.message = None;
    }
}

impl Ticket {
    /// A ticket without its requester, subject or tags; its status, reasons
    /// and times stay.
    pub fn scrub(&mut self) {
        self.requester = Identity::default();
        self.subject = None;
        self.tags.clear();
    }
}

/// A postal address.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Marketing consent as the source reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_marketing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_marketing: Option<bool>,
}

/// A customer record from a store (Shopify customer, WooCommerce customer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpserted {
    pub identity: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The source deleted its customer record (not an erasure request).
    #[serde(default)]
    pub deleted: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
    /// Version of the record at the source; stale updates never overwrite newer.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Erase a customer's personal data (Shopify customers/redact, operator request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRedacted {
    pub identity: Identity,
    /// Orders whose personal data must go too (Shopify's `orders_to_redact`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<OrderId>,
    /// Who asked: `shopify`, `operator`, ...
    pub requested_by: String,
    /// Identities named by their keys only: the subject of a raw event whose
    /// data key was shredded (the processor knows whom it was about, not
    /// what it said).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<crate::identity::IdentityKey>,
}

impl CustomerRedacted {
    /// What the processor folds for a raw event whose data key was shredded:
    /// a redaction of its subject, named by key only (requested by
    /// `shredded`).
    pub fn shredded(subject: crate::identity::IdentityKey) -> Self {
        CustomerRedacted {
            identity: Identity::default(),
            orders: Vec::new(),
            requested_by: "shredded".into(),
            keys: vec![subject],
        }
    }
}

/// An operator's decision about two identities (`storefold identity
/// merge|split|block`): whether the customers they belong to are one person.
/// The latest decision on a pair (by `occurred_at`, then event id) is the one
/// that holds, whatever order the decisions arrive in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityDecided {
    pub decision: IdentityDecision,
    pub a: Party,
    pub b: Party,
    /// Who decided: `operator`.
    pub requested_by: String,
}

/// What an operator decided about two identities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityDecision {
    /// They are one customer, whatever the merge rules say.
    Merge,
    /// Undo a merge: they are two customers from now on, and no rule joins
    /// them again (until a later merge of the same pair).
    Split,
    /// Do not merge: the same as a split for the fold, recorded as a
    /// precaution rather than a correction.
    Block,
}

impl IdentityDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityDecision::Merge => "merge",
            IdentityDecision::Split => "split",
            IdentityDecision::Block => "block",
        }
    }

    /// Whether the decision keeps the two apart.
    pub fn separates(self) -> bool {
        !matches!(self, IdentityDecision::Merge)
    }
}

/// One side of an operator's decision: a single identity, or a customer by
/// the id storefold published it under (the identity it is anchored at).
/// Values are normalised as the mappers normalise them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Email(String),
    Phone(String),
    External(crate::identity::ExternalId),
    CustomerId(String),
    /// What remains of a side once scrubbed.
    Erased,
}

impl Party {
    /// The identity key this side names; `None` for a customer id that is not
    /// one storefold makes, or an erased side.
    pub fn key<'a>(
        &self,
        scope: impl Into<crate::identity::KeyScope<'a>>,
    ) -> Option<crate::identity::IdentityKey> {
        use crate::identity::{IdentityKey, IdentityKind};
        let scope = scope.into();
        match self {
            Party::Email(e) => Some(IdentityKey::new(scope, IdentityKind::Email, e)),
            Party::Phone(p) => Some(IdentityKey::new(scope, IdentityKind::Phone, p)),
            Party::External(x) => Some(IdentityKey::new(
                scope,
                IdentityKind::External,
                &format!("{}:{}", x.source, x.id),
            )),
            Party::CustomerId(c) => {
                IdentityKey::from_customer_id(&crate::identity::CustomerId(c.clone()))
            }
            Party::Erased => None,
        }
    }

    /// A customer id is not personal (it is a keyed hash); everything else is.
    pub fn scrub(&mut self) {
        if !matches!(self, Party::CustomerId(_)) {
            *self = Party::Erased;
        }
    }
}

/// Order lifecycle status, normalised across stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, not paid yet (WooCommerce pending, Shopify pending).
    Pending,
    /// Placed and being worked on (processing, paid, unfulfilled).
    Open,
    /// Waiting on something (WooCommerce on-hold).
    OnHold,
    /// Done: fulfilled or closed.
    Completed,
    Cancelled,
    Refunded,
    Failed,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub title: String,
    pub quantity: i64,
    pub unit_price: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_discount: Option<Money>,
}

/// What a store, an inventory system or an ERP says about one stock keeping
/// unit at a time: its unit cost from then on, and its stock. Order lines find
/// it by `sku`; an order's line costs are those in force at the order's time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryUpdated {
    /// The SKU, as order lines carry it.
    pub sku: String,
    /// The system's own id of the item (Shopify's inventory item id, a
    /// WooCommerce product or variation id), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// What one unit costs the merchant (landed cost), from `at` on; `None`:
    /// the event says nothing about the cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_cost: Option<Money>,
    /// Units available to sell, all locations together; `None`: not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    /// Whether the item keeps selling when out of stock; `None`: not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backorder: Option<bool>,
    /// When units out of stock are expected back, when the system says.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub eta: Option<OffsetDateTime>,
    /// From when this holds (the system's update time, or the effective date
    /// an ERP line gives).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A payout: money a payment provider sends from the merchant's balance to
/// the bank, as the provider reports it (Stripe `payout.*`, the payout line of
/// an Adyen settlement batch). The movements it pays out are [`PayoutLine`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutUpdated {
    /// `stripe`, `adyen`, `paypal`.
    pub provider: String,
    /// The provider's id of the payout (`po_…`; for Adyen
    /// `<merchant account>:<batch number>`).
    pub payout_id: String,
    /// What reaches the bank (positive; a negative payout takes money back).
    pub amount: Money,
    pub status: PayoutStatus,
    /// When the money is expected at (or reached) the bank.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub arrival: Option<OffsetDateTime>,
    /// Why a payout failed (the provider's code), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When the provider reported this state (the newest report wins).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Where a payout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
    Canceled,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::InTransit => "in_transit",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Canceled => "canceled",
        }
    }
}

/// One movement of money a payout settles: a charge coming in, a refund or a
/// dispute going out, a fee, an adjustment (a Stripe balance transaction, a
/// line of an Adyen settlement details report). Signed from the merchant's
/// side: money in is positive, money out negative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutLine {
    /// `stripe`, `adyen`, `paypal`.
    pub provider: String,
    /// The payout that pays this movement out.
    pub payout_id: String,
    /// The provider's id of the movement (`txn_…`; for Adyen the PSP
    /// reference, the record type and the modification reference), unique
    /// within the provider.
    pub line_id: String,
    pub kind: PayoutLineKind,
    /// The payment the movement belongs to, as payment events link it
    /// (`payment:stripe:ch_…`), and the order when the report names it. Empty
    /// for a movement of no order (a fee invoice, a balance adjustment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<OrderLink>,
    /// The movement before fees (signed).
    pub gross: Money,
    /// The fees taken on it, positive when charged (a fee given back is
    /// negative), in the currency of `net`.
    pub fee: Money,
    /// What the movement adds to the payout: `gross − fee` (signed).
    pub net: Money,
    /// When the movement happened (the provider's creation time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What kind of movement a [`PayoutLine`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutLineKind {
    /// A payment captured (Stripe `charge`/`payment`, Adyen `Settled`).
    Charge,
    /// A refund (Stripe `refund`, Adyen `Refunded`).
    Refund,
    /// A refund that failed and came back (Stripe `refund_failure`).
    RefundFailure,
    /// Money taken by a dispute (Stripe `dispute`, Adyen `Chargeback`).
    Dispute,
    /// Money given back when a dispute was won (Stripe `dispute_reversal`,
    /// Adyen `ChargebackReversed`).
    DisputeReversal,
    /// A fee on its own (Adyen `Fee`, Stripe `stripe_fee`).
    Fee,
    /// Anything else the provider moved (adjustments, reserves, transfers).
    Adjustment,
}

impl PayoutLineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutLineKind::Charge => "charge",
            PayoutLineKind::Refund => "refund",
            PayoutLineKind::RefundFailure => "refund_failure",
            PayoutLineKind::Dispute => "dispute",
            PayoutLineKind::DisputeReversal => "dispute_reversal",
            PayoutLineKind::Fee => "fee",
            PayoutLineKind::Adjustment => "adjustment",
        }
    }
}

impl LineItem {
    /// The SKU the line names, trimmed; `None` for none or a blank one. What
    /// the fold files the line's costs and stock under.
    pub fn sku_key(&self) -> Option<&str> {
        self.sku.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// A payment reference the store recorded for an order, through which payment
/// provider events find the order (a Stripe payment intent or charge id, an Adyen
/// PSP reference, a PayPal capture id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PaymentRef {
    /// `stripe`, `adyen`, `paypal` (or the store's gateway name when unknown).
    pub provider: String,
    pub reference: String,
}

/// Where an order came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referring_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    #[serde(default)]
    pub utm: Utm,
    /// Free-form key/values the checkout recorded (Shopify note_attributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub note_attributes: Vec<(String, String)>,
}

/// Campaign parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        *self == Utm::default()
    }

    /// Reads `utm_*` parameters from a URL or path with a query string.
    pub fn from_url(url: &str) -> Utm {
        let mut utm = Utm::default();
        let Some((_, query)) = url.split_once('?') else {
            return utm;
        };
        let query = query.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            if v.is_empty() {
                continue;
            }
            match k {
                "utm_source" => utm.source = Some(v),
                "utm_medium" => utm.medium = Some(v),
                "utm_campaign" => utm.campaign = Some(v),
                "utm_term" => utm.term = Some(v),
                "utm_content" => utm.content = Some(v),
                _ => {}
            }
        }
        utm
    }
}

/// `url` without the query parameters (and fragment) that carry an email
/// address, e.g. a newsletter link's `?email=ann%40example.com`: `None` when
/// it has none. The fold keeps landing pages and referrers this way, so an
/// email in a link is not kept even for a visitor it cannot tie to a customer.
pub fn without_emails(url: &str) -> Option<String> {
    // `%40` has no letters: no case to fold, no allocation for the usual link.
    if !url.contains('@') && !url.contains("%40") {
        return None;
    }
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let fragment = fragment.filter(|f| !percent_decode(f).contains('@'));
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let mut out = path.to_string();
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !percent_decode(p.split_once('=').map_or(*p, |(_, v)| v)).contains('@'))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    (out != url).then_some(out)
}

impl Event {
    /// The event with the emails removed from the links it carries (see
    /// [`without_emails`]); `None` when it has none.
    pub fn without_link_emails(&self) -> Option<Event> {
        let clean = |url: &Option<String>| url.as_deref().and_then(without_emails);
        match self {
            Event::Touch(t) => {
                let (landing, referrer) = (clean(&t.landing_page), clean(&t.referrer));
                if landing.is_none() && referrer.is_none() {
                    return None;
                }
                let mut t = t.clone();
                t.landing_page = landing.or(t.landing_page);
                t.referrer = referrer.or(t.referrer);
                Some(Event::Touch(t))
            }
            Event::OrderUpserted(o) => {
                let a = &o.attribution;
                let (landing, referring) = (clean(&a.landing_site), clean(&a.referring_site));
                if landing.is_none() && referring.is_none() {
                    return None;
                }
                let mut o = o.clone();
                o.attribution.landing_site = landing.or(o.attribution.landing_site);
                o.attribution.referring_site = referring.or(o.attribution.referring_site);
                Some(Event::OrderUpserted(o))
            }
            _ => None,
        }
    }
}

/// Minimal `application/x-www-form-urlencoded` value decoding (`+` and `%XX`).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Money figures of an order as the store reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTotals {
    /// Total charged to the customer, in the shop currency.
    pub total: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtotal: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discounts: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<Money>,
    /// The same total in the currency the customer saw, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentment_total: Option<Money>,
}

/// A store's order (Shopify orders/*, WooCommerce order.*), always a full snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpserted {
    pub order_id: OrderId,
    /// Human order number / name (`#1001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Who placed it.
    pub customer: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_name: Option<String>,
    pub status: OrderStatus,
    /// The store's own financial status (`paid`, `partially_refunded`, ...). Kept,
    /// but the payment provider's events are the source of truth for money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub financial_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_status: Option<String>,
    pub totals: OrderTotals,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discount_codes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payment_refs: Vec<PaymentRef>,
    /// Tracking numbers the store already knows (fulfillments inside the order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracking_numbers: Vec<String>,
    #[serde(default)]
    pub attribution: Attribution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Test orders never count as revenue.
    #[serde(default)]
    pub test: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Version of the snapshot; stale snapshots never overwrite newer ones.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// What the store itself says about the order's money, when its payload lets
    /// that be worked out. The store's word counts only where no payment provider
    /// reports the same money (see the order ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_money: Option<StoreMoney>,
}

/// The store's own account of an order's money, in the currency the customer paid
/// in (the presentment currency), worked out by the store's mapper from one
/// snapshot so that the figures of one snapshot always agree with each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMoney {
    /// Money the store says it received for the order, refunds not deducted
    /// (Shopify: current total + refunded − outstanding; WooCommerce: the total
    /// of an order in a paid status).
    pub received: Money,
    /// Authorised by the customer but not captured yet (Shopify `authorized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized: Option<Money>,
    /// Still owed by the customer (positive) or to the customer (negative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outstanding: Option<Money>,
    /// `received` in the shop's own currency, when the store converted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shop_received: Option<Money>,
    /// How `received` was worked out, for the ledger's explanation
    /// (`current_total+refunds-outstanding`, `status:processing`, ...).
    pub basis: String,
}

/// How a provider event finds its order. The processor resolves the first link it
/// can; until one resolves the event is parked under its links.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum OrderLink {
    /// A namespaced order id (`shopify:450789469`), e.g. from Stripe metadata.
    Order { order_id: OrderId },
    /// A payment reference the store recorded on the order.
    Payment { provider: String, reference: String },
    /// A carrier tracking number the store recorded in a fulfillment.
    Tracking { number: String },
    /// A store's human order number (`#1001`) — helpdesks know only that.
    Number { number: String },
}

/// What a payment event says happened to the payment (or, with a
/// `capture_id`, to one capture of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The attempt (or, with a `capture_id`, that capture) failed: no money moved.
    Failed,
    /// Authorised, not captured: no money yet.
    Authorized,
    /// Captured: `amount` (or `captured`) was taken.
    Succeeded,
    /// The authorisation was voided or released: what was not captured never will be.
    Cancelled,
    /// The provider took captured money back outside a dispute flow (PayPal
    /// PAYMENT.CAPTURE.REVERSED): `amount` left the merchant.
    Reversed,
}

/// A payment (Stripe payment intent/charge, Adyen PSP reference, PayPal capture).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// `stripe`, `adyen`, `paypal`, or the store (`shopify`) for store-recorded transactions.
    pub provider: String,
    /// One id per payment: several events of the same payment (Stripe's
    /// payment_intent.succeeded and charge.succeeded) carry the same id.
    pub payment_id: String,
    /// Ways to find the order; tried in order.
    pub links: Vec<OrderLink>,
    pub status: PaymentStatus,
    pub amount: Money,
    /// Provider fee, when known (Stripe balance transaction). `None` means unknown, not zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Money>,
    /// Net after fee, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Money>,
    /// Cumulative amount refunded of the captured money, as of this event, when
    /// the provider reports it (Stripe `amount_refunded`, less the uncaptured
    /// remainder a partial capture released).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_refunded: Option<Money>,
    /// Cumulative amount captured of the whole payment as of this event, when the
    /// provider reports it (Stripe `amount_captured`, a payment intent's
    /// `amount_received`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Money>,
    /// The capture this event is about, when a payment is captured in parts that
    /// have ids of their own (Adyen CAPTURE / CAPTURE_FAILED, a Shopify capture
    /// transaction); `amount` is then that capture's amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_id: Option<String>,
    /// An authorisation the provider captures by itself (Adyen with automatic
    /// capture): it counts as captured unless captures of the payment are reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_capture: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Payer as the provider knows it (billing email), for customer linking.
    #[serde(default)]
    pub payer: Identity,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Refund status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
    Cancelled,
}

/// A refunded line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    pub line_item_id: String,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// Whether the goods go back to stock (Shopify restock_type, WooCommerce restock).
    #[serde(default)]
    pub restock: bool,
}

/// A refund, partial or full.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// `shopify` / `woocommerce` for a store refund, `stripe` / `adyen` / `paypal`
    /// for a payment provider refund (the source of truth for money).
    pub provider: String,
    pub refund_id: String,
    /// The payment it refunds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub links: Vec<OrderLink>,
    pub amount: Money,
    pub status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<RefundLine>,
    /// Order adjustments (shipping refunds, refund discrepancies) included in `amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<Money>,
    /// When the provider created the refund (Stripe's refund `created`), which
    /// can be long before this event (a refund that fails days later).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<OffsetDateTime>,
    /// A store's refund: the gateway that moved the money, as the store names it
    /// (`stripe`, `paypal`, `shopify_payments`, `manual`, `gift_card`, `cash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Dispute (chargeback) status, in lifecycle order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// Early warning / inquiry (Stripe warning_*, Adyen NOTIFICATION_OF_CHARGEBACK).
    Inquiry,
    NeedsResponse,
    UnderReview,
    /// Closed in the merchant's favour (funds reinstated).
    Won,
    /// Closed against the merchant.
    Lost,
    /// Inquiry closed without a chargeback.
    WarningClosed,
    /// Closed because the merchant refunded the payment (Stripe `charge_refunded`,
    /// PayPal `ACCEPTED`): the money went back as a refund, which the provider
    /// reports as one; the dispute itself is not a loss.
    MerchantRefunded,
}

impl DisputeStatus {
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            DisputeStatus::Won
                | DisputeStatus::Lost
                | DisputeStatus::WarningClosed
                | DisputeStatus::MerchantRefunded
        )
    }
}

/// One movement of money a dispute caused, with the provider's own id for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DisputeMovement {
    /// Stripe balance transaction id, Adyen notification id.
    pub id: String,
    /// Negative: taken from the merchant (withdrawn); positive: given back (reinstated).
    pub amount: Money,
    /// The provider's dispute fee for this movement, in its settlement currency
    /// (negative when the fee is given back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Money>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A dispute / chargeback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub provider: String,
    pub dispute_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub links: Vec<OrderLink>,
    pub amount: Money,
    pub status: DisputeStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Funds taken from the merchant so far (Stripe funds_withdrawn).
    #[serde(default)]
    pub funds_withdrawn: bool,
    /// Funds given back (Stripe funds_reinstated, Adyen CHARGEBACK_REVERSED).
    #[serde(default)]
    pub funds_reinstated: bool,
    /// The money movements the dispute caused so far, when the provider itemises
    /// them (Stripe's balance transactions; one per Adyen chargeback notification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub movements: Vec<DisputeMovement>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The one status set every carrier's tracking is normalised to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    LabelCreated,
    InTransit,
    OutForDelivery,
    Delivered,
    Exception,
    Returned,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::LabelCreated => "label_created",
            ShipmentStatus::InTransit => "in_transit",
            ShipmentStatus::OutForDelivery => "out_for_delivery",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Exception => "exception",
            ShipmentStatus::Returned => "returned",
        }
    }
}

/// One step of a tracking timeline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub status: ShipmentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A shipment's tracking state (store fulfillment or carrier tracker).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub provider: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// Ways to find the order (the store's fulfillment knows it; a carrier knows
    /// only the tracking number).
    pub links: Vec<OrderLink>,
    /// Store fulfillment id, when this came from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_id: Option<String>,
    /// Status at `at`; also present as the last entry of `checkpoints` when the
    /// provider gives a timeline.
    pub status: ShipmentStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Checkpoint>,
    /// Line items in this shipment (split shipments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_item_ids: Vec<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub estimated_delivery: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why something was returned or a ticket opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    Size,
    Defect,
    Late,
    /// The customer asked to cancel.
    Cancel,
    Other,
}

/// How a return was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnResolution {
    Refund,
    Replace,
    StoreCredit,
}

/// A customer return (requested or resolved).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Return {
    pub provider: String,
    pub return_id: String,
    pub links: Vec<OrderLink>,
    pub reason: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ReturnResolution>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_item_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Helpdesk ticket status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    New,
    Open,
    Pending,
    OnHold,
    Solved,
    Closed,
}

impl TicketStatus {
    pub fn is_open(self) -> bool {
        !matches!(self, TicketStatus::Solved | TicketStatus::Closed)
    }
}

/// Customer satisfaction rating, on a 1..=5 scale (good/bad maps to 5/1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Csat {
    pub score: u8,
}

/// A helpdesk ticket snapshot (Zendesk, Gorgias).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub provider: String,
    pub ticket_id: String,
    pub requester: Identity,
    /// The order it is about, when the ticket names one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_links: Vec<OrderLink>,
    pub status: TicketStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub first_response_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub solved_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csat: Option<Csat>,
}

/// A marketing touch: a visit with campaign parameters (also Shopify checkouts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    /// Stable id of this touch (given by the collector or derived from content).
    pub touch_id: String,
    /// Who: an anonymous id and/or an email (an identify along with the touch).
    pub identity: Identity,
    #[serde(default)]
    pub utm: Utm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// The cart/checkout token, which later orders carry too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart_token: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Links an anonymous visitor to a known identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identify {
    pub identity: Identity,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_in_links_are_dropped_and_the_rest_of_the_link_kept() {
        assert_eq!(
            without_emails("https://shop.example/welcome?email=ann%40example.com&utm_source=mail"),
            Some("https://shop.example/welcome?utm_source=mail".into())
        );
        assert_eq!(
            without_emails("/p?utm_source=x&e=ann@example.com#ref=bob%40example.com"),
            Some("/p?utm_source=x".into())
        );
        assert_eq!(
            without_emails("/p?who=ann%40x.com"),
            Some("/p".into()),
            "no empty query left"
        );
        assert_eq!(without_emails("/collections/sale?utm_source=news"), None);
        assert_eq!(without_emails("https://mail.example/"), None);
    }

    #[test]
    fn utm_from_landing_site() {
        let u = Utm::from_url(
            "/products/x?utm_source=google&utm_medium=cpc&utm_campaign=spring+sale&x=1",
        );
        assert_eq!(u.source.as_deref(), Some("google"));
        assert_eq!(u.medium.as_deref(), Some("cpc"));
        assert_eq!(u.campaign.as_deref(), Some("spring sale"));
        assert!(Utm::from_url("/no-query").is_empty());
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
    }

    #[test]
    fn envelope_round_trips_with_version() {
        let env = Envelope {
            tenant: "t".into(),
            provider: "collect".into(),
            event_id: "e1".into(),
            occurred_at: time::macros::datetime!(2024-01-01 0:00 UTC),
            event: Event::Identify(Identify {
                identity: Identity::default().with_email(Some("a@b.co")),
                at: time::macros::datetime!(2024-01-01 0:00 UTC),
            }),
        };
        let json = to_versioned_json(&env);
        assert_eq!(json["v"], 1);
        assert_eq!(json["type"], "Identify");
        assert_eq!(upcast(json.clone()).unwrap(), env);
        let mut future = json;
        future["v"] = 99.into();
        assert!(
            upcast(future)
                .unwrap_err()
                .to_string()
                .contains("version 99")
        );
    }
}
