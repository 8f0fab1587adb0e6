//! Stripe events to canonical events.
//!
//! One payment has one id: the payment intent id when the charge belongs to one,
//! else the charge id, so `payment_intent.succeeded` and `charge.succeeded` of one
//! payment fold into the same payment. Fees and net come only from an expanded
//! balance transaction; without one they are unknown (`None`), never zero.
//!
//! Money is reported as Stripe defines it: `amount` is what was authorised and a
//! captured charge brought `captured` = `amount_captured` (less than `amount`
//! after a partial capture, whose uncaptured rest Stripe releases as a refund),
//! so its `amount_refunded` is reported without that release; an uncaptured
//! charge is only authorised, and releasing it (`charge.refunded`,
//! `charge.expired`) cancels it.

use serde::de::DeserializeOwned;
use serde_json::Value;
use storefold_core::event::{
    Dispute as CanonDispute, DisputeMovement, DisputeStatus, OrderLink, Payment, PaymentStatus,
    PayoutStatus, PayoutUpdated, Refund as CanonRefund, RefundStatus,
};
use storefold_core::{Envelope, Event as CanonEvent, Identity, Money};
use time::OffsetDateTime;

use super::PROVIDER;
use super::model::{
    BalanceTransaction, Charge, CustomerRef, Dispute, Event, Expandable, PaymentIntent, Payout,
    Refund,
};
use crate::{
    MapContext, MapError, MapOptions, from_unix, money_minor, non_empty, payment_order_id,
    payment_order_links,
};

/// Maps one verified Stripe event. Event types storefold does not read (plans,
/// customers, invoices, …) map to no events: an endpoint may be subscribed to more
/// than storefold needs, and those are not errors.
pub(crate) fn map_event(ctx: &MapContext<'_>, event: &Event) -> Result<Vec<Envelope>, MapError> {
    if event.id.trim().is_empty() {
        return Err(MapError::MissingField("id".into()));
    }
    let at = from_unix("created", event.created)?;
    let out = Out {
        ctx,
        event_id: &event.id,
        at,
    };
    let object = &event.data.object;
    match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let pi: PaymentIntent = object_as(object)?;
            let p = payment_from_intent(ctx.options, &pi, PaymentStatus::Succeeded, at)?;
            Ok(vec![out.one(CanonEvent::PaymentSucceeded(p))])
        }
        "payment_intent.payment_failed" => {
            let pi: PaymentIntent = object_as(object)?;
            let p = payment_from_intent(ctx.options, &pi, PaymentStatus::Failed, at)?;
            Ok(vec![out.one(CanonEvent::PaymentFailed(p))])
        }
        "payment_intent.canceled" => {
            let pi: PaymentIntent = object_as(object)?;
            let p = payment_from_intent(ctx.options, &pi, PaymentStatus::Cancelled, at)?;
            Ok(vec![out.one(CanonEvent::PaymentFailed(p))])
        }
        // Manual capture: what the customer authorised and can still be captured.
        "payment_intent.amount_capturable_updated" => {
            let pi: PaymentIntent = object_as(object)?;
            let p = payment_from_intent(ctx.options, &pi, PaymentStatus::Authorized, at)?;
            Ok(vec![out.one(CanonEvent::PaymentSucceeded(p))])
        }
        "charge.succeeded" | "charge.captured" => {
            let charge: Charge = object_as(object)?;
            succeeded_charge(&out, &charge)
        }
        "charge.updated" => {
            // An update of a paid charge restates the payment (its balance transaction
            // often arrives this way); a failed one restates the failure; a pending
            // one says nothing yet.
            let charge: Charge = object_as(object)?;
            match charge.status.as_deref() {
                Some("succeeded") if charge.paid != Some(false) => succeeded_charge(&out, &charge),
                Some("failed") => {
                    let p = payment_from_charge(ctx.options, &charge, PaymentStatus::Failed, at)?;
                    Ok(vec![out.one(CanonEvent::PaymentFailed(p))])
                }
                _ => Ok(vec![]),
            }
        }
        "charge.failed" => {
            let charge: Charge = object_as(object)?;
            let p = payment_from_charge(ctx.options, &charge, PaymentStatus::Failed, at)?;
            Ok(vec![out.one(CanonEvent::PaymentFailed(p))])
        }
        "charge.refunded" => {
            let charge: Charge = object_as(object)?;
            charge_refunded(&out, &charge)
        }
        // An uncaptured charge that was not captured in time: the hold is gone.
        "charge.expired" => {
            let charge: Charge = object_as(object)?;
            let p = payment_from_charge(ctx.options, &charge, PaymentStatus::Cancelled, at)?;
            Ok(vec![out.one(CanonEvent::PaymentFailed(p))])
        }
        "charge.refund.updated" | "refund.created" | "refund.updated" | "refund.failed" => {
            let refund: Refund = object_as(object)?;
            let fallback = if event.kind == "refund.failed" {
                RefundStatus::Failed
            } else {
                RefundStatus::Pending
            };
            let r = standalone_refund(ctx.options, &refund, fallback, at)?;
            Ok(vec![out.one(CanonEvent::RefundIssued(r))])
        }
        "charge.dispute.created"
        | "charge.dispute.updated"
        | "charge.dispute.closed"
        | "charge.dispute.funds_withdrawn"
        | "charge.dispute.funds_reinstated" => {
            let dispute: Dispute = object_as(object)?;
            Ok(vec![out.one(dispute_event(
                ctx.options,
                &event.kind,
                &dispute,
                at,
            )?)])
        }
        // Every payout event restates the payout as it stands; the newest wins.
        "payout.created"
        | "payout.updated"
        | "payout.paid"
        | "payout.failed"
        | "payout.canceled"
        | "payout.reconciliation_completed" => {
            let payout: Payout = object_as(object)?;
            Ok(vec![out.one(CanonEvent::PayoutUpdated(payout_event(
                &payout, at,
            )?))])
        }
        _ => Ok(vec![]),
    }
}

