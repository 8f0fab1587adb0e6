//! An independent model of the books (`docs/books.md`), over an abstract
//! description of what happened to a tenant's orders ([`World`]).
//!
//! The model knows nothing of payloads, mappers or the engine: a payment is an
//! authorised amount, captures that succeed (and maybe fail later), a void, a
//! fee; a refund is an amount and the statuses it went through; a dispute is a
//! course of statuses and money movements. [`expect`] applies the rules of
//! `docs/books.md` to that description:
//!
//! * a payment's authorised amount `A`, captured `C` (succeeded captures not
//!   failed later; an immediate charge or an automatic capture captures `A`),
//!   the hold `A − C` while nothing ended it;
//! * refunds count when their highest-ranked status is succeeded or pending;
//! * a dispute's newest status decides: lost counts in `chargeback_lost`, an
//!   open one in `disputed`; per payment the loss is the larger of its lost
//!   disputes and its reversals;
//! * `paid` is the providers' captured money when any provider reports a
//!   payment, else the store's own account (Shopify: current total + refunds −
//!   outstanding, in the presentment currency; WooCommerce: the total of an
//!   order in a paid status);
//! * store refunds: all count without a provider; with one, a refund through
//!   one of the order's payment providers is not counted, one through another
//!   gateway is, one naming no gateway counts for what exceeds the providers'
//!   refunds in its currency;
//! * fees are the known processing fees of payments with captured money and the
//!   dispute movements' fees; they are known when a provider reports the
//!   order's payments, one captured money and every one that did has a known
//!   fee; `net_after_fees` only then and when every fee is in a currency of the
//!   order's money;
//! * a customer's revenue sums its non-test orders per currency.

use std::collections::{BTreeMap, BTreeSet};

/// Amounts per currency code, zeros left out.
pub type Bag = BTreeMap<String, i64>;

fn add(bag: &mut Bag, currency: &str, minor: i64) {
    let slot = bag.entry(currency.to_string()).or_insert(0);
    *slot += minor;
    if *slot == 0 {
        bag.remove(currency);
    }
}

fn minus(a: &Bag, b: &Bag) -> Bag {
    let mut out = a.clone();
    for (c, m) in b {
        add(&mut out, c, -m);
    }
    out
}

/// A store the tenant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Store {
    Shopify,
    WooCommerce,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Shopify => "shopify",
            Store::WooCommerce => "woocommerce",
        }
    }
}

/// A payment provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    Stripe,
    Adyen,
    Paypal,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Adyen => "adyen",
            Provider::Paypal => "paypal",
        }
    }
}

/// A tenant and what happened to its orders.
#[derive(Clone, Debug)]
pub struct World {
    pub tenant: String,
    /// First = the default store of bare order ids.
    pub stores: Vec<Store>,
    /// Adyen captures by itself (automatic) or on the merchant's request.
    pub adyen_manual: bool,
    pub customers: Vec<Customer>,
    pub orders: Vec<Order>,
}

/// A shopper.
#[derive(Clone, Debug)]
pub struct Customer {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Shopify customer id, WooCommerce customer id (0: guest).
    pub shopify_id: u64,
    pub woo_id: u64,
    /// The browser's anonymous id, when the shopper visited the shop's site.
    pub anonymous_id: Option<String>,
    pub touches: Vec<Touch>,
    /// Whether the shopper later identifies on the site (links the anonymous id).
    pub identifies: bool,
    /// Whether Shopify later asks to erase the shopper (customers/redact).
    pub redacted: bool,
}

/// A visit with campaign parameters.
#[derive(Clone, Debug)]
pub struct Touch {
    pub touch_id: String,
    pub at: i64,
    pub source: String,
    pub campaign: String,
    /// The beacon carries the email too.
    pub with_email: bool,
    /// The browser sends the same touch twice (same touch id, same body).
    pub sent_twice: bool,
}

/// An order and everything that happened to its money.
#[derive(Clone, Debug)]
pub struct Order {
    pub store: Store,
    /// The store's order id (`5801001001`, `4127`).
    pub id: u64,
    /// The human number (`1001`).
    pub number: u64,
    /// Index into [`World::customers`].
    pub customer: usize,
    /// Unix seconds.
    pub created: i64,
    /// The shop's currency.
    pub shop_currency: &'static str,
    /// The currency the customer pays in (the presentment currency).
    pub currency: &'static str,
    /// What the order was placed for, in `currency` minor units.
    pub total: i64,
    /// A Shopify order edit after payment (store-only orders).
    pub edit: Option<Edit>,
    pub store_refunds: Vec<StoreRefund>,
    pub payments: Vec<Payment>,
    pub test: bool,
    /// Shopify: cancelled at the end (with its refunds).
    pub cancelled: bool,
    /// Shopify store-only: placed authorised, captured later (orders/paid).
    pub authorised_first: bool,
    /// The shop sends an identical snapshot twice under two event ids.
    pub duplicate_snapshot: bool,
}

