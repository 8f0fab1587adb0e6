//! PayPal events to canonical events.
//!
//! A capture is the payment (its id is the payment id); a refund names its capture
//! through its `up` link; a dispute names it as the seller transaction id. Amounts
//! are decimal strings, parsed exactly in the currency's exponent.

use serde::de::DeserializeOwned;
use serde_json::Value;
use storefold_core::event::{
    Dispute as CanonDispute, DisputeStatus, OrderLink, Payment, PaymentStatus,
    Refund as CanonRefund, RefundStatus,
};
use storefold_core::{Envelope, Event as CanonEvent, Identity, Money};
use time::OffsetDateTime;

use super::PROVIDER;
use super::model::{Amount, Capture, Dispute, Event, Refund};
use crate::{MapContext, MapError, MapOptions, money, non_empty, parse_time, payment_order_links};

/// Maps one verified event; event types storefold does not read map to nothing.
pub(crate) fn map_event(
    ctx: &MapContext<'_>,
    event: &Event,
    fallback_id: &str,
    received_at: OffsetDateTime,
) -> Result<Vec<Envelope>, MapError> {
    let kind = event.event_type.as_deref().unwrap_or_default();
    let at = match event.create_time.as_deref() {
        Some(t) => parse_time("create_time", t.trim())?,
        None => received_at,
    };
    let opts = ctx.options;
    let mapped = match kind {
        "PAYMENT.CAPTURE.COMPLETED" => {
            let capture: Capture = resource_as(&event.resource)?;
            CanonEvent::PaymentSucceeded(payment(opts, &capture, PaymentStatus::Succeeded, at)?)
        }
        "PAYMENT.CAPTURE.DENIED" => {
            let capture: Capture = resource_as(&event.resource)?;
            let mut p = payment(opts, &capture, PaymentStatus::Failed, at)?;
            p.failure_reason = capture
                .status_details
                .as_ref()
                .and_then(|d| non_empty(d.reason.as_deref()))
                .or_else(|| non_empty(capture.status.as_deref()));
            CanonEvent::PaymentFailed(p)
        }
        "PAYMENT.CAPTURE.REFUNDED" => {
            let refund: Refund = resource_as(&event.resource)?;
            CanonEvent::RefundIssued(refund_of(opts, &refund, at)?)
        }
        "CUSTOMER.DISPUTE.CREATED" | "CUSTOMER.DISPUTE.UPDATED" | "CUSTOMER.DISPUTE.RESOLVED" => {
            let dispute: Dispute = resource_as(&event.resource)?;
            dispute_of(opts, kind, &dispute, at)?
        }
        _ => return Ok(vec![]),
    };
    let event_id = non_empty(event.id.as_deref())
        .or_else(|| non_empty(Some(fallback_id)))
        .ok_or_else(|| MapError::MissingField("id".into()))?;
    Ok(vec![Envelope {
        tenant: ctx.tenant.to_string(),
        provider: PROVIDER.to_string(),
        event_id,
        occurred_at: at,
        event: mapped,
    }])
}

fn resource_as<T: DeserializeOwned>(resource: &Value) -> Result<T, MapError> {
    T::deserialize(resource).map_err(|e| MapError::Json(format!("resource: {e}")))
}

fn amount(field: &str, a: &Amount) -> Result<Money, MapError> {
    money(field, a.value.trim(), &a.currency_code)
}