/// A payout as it stands at `at` (the event's creation).
fn payout_event(payout: &Payout, at: OffsetDateTime) -> Result<PayoutUpdated, MapError> {
    if payout.id.trim().is_empty() {
        return Err(MapError::MissingField("data.object.id".into()));
    }
    let status = match payout.status.as_str() {
        "pending" => PayoutStatus::Pending,
        "in_transit" => PayoutStatus::InTransit,
        "paid" => PayoutStatus::Paid,
        "failed" => PayoutStatus::Failed,
        "canceled" => PayoutStatus::Canceled,
        other => {
            return Err(MapError::InvalidField {
                field: "data.object.status".into(),
                reason: format!("unknown payout status {other:?}"),
            });
        }
    };
    Ok(PayoutUpdated {
        provider: PROVIDER.to_string(),
        payout_id: payout.id.clone(),
        amount: money_minor("data.object.amount", payout.amount, &payout.currency)?,
        status,
        arrival: created_at("data.object.arrival_date", payout.arrival_date)?,
        failure: non_empty(payout.failure_code.as_deref()),
        at,
    })
}

/// Builds envelopes of one webhook.
struct Out<'a> {
    ctx: &'a MapContext<'a>,
    event_id: &'a str,
    at: OffsetDateTime,
}

impl Out<'_> {
    /// The only event of a webhook: its id is Stripe's event id.
    fn one(&self, event: CanonEvent) -> Envelope {
        self.envelope(self.event_id.to_string(), event)
    }

    /// One of several events of a webhook: Stripe's event id plus a stable suffix.
    fn part(&self, suffix: &str, event: CanonEvent) -> Envelope {
        self.envelope(format!("{}#{suffix}", self.event_id), event)
    }

    fn envelope(&self, event_id: String, event: CanonEvent) -> Envelope {
        Envelope {
            tenant: self.ctx.tenant.to_string(),
            provider: PROVIDER.to_string(),
            event_id,
            occurred_at: self.at,
            event,
        }
    }
}