/// An order edit: `delta` added to the order (minor units, ≥ 0), collected or
/// still outstanding at the end.
#[derive(Clone, Copy, Debug)]
pub struct Edit {
    pub delta: i64,
    pub collected: bool,
    pub at: i64,
}

/// A refund the store records.
#[derive(Clone, Debug)]
pub struct StoreRefund {
    pub id: u64,
    /// In the order's (presentment) currency.
    pub amount: i64,
    /// The gateway the store names (`None`: WooCommerce's refunds list names none).
    pub gateway: Option<String>,
    pub at: i64,
}

/// One payment (authorisation or charge) at a provider.
#[derive(Clone, Debug)]
pub struct Payment {
    pub provider: Provider,
    /// Stripe payment intent, Adyen PSP reference, PayPal authorisation or capture id.
    pub id: String,
    pub currency: &'static str,
    /// Authorised (or charged).
    pub amount: i64,
    pub flow: Flow,
    /// A declined attempt before (Stripe: the same payment intent; Adyen: another
    /// PSP reference).
    pub declined_first: bool,
    /// The processing fee, when the provider reports it (amount, settlement currency).
    pub fee: Option<(i64, &'static str)>,
    pub refunds: Vec<Refund>,
    pub disputes: Vec<Dispute>,
    /// Captured money the provider took back outside a dispute (PayPal).
    pub reversal: Option<i64>,
    /// The payment's own events name the order (metadata, references); else
    /// only the store's payment reference leads to it.
    pub names_order: bool,
    /// Stripe: refunds are reported only through the charge's refunded total
    /// (the endpoint is not subscribed to refund events).
    pub refunds_as_total_only: bool,
    pub at: i64,
}

/// How the money of a payment moved.
#[derive(Clone, Debug)]
pub enum Flow {
    /// Charged at once (Stripe automatic capture, PayPal capture intent, Adyen
    /// automatic capture).
    Immediate {
        /// Adyen with capture notifications enabled: one CAPTURE itemises it.
        itemised: bool,
    },
    /// Authorised, then captured by the merchant.
    Captures {
        captures: Vec<Capture>,
        end: AuthEnd,
    },
    /// Authorised, never captured.
    AuthOnly { end: AuthEnd },
}

/// One capture of an authorisation.
#[derive(Clone, Debug)]
pub struct Capture {
    pub id: String,
    pub amount: i64,
    /// Reported succeeded, then failed (Adyen CAPTURE_FAILED).
    pub fails_later: bool,
    pub at: i64,
}

/// What became of the uncaptured rest of an authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthEnd {
    /// Still authorised.
    Open,
    /// Voided / cancelled by the merchant.
    Voided,
}

/// A provider refund.
#[derive(Clone, Debug)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub outcome: RefundOutcome,
    pub at: i64,
    /// When a later status arrives.
    pub settled_at: i64,
}

/// The statuses a refund goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded,
    /// Pending, never settled (yet): counts.
    Pending,
    PendingThenSucceeded,
    /// Reported succeeded, then failed (Stripe refund.failed, Adyen REFUND_FAILED).
    FailedAfterSucceeded,
    /// Refused at once (Adyen REFUND with success false).
    Failed,
}

impl RefundOutcome {
    pub fn counts(self) -> bool {
        matches!(
            self,
            RefundOutcome::Succeeded | RefundOutcome::Pending | RefundOutcome::PendingThenSucceeded
        )
    }
}

/// Dispute statuses, as `docs/books.md` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisputeStatus {
    Inquiry,
    NeedsResponse,
    UnderReview,
    Won,
    Lost,
    WarningClosed,
    MerchantRefunded,
}

impl DisputeStatus {
    pub fn closed(self) -> bool {
        matches!(
            self,
            DisputeStatus::Won
                | DisputeStatus::Lost
                | DisputeStatus::WarningClosed
                | DisputeStatus::MerchantRefunded
        )
    }
}

/// A dispute and its course.
#[derive(Clone, Debug)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub course: Vec<DisputeStep>,
}

