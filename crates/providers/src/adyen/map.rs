//! Adyen notification items to canonical events.
//!
//! Every item is its own event, with its own id `adyen:<pspReference>:<eventCode>:<success>`
//! (Adyen's documented uniqueness key), so an item redelivered in another batch is
//! still recognised as the same event.
//!
//! One payment is one authorisation: its pspReference, which every modification
//! (capture, cancellation, refund, adjustment) names as `originalReference`.
//!
//! - `AUTHORISATION` with `success=true` is an **authorised** payment. With the
//!   tenant's automatic capture (Adyen's default, [`AdyenCapture::Automatic`])
//!   it says so (`auto_capture`): Adyen captures it by itself and sends no
//!   `CAPTURE` by default, so the fold counts it captured unless it is cancelled
//!   or captures are itemised. With manual capture it is only a hold.
//! - Each `CAPTURE` is one capture with its own pspReference (`capture_id`), so
//!   partial captures add up; `CAPTURE_FAILED` carries the pspReference of the
//!   capture the scheme rejected, which fails that capture after it succeeded.
//! - `REFUND_FAILED` and `REFUNDED_REVERSED` carry the pspReference of the
//!   refund: the same refund, failed after it succeeded.
//! - All notifications of one dispute share the dispute's pspReference (its
//!   id); `originalReference` is the disputed payment. Each chargeback
//!   notification that moves money is one movement, identified by the
//!   notification's own id.

use storefold_core::event::{
    Dispute, DisputeMovement, DisputeStatus, OrderLink, Payment, PaymentStatus, Refund,
    RefundStatus,
};
use storefold_core::{Envelope, Event, Identity, Money};
use time::OffsetDateTime;

use super::PROVIDER;
use super::model::{Item, Notification};
use crate::{
    AdyenCapture, MapContext, MapError, MapOptions, money_minor, non_empty, parse_time,
    payment_order_links,
};

/// Maps every item Storefold understands; items with other event codes (reports,
/// payouts, order lifecycle, …) are skipped, so a notification of only those maps
/// to nothing.
pub(crate) fn map_notification(
    ctx: &MapContext<'_>,
    notification: &Notification,
    received_at: OffsetDateTime,
) -> Result<Vec<Envelope>, MapError> {
    let mut out = Vec::new();
    for wrapper in &notification.items {
        let item = &wrapper.item;
        if let Some(event) = map_item(ctx.options, item, received_at)? {
            let at = event_time(item, received_at)?;
            out.push(Envelope {
                tenant: ctx.tenant.to_string(),
                provider: PROVIDER.to_string(),
                event_id: item_event_id(item),
                occurred_at: at,
                event,
            });
        }
    }
    Ok(out)
}

/// The idempotency id of one item.
pub(crate) fn item_event_id(item: &Item) -> String {
    format!(
        "adyen:{}:{}:{}",
        item.psp(),
        item.code(),
        item.success_text()
    )
}

fn event_time(item: &Item, received_at: OffsetDateTime) -> Result<OffsetDateTime, MapError> {
    match item.event_date.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => parse_time("eventDate", d),
        _ => Ok(received_at),
    }
}