fn object_as<T: DeserializeOwned>(object: &Value) -> Result<T, MapError> {
    crate::from_json_value("data.object", object)
}

/// `charge.succeeded`, `charge.captured`, a paid `charge.updated`: an uncaptured
/// charge (manual capture) is only authorised; a captured one brought its
/// captured amount. The refunds the charge lists (after a partial capture, the
/// release of the uncaptured rest) follow, each with its own id.
fn succeeded_charge(out: &Out<'_>, charge: &Charge) -> Result<Vec<Envelope>, MapError> {
    let opts = out.ctx.options;
    if charge.captured == Some(false) {
        let p = payment_from_charge(opts, charge, PaymentStatus::Authorized, out.at)?;
        return Ok(vec![out.one(CanonEvent::PaymentSucceeded(p))]);
    }
    let p = payment_from_charge(opts, charge, PaymentStatus::Succeeded, out.at)?;
    let refunds = refunds_of_charge(out, charge, &p)?;
    let mut events = vec![out.one(CanonEvent::PaymentSucceeded(p))];
    events.extend(refunds);
    Ok(events)
}

/// `charge.refunded`: the payment (with its cumulative refunded amount), then one
/// refund per refund the charge carries (only when the list is included).
fn charge_refunded(out: &Out<'_>, charge: &Charge) -> Result<Vec<Envelope>, MapError> {
    let opts = out.ctx.options;
    if charge.captured == Some(false) {
        // Releasing an uncaptured charge is reported as a full refund, but no
        // money ever moved: the payment is cancelled and there is nothing to refund.
        let payment = payment_from_charge(opts, charge, PaymentStatus::Cancelled, out.at)?;
        return Ok(vec![
            out.part("payment", CanonEvent::PaymentFailed(payment)),
        ]);
    }
    let payment = payment_from_charge(opts, charge, PaymentStatus::Succeeded, out.at)?;
    let refunds = refunds_of_charge(out, charge, &payment)?;
    let mut events = vec![out.part("payment", CanonEvent::PaymentSucceeded(payment))];
    events.extend(refunds);
    Ok(events)
}

/// The refunds a captured charge lists (`refunds.data`, when the payload
/// includes it), as refunds of `payment`.
fn refunds_of_charge(
    out: &Out<'_>,
    charge: &Charge,
    payment: &Payment,
) -> Result<Vec<Envelope>, MapError> {
    let refunds = charge.refunds.as_ref().map(|l| l.data.as_slice());
    let mut events = Vec::new();
    for refund in refunds.unwrap_or_default() {
        let r = CanonRefund {
            provider: PROVIDER.to_string(),
            refund_id: refund.id.clone(),
            payment_id: Some(payment.payment_id.clone()),
            links: payment.links.clone(),
            amount: money_minor("refunds.data.amount", refund.amount, &refund.currency)?,
            status: refund_status(refund.status.as_deref(), RefundStatus::Succeeded)?,
            reason: non_empty(refund.reason.as_deref())
                .or_else(|| non_empty(refund.failure_reason.as_deref())),
            lines: vec![],
            adjustments: None,
            at: out.at,
            created_at: created_at("refunds.data.created", refund.created)?,
            gateway: None,
        };
        events.push(out.part(
            &format!("refund:{}", refund.id),
            CanonEvent::RefundIssued(r),
        ));
    }
    Ok(events)
}

/// What a charge captured, `None` while it is uncaptured. Payloads of API
/// versions before `amount_captured` existed (absent, or left at 0 on a
/// captured charge, which Stripe never captures for nothing) captured `amount`.
fn captured_of_charge(charge: &Charge) -> Option<i64> {
    if charge.captured == Some(false) {
        return None;
    }
    Some(match charge.amount_captured {
        Some(c) if c > 0 => c,
        _ => charge.amount,
    })
}