/// One event of a dispute.
#[derive(Clone, Debug)]
pub struct DisputeStep {
    pub at: i64,
    pub status: DisputeStatus,
    /// A money movement this event reports (withdrawal negative,
    /// reinstatement positive), with its id and dispute fee (settlement currency).
    pub movement: Option<Movement>,
}

#[derive(Clone, Debug)]
pub struct Movement {
    pub id: String,
    pub amount: i64,
    pub fee: Option<(i64, &'static str)>,
}

/// What the books must say about one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    pub paid: Bag,
    pub paid_source: &'static str,
    pub authorized: Bag,
    pub refunded: Bag,
    pub chargeback_lost: Bag,
    pub disputed: Bag,
    pub net: Bag,
    pub fees: Bag,
    /// `None`: not checked.
    pub fees_known: Option<bool>,
    /// `None`: not checked; `Some(None)`: unknown.
    pub net_after_fees: Option<Option<Bag>>,
}

/// A customer's revenue in one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revenue {
    pub gross: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    pub orders: u64,
    pub aov: i64,
}

/// What the model expects of a world.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// By namespaced order id; test orders are left out (they count nothing).
    pub orders: BTreeMap<String, Figures>,
    /// Every test order's id.
    pub test_orders: BTreeSet<String>,
    /// Per customer (by index): its orders and revenue by currency code.
    pub customers: Vec<(BTreeSet<String>, BTreeMap<String, Revenue>)>,
}

impl Order {
    /// `shopify:5801001001`.
    pub fn order_id(&self) -> String {
        format!("{}:{}", self.store.name(), self.id)
    }

    /// Shopify's current total at the end: placed total, plus an edit, less the
    /// refunds (in the presentment currency).
    pub fn current_total(&self) -> i64 {
        self.total + self.edit.map_or(0, |e| e.delta)
            - self.store_refunds.iter().map(|r| r.amount).sum::<i64>()
    }

    /// Shopify's outstanding amount at the end.
    pub fn outstanding(&self) -> i64 {
        match self.edit {
            Some(e) if !e.collected => e.delta,
            _ => 0,
        }
    }

    /// WooCommerce's status at the end.
    pub fn woo_status(&self) -> &'static str {
        let refunded: i64 = self.store_refunds.iter().map(|r| r.amount).sum();
        if refunded >= self.total && self.total > 0 {
            "refunded"
        } else {
            "processing"
        }
    }
}

/// What one payment contributes.
#[derive(Default)]
struct PaymentBooks {
    captured: i64,
    held: i64,
    refunded: i64,
    lost: i64,
    disputed: i64,
    fee_known: bool,
}

fn payment_books(p: &Payment, fees: &mut Bag) -> PaymentBooks {
    let a = p.amount;
    let (captured, held) = match &p.flow {
        Flow::Immediate { .. } => (a, 0),
        Flow::Captures { captures, end } => {
            let c: i64 = captures
                .iter()
                .filter(|c| !c.fails_later)
                .map(|c| c.amount)
                .sum();
            // Stripe captures once: the capture ends the payment and releases
            // the rest. Itemised captures (Adyen, PayPal) leave it held until a void.
            let ended = p.provider == Provider::Stripe || *end == AuthEnd::Voided;
            (c, if ended { 0 } else { a - c })
        }
        Flow::AuthOnly { end } => (0, if *end == AuthEnd::Voided { 0 } else { a }),
    };
    let refunded: i64 = p
        .refunds
        .iter()
        .filter(|r| r.outcome.counts())
        .map(|r| r.amount)
        .sum();
    let mut lost = 0;
    let mut disputed = 0;
    for d in &p.disputes {
        let newest = d.course.iter().max_by_key(|s| s.at).map(|s| s.status);
        match newest {
            Some(DisputeStatus::Lost) => lost += d.amount,
            Some(s) if !s.closed() => disputed += d.amount,
            _ => {}
        }
        // Movements are united by their id.
        let mut seen = BTreeSet::new();
        for step in &d.course {
            if let Some(m) = &step.movement
                && seen.insert(m.id.clone())
                && let Some((fee, cur)) = m.fee
            {
                add(fees, cur, fee);
            }
        }
    }
    let lost = lost.max(p.reversal.unwrap_or(0));
    if captured > 0
        && let Some((fee, cur)) = p.fee
    {
        add(fees, cur, fee);
    }
    PaymentBooks {
        captured,
        held,
        refunded,
        lost,
        disputed,
        fee_known: p.fee.is_some(),
    }
}