fn payment(
    opts: &MapOptions,
    capture: &Capture,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Result<Payment, MapError> {
    let breakdown = capture.seller_receivable_breakdown.as_ref();
    let fee = breakdown
        .and_then(|b| b.paypal_fee.as_ref())
        .map(|a| amount("seller_receivable_breakdown.paypal_fee", a))
        .transpose()?;
    let net = breakdown
        .and_then(|b| b.net_amount.as_ref())
        .map(|a| amount("seller_receivable_breakdown.net_amount", a))
        .transpose()?;
    Ok(Payment {
        provider: PROVIDER.to_string(),
        payment_id: capture.id.clone(),
        links: links(
            opts,
            &[capture.custom_id.as_deref(), capture.invoice_id.as_deref()],
            Some(&capture.id),
        ),
        status,
        amount: amount("amount", &capture.amount)?,
        fee,
        net,
        amount_refunded: None,
        method: Some("paypal".into()),
        failure_reason: None,
        // A capture does not name its payer.
        payer: Identity::default(),
        at,
        captured: None,
        capture_id: None,
        auto_capture: false,
    })
}

/// The capture a refund belongs to: the last path segment of its `up` link
/// (`…/v2/payments/captures/<id>`).
fn capture_of_refund(refund: &Refund) -> Option<String> {
    refund
        .links
        .iter()
        .find(|l| l.rel.as_deref() == Some("up"))
        .and_then(|l| l.href.as_deref())
        .and_then(|href| href.trim_end_matches('/').rsplit('/').next())
        .and_then(|id| non_empty(Some(id)))
}

fn refund_of(
    opts: &MapOptions,
    refund: &Refund,
    at: OffsetDateTime,
) -> Result<CanonRefund, MapError> {
    let capture = capture_of_refund(refund);
    let status = match refund.status.as_deref() {
        None | Some("COMPLETED") => RefundStatus::Succeeded,
        Some("PENDING") => RefundStatus::Pending,
        Some("FAILED") => RefundStatus::Failed,
        Some("CANCELLED") => RefundStatus::Cancelled,
        Some(other) => {
            return Err(MapError::InvalidField {
                field: "resource.status".into(),
                reason: format!("unknown refund status {other:?}"),
            });
        }
    };
    Ok(CanonRefund {
        provider: PROVIDER.to_string(),
        refund_id: refund.id.clone(),
        payment_id: capture.clone(),
        links: links(
            opts,
            &[refund.custom_id.as_deref(), refund.invoice_id.as_deref()],
            capture.as_deref(),
        ),
        amount: amount("amount", &refund.amount)?,
        status,
        reason: non_empty(refund.note_to_payer.as_deref()).or_else(|| {
            refund
                .status_details
                .as_ref()
                .and_then(|d| non_empty(d.reason.as_deref()))
        }),
        lines: vec![],
        adjustments: None,
        at,
        created_at: None,
        gateway: None,
    })
}

/// Where a PayPal dispute stands. A resolved dispute is won or lost per its outcome;
/// an open one is an inquiry while in the inquiry stage, else per its status.
pub(crate) fn dispute_status(
    resolved: bool,
    stage: Option<&str>,
    status: Option<&str>,
    outcome: Option<&str>,
) -> DisputeStatus {
    let inquiry = matches!(stage, None | Some("INQUIRY"));
    if resolved {
        return match outcome {
            Some("RESOLVED_BUYER_FAVOUR" | "ACCEPTED") => DisputeStatus::Lost,
            // PayPal covered the buyer itself, or denied the claim: the merchant keeps the money.
            Some("RESOLVED_SELLER_FAVOUR" | "RESOLVED_WITH_PAYOUT" | "DENIED") => {
                DisputeStatus::Won
            }
            Some("CANCELED_BY_BUYER") if !inquiry => DisputeStatus::Won,
            _ => DisputeStatus::WarningClosed,
        };
    }
    if inquiry {
        return DisputeStatus::Inquiry;
    }
    match status {
        Some("UNDER_REVIEW" | "WAITING_FOR_BUYER_RESPONSE" | "OTHER") => DisputeStatus::UnderReview,
        _ => DisputeStatus::NeedsResponse,
    }
}

fn dispute_of(
    opts: &MapOptions,
    kind: &str,
    dispute: &Dispute,
    at: OffsetDateTime,
) -> Result<CanonEvent, MapError> {
    let resolved =
        kind == "CUSTOMER.DISPUTE.RESOLVED" || dispute.status.as_deref() == Some("RESOLVED");
    let stage = dispute.dispute_life_cycle_stage.as_deref();
    let status = dispute_status(
        resolved,
        stage,
        dispute.status.as_deref(),
        dispute
            .dispute_outcome
            .as_ref()
            .and_then(|o| o.outcome_code.as_deref()),
    );
    let txn = dispute.disputed_transactions.first();
    let capture = txn.and_then(|t| non_empty(t.seller_transaction_id.as_deref()));
    let amount = dispute
        .dispute_amount
        .as_ref()
        .ok_or_else(|| MapError::MissingField("resource.dispute_amount".into()))?;
    // Past the inquiry stage PayPal holds the disputed funds; a win releases them.
    let withdrawn = !matches!(stage, None | Some("INQUIRY")) || status == DisputeStatus::Lost;
    let d = CanonDispute {
        provider: PROVIDER.to_string(),
        dispute_id: dispute.dispute_id.clone(),
        payment_id: capture.clone(),
        links: links(
            opts,
            &[
                txn.and_then(|t| t.custom.as_deref()),
                txn.and_then(|t| t.invoice_number.as_deref()),
            ],
            capture.as_deref(),
        ),
        amount: self::amount("dispute_amount", amount)?,
        status,
        reason: non_empty(dispute.reason.as_deref()),
        funds_withdrawn: withdrawn,
        funds_reinstated: withdrawn && status == DisputeStatus::Won,
        at,
        movements: vec![],
    };
    Ok(if resolved {
        CanonEvent::DisputeClosed(d)
    } else {
        CanonEvent::DisputeOpened(d)
    })
}

/// The order (custom id, then invoice id, each once), then the capture.
fn links(opts: &MapOptions, orders: &[Option<&str>], capture: Option<&str>) -> Vec<OrderLink> {
    let orders = orders.iter().filter_map(|o| non_empty(*o));
    let capture = capture.and_then(|c| non_empty(Some(c)));
    payment_order_links(opts, PROVIDER, orders, capture.as_deref())
}