/// The refunded part of the captured money: Stripe's `amount_refunded` less the
/// uncaptured rest it released itself (`amount − amount_captured` after a
/// partial capture; the whole amount of a charge never captured), floor 0.
fn refunded_of_captured(charge: &Charge) -> Option<i64> {
    let refunded = charge.amount_refunded?;
    let released = (charge.amount - captured_of_charge(charge).unwrap_or(0)).max(0);
    Some((refunded - released).max(0))
}

/// A unix time of the payload, when present.
fn created_at(field: &str, secs: Option<i64>) -> Result<Option<OffsetDateTime>, MapError> {
    secs.map(|s| from_unix(field, s)).transpose()
}

pub(crate) fn payment_from_charge(
    opts: &MapOptions,
    charge: &Charge,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Result<Payment, MapError> {
    let pi = charge.payment_intent.as_ref();
    let pi_obj = pi.and_then(Expandable::object);
    let (fee, net) = fees(charge.balance_transaction.as_ref())?;
    let failure_reason = if status == PaymentStatus::Failed {
        failure_of_charge(charge)
    } else {
        None
    };
    // A captured charge brought what it captured; anything else is about what
    // was authorised (or attempted).
    let captured = match status {
        PaymentStatus::Succeeded => captured_of_charge(charge),
        _ => None,
    };
    Ok(Payment {
        provider: PROVIDER.to_string(),
        payment_id: pi.map_or(charge.id.as_str(), Expandable::id).to_string(),
        links: links(
            opts,
            &[
                charge.metadata.as_ref(),
                pi_obj.and_then(|p| p.metadata.as_ref()),
            ],
            pi.map(Expandable::id),
            Some(&charge.id),
        ),
        status,
        // What was authorised; what was captured of it is `captured`.
        amount: money_minor("amount", charge.amount, &charge.currency)?,
        fee,
        net,
        amount_refunded: refunded_of_captured(charge)
            .map(|r| money_minor("amount_refunded", r, &charge.currency))
            .transpose()?,
        method: charge
            .payment_method_details
            .as_ref()
            .and_then(|d| non_empty(d.kind.as_deref())),
        failure_reason,
        payer: payer_of_charge(charge, pi_obj),
        at,
        captured: captured
            .map(|c| money_minor("amount_captured", c, &charge.currency))
            .transpose()?,
        capture_id: None,
        auto_capture: false,
    })
}

fn payment_from_intent(
    opts: &MapOptions,
    pi: &PaymentIntent,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Result<Payment, MapError> {
    let currency = pi
        .currency
        .as_deref()
        .ok_or_else(|| MapError::MissingField("data.object.currency".into()))?;
    let charge = charge_of_intent(pi);
    let charge_id = pi
        .latest_charge
        .as_ref()
        .map(|c| c.id().to_string())
        .or_else(|| charge.map(|c| c.id.clone()))
        .or_else(|| {
            pi.last_payment_error
                .as_ref()
                .and_then(|e| e.charge.clone())
        });
    // What can be captured while it is held; what was asked for otherwise (the
    // authorised amount). What was received once it succeeded (less than asked
    // after a partial capture) is `captured`.
    let positive = |v: Option<i64>| v.filter(|v| *v > 0);
    let minor = match status {
        PaymentStatus::Authorized => positive(pi.amount_capturable),
        _ => None,
    }
    .or(pi.amount)
    .or(pi.amount_received)
    .ok_or_else(|| MapError::MissingField("data.object.amount".into()))?;
    let received = positive(pi.amount_received).unwrap_or(minor);
    let (fee, net) = match charge {
        Some(c) => fees(c.balance_transaction.as_ref())?,
        None => (None, None),
    };
    let error = pi.last_payment_error.as_ref();
    let failure_reason = match status {
        PaymentStatus::Failed => error.and_then(|e| {
            non_empty(e.code.as_deref())
                .or_else(|| non_empty(e.decline_code.as_deref()))
                .or_else(|| non_empty(e.message.as_deref()))
                .or_else(|| non_empty(e.kind.as_deref()))
        }),
        _ => None,
    };
    let method = charge
        .and_then(|c| c.payment_method_details.as_ref())
        .and_then(|d| non_empty(d.kind.as_deref()))
        .or_else(|| {
            error
                .and_then(|e| e.payment_method.as_ref())
                .and_then(|m| non_empty(m.kind.as_deref()))
        })
        .or_else(|| match pi.payment_method_types.as_deref() {
            Some([only]) => non_empty(Some(only)),
            _ => None,
        });
    let mut payer = match charge {
        Some(c) => payer_of_charge(c, Some(pi)),
        None => Identity::default()
            .with_email(pi.receipt_email.as_deref())
            .with_email(
                error
                    .and_then(|e| e.payment_method.as_ref())
                    .and_then(|m| m.billing_details.as_ref())
                    .and_then(|b| b.email.as_deref()),
            ),
    };
    if let Some(customer) = &pi.customer {
        payer = with_customer(payer, customer);
    }
    Ok(Payment {
        provider: PROVIDER.to_string(),
        payment_id: pi.id.clone(),
        links: links(
            opts,
            &[
                pi.metadata.as_ref(),
                charge.and_then(|c| c.metadata.as_ref()),
            ],
            Some(&pi.id),
            charge_id.as_deref(),
        ),
        status,
        amount: money_minor("amount", minor, currency)?,
        fee,
        net,
        amount_refunded: charge
            .and_then(|c| refunded_of_captured(c).map(|r| (r, c.currency.as_str())))
            .map(|(r, cur)| money_minor("amount_refunded", r, cur))
            .transpose()?,
        method,
        failure_reason,
        payer,
        at,
        captured: (status == PaymentStatus::Succeeded)
            .then(|| money_minor("amount_received", received, currency))
            .transpose()?,
        capture_id: None,
        auto_capture: false,
    })
}

/// The charge a payment intent's webhook carries, when it carries one: the
/// expanded `latest_charge`, else (API versions before 2022-11-15) the newest
/// entry of `charges`.
fn charge_of_intent(pi: &PaymentIntent) -> Option<&Charge> {
    if let Some(c) = pi.latest_charge.as_ref().and_then(Expandable::object) {
        return Some(c);
    }
    let charges = &pi.charges.as_ref()?.data;
    match pi.latest_charge.as_ref() {
        Some(latest) => charges.iter().find(|c| c.id == latest.id()),
        // Stripe lists are newest first.
        None => charges.first(),
    }
}

/// The payment intent a refund or dispute belongs to: its own reference, else the
/// one of its charge when Stripe expanded it.
fn payment_intent_id<'a>(
    own: Option<&'a Expandable<PaymentIntent>>,
    charge: Option<&'a Charge>,
) -> Option<&'a str> {
    own.map(Expandable::id).or_else(|| {
        charge
            .and_then(|c| c.payment_intent.as_ref())
            .map(Expandable::id)
    })
}