/// The store's own account of the money it received, in the order's currency.
fn store_received(o: &Order) -> i64 {
    match o.store {
        Store::Shopify => {
            let refunds: i64 = o.store_refunds.iter().map(|r| r.amount).sum();
            o.current_total() + refunds - o.outstanding()
        }
        // processing, completed and refunded orders were paid.
        Store::WooCommerce => o.total,
    }
}

/// The figures of one order.
pub fn figures(o: &Order) -> Figures {
    let cur = o.currency;
    let mut paid = Bag::new();
    let mut authorized = Bag::new();
    let mut refunded = Bag::new();
    let mut lost = Bag::new();
    let mut disputed = Bag::new();
    let mut fees = Bag::new();
    let mut provider_refunded = Bag::new();
    let mut fees_known = true;
    let mut captured_any = false;
    let providers: BTreeSet<&str> = o.payments.iter().map(|p| p.provider.name()).collect();
    for p in &o.payments {
        let b = payment_books(p, &mut fees);
        add(&mut paid, p.currency, b.captured);
        add(&mut authorized, p.currency, b.held);
        add(&mut refunded, p.currency, b.refunded);
        add(&mut provider_refunded, p.currency, b.refunded);
        add(&mut lost, p.currency, b.lost);
        add(&mut disputed, p.currency, b.disputed);
        if b.captured > 0 {
            captured_any = true;
            fees_known &= b.fee_known;
        }
    }
    let paid_source = if !o.payments.is_empty() {
        "provider"
    } else {
        add(&mut paid, cur, store_received(o));
        if paid.is_empty() { "none" } else { "store" }
    };
    // Store refunds.
    let mut unnamed = Bag::new();
    for r in &o.store_refunds {
        match &r.gateway {
            _ if o.payments.is_empty() => add(&mut refunded, cur, r.amount),
            Some(g) if providers.contains(g.as_str()) => {}
            Some(_) => add(&mut refunded, cur, r.amount),
            None => add(&mut unnamed, cur, r.amount),
        }
    }
    for (c, m) in &unnamed {
        let beyond = m - provider_refunded.get(c).copied().unwrap_or(0);
        if beyond > 0 {
            add(&mut refunded, c, beyond);
        }
    }
    let net = minus(&minus(&paid, &refunded), &lost);
    // Known only when a provider reports the order's payments, one of them
    // captured money and every one that did has a known fee: store-reported
    // money has no fees storefold can know.
    let fees_known = fees_known && captured_any;
    let naf = if fees_known {
        let money_currencies: BTreeSet<&String> = paid
            .keys()
            .chain(refunded.keys())
            .chain(lost.keys())
            .collect();
        fees.keys()
            .all(|c| money_currencies.contains(c))
            .then(|| minus(&net, &fees))
    } else {
        None
    };
    let (fees_known, net_after_fees) = (Some(fees_known), Some(naf));
    Figures {
        paid,
        paid_source,
        authorized,
        refunded,
        chargeback_lost: lost,
        disputed,
        net,
        fees,
        fees_known,
        net_after_fees,
    }
}