fn map_item(
    opts: &MapOptions,
    item: &Item,
    received_at: OffsetDateTime,
) -> Result<Option<Event>, MapError> {
    let code = item.code();
    let at = event_time(item, received_at)?;
    let psp = item.psp();
    let original = item.original();
    // Modifications name the payment in originalReference; an authorisation is it.
    let modified = if original.is_empty() {
        psp.clone()
    } else {
        original.clone()
    };
    let success = item.succeeded();
    let auto_capture = opts.adyen_capture == AdyenCapture::Automatic;
    let event = match code.as_str() {
        "AUTHORISATION" if success => {
            let mut p = payment(opts, item, &psp, PaymentStatus::Authorized, at)?;
            p.auto_capture = auto_capture;
            Event::PaymentSucceeded(p)
        }
        "AUTHORISATION" => {
            let mut p = payment(opts, item, &psp, PaymentStatus::Failed, at)?;
            p.failure_reason = non_empty(Some(&item.reason()));
            Event::PaymentFailed(p)
        }
        // The authorised amount changed (pre-authorisation): the new amount holds.
        "AUTHORISATION_ADJUSTMENT" if success => {
            let mut p = payment(opts, item, &modified, PaymentStatus::Authorized, at)?;
            p.auto_capture = auto_capture;
            Event::PaymentSucceeded(p)
        }
        // One capture of the authorisation, with its own pspReference.
        "CAPTURE" if success => {
            let mut p = payment(opts, item, &modified, PaymentStatus::Succeeded, at)?;
            p.capture_id = Some(psp.clone());
            Event::PaymentSucceeded(p)
        }
        // Adyen refused the capture request, or the scheme rejected a capture
        // Adyen had accepted (CAPTURE_FAILED, same pspReference as the CAPTURE):
        // that capture brought no money.
        "CAPTURE" | "CAPTURE_FAILED" => {
            let mut p = payment(opts, item, &modified, PaymentStatus::Failed, at)?;
            p.capture_id = Some(psp.clone());
            p.failure_reason = non_empty(Some(&item.reason()))
                .or_else(|| (code == "CAPTURE_FAILED").then(|| "capture_failed".to_string()));
            Event::PaymentFailed(p)
        }
        // The authorisation was cancelled (by the merchant, or by Adyen after a
        // timeout): what was not captured never will be.
        "CANCELLATION" | "TECHNICAL_CANCEL" if success => {
            let p = payment(opts, item, &modified, PaymentStatus::Cancelled, at)?;
            Event::PaymentFailed(p)
        }
        "CANCEL_OR_REFUND" if success => {
            if item.extra("modification.action").as_deref() == Some("refund") {
                let r = refund(opts, item, &modified, RefundStatus::Succeeded, at)?;
                Event::RefundIssued(r)
            } else {
                let p = payment(opts, item, &modified, PaymentStatus::Cancelled, at)?;
                Event::PaymentFailed(p)
            }
        }
        "REFUND" => {
            let status = if success {
                RefundStatus::Succeeded
            } else {
                RefundStatus::Failed
            };
            Event::RefundIssued(refund(opts, item, &modified, status, at)?)
        }
        // The refund was rejected by the scheme (REFUND_FAILED) or came back
        // (REFUNDED_REVERSED): both carry the REFUND's pspReference, so the same
        // refund fails after it succeeded.
        "REFUND_FAILED" | "REFUNDED_REVERSED" => {
            Event::RefundIssued(refund(opts, item, &modified, RefundStatus::Failed, at)?)
        }
        "NOTIFICATION_OF_CHARGEBACK"
        | "REQUEST_FOR_INFORMATION"
        | "CHARGEBACK"
        | "SECOND_CHARGEBACK"
        | "CHARGEBACK_REVERSED"
        | "PREARBITRATION_WON"
        | "PREARBITRATION_LOST" => dispute(opts, item, &code, &original, at)?,
        // Unknown codes, and failed cancellations that change nothing.
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn amount(item: &Item) -> Result<Money, MapError> {
    let a = item
        .amount
        .as_ref()
        .ok_or_else(|| MapError::MissingField("amount".into()))?;
    let value = a
        .value
        .as_ref()
        .ok_or_else(|| MapError::MissingField("amount.value".into()))?
        .text();
    let minor = value.parse::<i64>().map_err(|_| MapError::InvalidField {
        field: "amount.value".into(),
        reason: format!("{value:?} is not an integer amount in minor units"),
    })?;
    let currency = a
        .currency
        .as_deref()
        .ok_or_else(|| MapError::MissingField("amount.currency".into()))?;
    money_minor("amount.currency", minor, currency)
}

fn payment(
    opts: &MapOptions,
    item: &Item,
    payment_id: &str,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Result<Payment, MapError> {
    Ok(Payment {
        provider: PROVIDER.to_string(),
        payment_id: payment_id.to_string(),
        links: links(opts, item, payment_id),
        status,
        amount: amount(item)?,
        // Notifications carry no fees (they come with settlement reports).
        fee: None,
        net: None,
        amount_refunded: None,
        method: non_empty(Some(&item.payment_method())),
        failure_reason: None,
        payer: payer(item),
        at,
        captured: None,
        capture_id: None,
        auto_capture: false,
    })
}

fn refund(
    opts: &MapOptions,
    item: &Item,
    payment_id: &str,
    status: RefundStatus,
    at: OffsetDateTime,
) -> Result<Refund, MapError> {
    Ok(Refund {
        provider: PROVIDER.to_string(),
        refund_id: item.psp(),
        payment_id: non_empty(Some(payment_id)),
        links: links(opts, item, payment_id),
        amount: amount(item)?,
        status,
        reason: if status == RefundStatus::Failed {
            non_empty(Some(&item.reason()))
        } else {
            None
        },
        lines: vec![],
        adjustments: None,
        at,
        created_at: None,
        gateway: None,
    })
}

/// Adyen's `additionalData.disputeStatus` of a `CHARGEBACK`: where the dispute
/// stands after the money was taken. Absent or unknown: a response is due.
fn chargeback_status(s: Option<&str>) -> DisputeStatus {
    match s.map(str::trim) {
        Some("Lost" | "Accepted" | "Expired") => DisputeStatus::Lost,
        Some("Won") => DisputeStatus::Won,
        Some("Pending" | "Responded") => DisputeStatus::UnderReview,
        _ => DisputeStatus::NeedsResponse,
    }
}

/// A dispute notification. `payment_id` is the disputed payment
/// (`originalReference`, empty when Adyen did not send it).
fn dispute(
    opts: &MapOptions,
    item: &Item,
    code: &str,
    payment_id: &str,
    at: OffsetDateTime,
) -> Result<Event, MapError> {
    let amount = amount(item)?;
    // What the notification did to the money: taken (−) or given back (+).
    let (status, moved) = match code {
        "NOTIFICATION_OF_CHARGEBACK" | "REQUEST_FOR_INFORMATION" => (DisputeStatus::Inquiry, None),
        "CHARGEBACK" => (
            chargeback_status(item.extra("disputeStatus").as_deref()),
            Some(-amount.minor),
        ),
        "SECOND_CHARGEBACK" => (DisputeStatus::Lost, Some(-amount.minor)),
        "CHARGEBACK_REVERSED" | "PREARBITRATION_WON" => (DisputeStatus::Won, Some(amount.minor)),
        // The second chargeback already took the money.
        _ => (DisputeStatus::Lost, None),
    };
    let movements = moved
        .map(|minor| DisputeMovement {
            id: item_event_id(item),
            amount: Money::new(minor, amount.currency),
            // Adyen's chargeback fees come with the settlement reports.
            fee: None,
            at,
        })
        .into_iter()
        .collect();
    let (withdrawn, reinstated) = match code {
        "NOTIFICATION_OF_CHARGEBACK" | "REQUEST_FOR_INFORMATION" => (false, false),
        "CHARGEBACK_REVERSED" | "PREARBITRATION_WON" => (true, true),
        _ => (true, false),
    };
    let d = Dispute {
        provider: PROVIDER.to_string(),
        // All notifications of one dispute share its pspReference.
        dispute_id: item.psp(),
        payment_id: non_empty(Some(payment_id)),
        links: links(opts, item, payment_id),
        amount,
        status,
        reason: non_empty(Some(&item.reason()))
            .or_else(|| non_empty(item.extra("chargebackReasonCode").as_deref())),
        funds_withdrawn: withdrawn,
        funds_reinstated: reinstated,
        at,
        movements,
    };
    Ok(if status.is_closed() {
        Event::DisputeClosed(d)
    } else {
        Event::DisputeOpened(d)
    })
}

fn payer(item: &Item) -> Identity {
    let id = Identity::default().with_email(item.extra("shopperEmail").as_deref());
    match item.extra("shopperReference") {
        Some(r) if !r.trim().is_empty() => id.with_external(PROVIDER, r.trim()),
        _ => id,
    }
}

/// The order by its merchant reference (the shop's order reference, through the
/// tenant's pattern), then the payment by its PSP reference.
fn links(opts: &MapOptions, item: &Item, payment_id: &str) -> Vec<OrderLink> {
    let order = non_empty(Some(&item.merchant_reference()));
    payment_order_links(opts, PROVIDER, order, [payment_id])
}