fn standalone_refund(
    opts: &MapOptions,
    refund: &Refund,
    fallback: RefundStatus,
    at: OffsetDateTime,
) -> Result<CanonRefund, MapError> {
    let charge = refund.charge.as_ref();
    let charge_obj = charge.and_then(Expandable::object);
    let pi_id = payment_intent_id(refund.payment_intent.as_ref(), charge_obj);
    let payment_id = pi_id.or(charge.map(Expandable::id)).map(str::to_string);
    let pi_meta = refund
        .payment_intent
        .as_ref()
        .and_then(Expandable::object)
        .and_then(|p| p.metadata.as_ref());
    Ok(CanonRefund {
        provider: PROVIDER.to_string(),
        refund_id: refund.id.clone(),
        payment_id,
        links: links(
            opts,
            &[
                refund.metadata.as_ref(),
                charge_obj.and_then(|c| c.metadata.as_ref()),
                pi_meta,
            ],
            pi_id,
            charge.map(Expandable::id),
        ),
        amount: money_minor("amount", refund.amount, &refund.currency)?,
        status: refund_status(refund.status.as_deref(), fallback)?,
        reason: non_empty(refund.reason.as_deref())
            .or_else(|| non_empty(refund.failure_reason.as_deref())),
        lines: vec![],
        adjustments: None,
        at,
        created_at: created_at("created", refund.created)?,
        gateway: None,
    })
}