/// What the books of `w` must say.
pub fn expect(w: &World) -> Expected {
    let mut out = Expected::default();
    let mut per_customer: Vec<(BTreeSet<String>, BTreeMap<String, Revenue>)> =
        vec![(BTreeSet::new(), BTreeMap::new()); w.customers.len()];
    for o in &w.orders {
        let id = o.order_id();
        if o.test {
            out.test_orders.insert(id);
            continue;
        }
        let f = figures(o);
        let (orders, revenue) = &mut per_customer[o.customer];
        orders.insert(id.clone());
        let currencies: BTreeSet<&String> = f
            .paid
            .keys()
            .chain(f.refunded.keys())
            .chain(f.chargeback_lost.keys())
            .collect();
        for c in currencies {
            let r = revenue.entry(c.clone()).or_default();
            let paid = f.paid.get(c).copied().unwrap_or(0);
            r.gross += paid;
            r.refunded += f.refunded.get(c).copied().unwrap_or(0);
            r.chargeback_lost += f.chargeback_lost.get(c).copied().unwrap_or(0);
            r.net += f.net.get(c).copied().unwrap_or(0);
            if paid > 0 {
                r.orders += 1;
            }
        }
        out.orders.insert(id, f);
    }
    for (_, revenue) in &mut per_customer {
        for r in revenue.values_mut() {
            r.aov = if r.orders > 0 {
                r.gross / r.orders as i64
            } else {
                0
            };
        }
    }
    out.customers = per_customer;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(payments: Vec<Payment>, store_refunds: Vec<StoreRefund>) -> Order {
        Order {
            store: Store::WooCommerce,
            id: 1,
            number: 1,
            customer: 0,
            created: 0,
            shop_currency: "USD",
            currency: "USD",
            total: 10_000,
            edit: None,
            store_refunds,
            payments,
            test: false,
            cancelled: false,
            authorised_first: false,
            duplicate_snapshot: false,
        }
    }

    fn payment(flow: Flow) -> Payment {
        Payment {
            provider: Provider::Adyen,
            id: "P".into(),
            currency: "USD",
            amount: 10_000,
            flow,
            declined_first: false,
            fee: None,
            refunds: vec![],
            disputes: vec![],
            reversal: None,
            names_order: true,
            refunds_as_total_only: false,
            at: 0,
        }
    }

    fn bag(items: &[(&str, i64)]) -> Bag {
        items.iter().map(|(c, m)| (c.to_string(), *m)).collect()
    }

    #[test]
    fn a_capture_that_fails_after_it_succeeded_brings_nothing_and_the_rest_stays_held() {
        let p = payment(Flow::Captures {
            captures: vec![
                Capture {
                    id: "C1".into(),
                    amount: 6_000,
                    fails_later: false,
                    at: 1,
                },
                Capture {
                    id: "C2".into(),
                    amount: 4_000,
                    fails_later: true,
                    at: 2,
                },
            ],
            end: AuthEnd::Open,
        });
        let f = figures(&order(vec![p], vec![]));
        assert_eq!(f.paid, bag(&[("USD", 6_000)]));
        assert_eq!(f.authorized, bag(&[("USD", 4_000)]));
        assert_eq!(f.fees_known, Some(false));
        assert_eq!(f.net_after_fees, Some(None));
    }

    #[test]
    fn a_lost_dispute_and_a_reversal_of_the_same_payment_count_once() {
        let mut p = payment(Flow::Immediate { itemised: false });
        p.provider = Provider::Paypal;
        p.fee = Some((300, "USD"));
        p.reversal = Some(10_000);
        p.disputes.push(Dispute {
            id: "D".into(),
            amount: 10_000,
            course: vec![DisputeStep {
                at: 5,
                status: DisputeStatus::Lost,
                movement: None,
            }],
        });
        let f = figures(&order(vec![p], vec![]));
        assert_eq!(f.chargeback_lost, bag(&[("USD", 10_000)]));
        assert_eq!(f.net, bag(&[]));
        assert_eq!(f.net_after_fees, Some(Some(bag(&[("USD", -300)]))));
    }

    #[test]
    fn store_refunds_without_a_gateway_count_beyond_the_providers() {
        let mut p = payment(Flow::Immediate { itemised: false });
        p.refunds.push(Refund {
            id: "R".into(),
            amount: 3_000,
            outcome: RefundOutcome::Succeeded,
            at: 1,
            settled_at: 1,
        });
        let store = vec![
            StoreRefund {
                id: 1,
                amount: 3_000,
                gateway: None,
                at: 1,
            },
            StoreRefund {
                id: 2,
                amount: 1_000,
                gateway: None,
                at: 2,
            },
            StoreRefund {
                id: 3,
                amount: 500,
                gateway: Some("adyen".into()),
                at: 3,
            },
            StoreRefund {
                id: 4,
                amount: 700,
                gateway: Some("gift_card".into()),
                at: 4,
            },
        ];
        let f = figures(&order(vec![p], store));
        // 3000 (provider) + 1000 (beyond) + 700 (another gateway).
        assert_eq!(f.refunded, bag(&[("USD", 4_700)]));
    }

    #[test]
    fn the_newest_dispute_status_wins() {
        let mut p = payment(Flow::Immediate { itemised: false });
        let step = |at, status| DisputeStep {
            at,
            status,
            movement: None,
        };
        p.disputes.push(Dispute {
            id: "D".into(),
            amount: 10_000,
            course: vec![
                step(1, DisputeStatus::NeedsResponse),
                step(3, DisputeStatus::Won),
                step(2, DisputeStatus::Lost),
            ],
        });
        let f = figures(&order(vec![p], vec![]));
        assert!(f.chargeback_lost.is_empty() && f.disputed.is_empty());
    }
}