fn refund_status(status: Option<&str>, fallback: RefundStatus) -> Result<RefundStatus, MapError> {
    Ok(match status {
        None => fallback,
        Some("succeeded") => RefundStatus::Succeeded,
        Some("pending") | Some("requires_action") => RefundStatus::Pending,
        Some("failed") => RefundStatus::Failed,
        Some("canceled") | Some("cancelled") => RefundStatus::Cancelled,
        Some(other) => {
            return Err(MapError::InvalidField {
                field: "refund.status".into(),
                reason: format!("unknown refund status {other:?}"),
            });
        }
    })
}

/// Stripe's dispute status in storefold's lifecycle.
pub(crate) fn dispute_status(status: &str) -> Result<DisputeStatus, MapError> {
    Ok(match status {
        "warning_needs_response" | "warning_under_review" => DisputeStatus::Inquiry,
        "warning_closed" | "prevented" => DisputeStatus::WarningClosed,
        "needs_response" => DisputeStatus::NeedsResponse,
        "under_review" => DisputeStatus::UnderReview,
        "won" => DisputeStatus::Won,
        "lost" => DisputeStatus::Lost,
        // The merchant refunded the charge instead of contesting: the money went
        // back as the refund Stripe reports, not as a lost dispute.
        "charge_refunded" => DisputeStatus::MerchantRefunded,
        other => {
            return Err(MapError::InvalidField {
                field: "dispute.status".into(),
                reason: format!("unknown dispute status {other:?}"),
            });
        }
    })
}

fn dispute_event(
    opts: &MapOptions,
    kind: &str,
    dispute: &Dispute,
    at: OffsetDateTime,
) -> Result<CanonEvent, MapError> {
    let status = dispute_status(&dispute.status)?;
    let charge = dispute.charge.as_ref();
    let charge_obj = charge.and_then(Expandable::object);
    let pi = payment_intent_id(dispute.payment_intent.as_ref(), charge_obj);
    // The balance transactions tell what already moved: a withdrawal is negative,
    // a reinstatement positive. The event type says it too, for its own move.
    let withdrawn = dispute
        .balance_transactions
        .iter()
        .any(|b| b.amount.is_some_and(|a| a < 0));
    let reinstated = dispute
        .balance_transactions
        .iter()
        .any(|b| b.amount.is_some_and(|a| a > 0));
    let movements = dispute
        .balance_transactions
        .iter()
        .filter_map(|bt| movement(dispute, bt, at).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let d = CanonDispute {
        provider: PROVIDER.to_string(),
        dispute_id: dispute.id.clone(),
        payment_id: pi.or(charge.map(Expandable::id)).map(str::to_string),
        links: links(
            opts,
            &[
                dispute.metadata.as_ref(),
                charge_obj.and_then(|c| c.metadata.as_ref()),
                dispute
                    .payment_intent
                    .as_ref()
                    .and_then(Expandable::object)
                    .and_then(|p| p.metadata.as_ref()),
            ],
            pi,
            charge.map(Expandable::id),
        ),
        amount: money_minor("amount", dispute.amount, &dispute.currency)?,
        status,
        reason: non_empty(dispute.reason.as_deref()),
        funds_withdrawn: withdrawn || kind == "charge.dispute.funds_withdrawn",
        funds_reinstated: reinstated || kind == "charge.dispute.funds_reinstated",
        at,
        movements,
    };
    let closed = match kind {
        "charge.dispute.closed" => true,
        "charge.dispute.funds_reinstated" => status.is_closed(),
        _ => false,
    };
    Ok(if closed {
        CanonEvent::DisputeClosed(d)
    } else {
        CanonEvent::DisputeOpened(d)
    })
}

/// One balance transaction of a dispute as the money it moved: its signed amount
/// and signed dispute fee in its own (settlement) currency, at its creation (else
/// the dispute's, else the event's: the same for every event of the dispute).
fn movement(
    dispute: &Dispute,
    bt: &BalanceTransaction,
    event_at: OffsetDateTime,
) -> Result<Option<DisputeMovement>, MapError> {
    let Some(amount) = bt.amount else {
        return Ok(None);
    };
    let currency = bt.currency.as_deref().unwrap_or(&dispute.currency);
    let at = match created_at("balance_transactions.created", bt.created)? {
        Some(t) => t,
        None => created_at("created", dispute.created)?.unwrap_or(event_at),
    };
    Ok(Some(DisputeMovement {
        id: bt.id.clone(),
        amount: money_minor("balance_transactions.amount", amount, currency)?,
        fee: bt
            .fee
            .map(|f| money_minor("balance_transactions.fee", f, currency))
            .transpose()?,
        at,
    }))
}

/// Fee and net of an expanded balance transaction, in its (settlement) currency.
fn fees(
    bt: Option<&Expandable<BalanceTransaction>>,
) -> Result<(Option<Money>, Option<Money>), MapError> {
    let Some(bt) = bt.and_then(Expandable::object) else {
        return Ok((None, None));
    };
    let Some(currency) = bt.currency.as_deref() else {
        return Ok((None, None));
    };
    let fee = bt
        .fee
        .map(|f| money_minor("balance_transaction.fee", f, currency))
        .transpose()?;
    let net = bt
        .net
        .map(|n| money_minor("balance_transaction.net", n, currency))
        .transpose()?;
    Ok((fee, net))
}

fn failure_of_charge(charge: &Charge) -> Option<String> {
    non_empty(charge.failure_code.as_deref())
        .or_else(|| {
            charge
                .outcome
                .as_ref()
                .and_then(|o| non_empty(o.reason.as_deref()))
        })
        .or_else(|| non_empty(charge.failure_message.as_deref()))
        .or_else(|| {
            charge
                .outcome
                .as_ref()
                .and_then(|o| non_empty(o.seller_message.as_deref()))
        })
}

/// The payer: billing email first, then the receipt email, plus the Stripe
/// customer id as an external id.
fn payer_of_charge(charge: &Charge, pi: Option<&PaymentIntent>) -> Identity {
    let billing = charge.billing_details.clone().unwrap_or_default();
    let country = billing.address.as_ref().and_then(|a| a.country.as_deref());
    let email = non_empty(billing.email.as_deref())
        .or_else(|| non_empty(charge.receipt_email.as_deref()))
        .or_else(|| pi.and_then(|p| non_empty(p.receipt_email.as_deref())));
    let mut id = Identity::default()
        .with_email(email.as_deref())
        .with_phone(billing.phone.as_deref(), country);
    if let Some(customer) = &charge.customer {
        id = with_customer(id, customer);
    }
    id
}

fn with_customer(mut id: Identity, customer: &Expandable<CustomerRef>) -> Identity {
    if id.email.is_none() {
        id = id.with_email(customer.object().and_then(|c| c.email.as_deref()));
    }
    id.with_external(PROVIDER, customer.id())
}

/// Order links in the order the processor tries them: the order named in the
/// metadata (the first configured key of the first metadata that names an
/// order, through the configured pattern), then the payment intent, then the
/// charge.
fn links(
    opts: &MapOptions,
    metadata: &[Option<&Value>],
    payment_intent: Option<&str>,
    charge: Option<&str>,
) -> Vec<OrderLink> {
    let order = metadata
        .iter()
        .flatten()
        .flat_map(|m| {
            opts.stripe
                .fields
                .iter()
                .filter_map(|key| metadata_str(m, key))
        })
        .find(|v| payment_order_id(opts, PROVIDER, v).is_some());
    let payments = [payment_intent, charge].into_iter().flatten();
    payment_order_links(opts, PROVIDER, order, payments)
}

/// A metadata value as a string (Stripe stores strings; a number is accepted).
fn metadata_str(metadata: &Value, key: &str) -> Option<String> {
    match metadata.get(key)? {
        Value::String(s) => non_empty(Some(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
