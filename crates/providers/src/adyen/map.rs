//! Adyen notification items to canonical events.
//!
//! Every item is its own event, with its own id `adyen:<pspReference>:<eventCode>:<success>`
//! (Adyen's documented uniqueness key), so an item redelivered in another batch is
//! still recognised as the same event.
//!
//! `AUTHORISATION` with `success=true` is mapped as a **succeeded** payment: card
//! payments on Adyen are captured automatically unless the merchant configured a
//! capture delay, and with automatic capture Adyen sends no `CAPTURE` notification
//! by default, so waiting for one would leave most paid orders unpaid. Merchants on
//! manual capture also get `CAPTURE` (same payment id, also succeeded) and, when
//! they release the authorisation instead, `CANCELLATION` (a cancelled payment,
//! later in time, which the fold lets win).

use storefold_core::event::{
    Dispute, DisputeStatus, OrderLink, Payment, PaymentStatus, Refund, RefundStatus,
};
use storefold_core::{Envelope, Event, Identity, Money};
use time::OffsetDateTime;

use super::PROVIDER;
use super::model::{Item, Notification};
use crate::{
    MapContext, MapError, MapOptions, money_minor, non_empty, parse_time, payment_order_links,
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
    let event = match code.as_str() {
        "AUTHORISATION" if success => {
            Event::PaymentSucceeded(payment(opts, item, &psp, PaymentStatus::Succeeded, at)?)
        }
        "AUTHORISATION" => {
            let mut p = payment(opts, item, &psp, PaymentStatus::Failed, at)?;
            p.failure_reason = non_empty(Some(&item.reason()));
            Event::PaymentFailed(p)
        }
        "CAPTURE" if success => Event::PaymentSucceeded(payment(
            opts,
            item,
            &modified,
            PaymentStatus::Succeeded,
            at,
        )?),
        // The scheme rejected a capture Adyen had accepted: the money never came.
        "CAPTURE_FAILED" => {
            let mut p = payment(opts, item, &modified, PaymentStatus::Failed, at)?;
            p.failure_reason = non_empty(Some(&item.reason())).or(Some("capture_failed".into()));
            Event::PaymentFailed(p)
        }
        "CANCELLATION" if success => Event::PaymentFailed(payment(
            opts,
            item,
            &modified,
            PaymentStatus::Cancelled,
            at,
        )?),
        "CANCEL_OR_REFUND" if success => match item.extra("modification.action").as_deref() {
            Some("refund") => {
                Event::RefundIssued(refund(opts, item, &modified, RefundStatus::Succeeded, at)?)
            }
            _ => Event::PaymentFailed(payment(
                opts,
                item,
                &modified,
                PaymentStatus::Cancelled,
                at,
            )?),
        },
        "REFUND" => {
            let status = if success {
                RefundStatus::Succeeded
            } else {
                RefundStatus::Failed
            };
            Event::RefundIssued(refund(opts, item, &modified, status, at)?)
        }
        // The refund was sent but bounced (REFUND_FAILED) or came back (REFUNDED_REVERSED).
        "REFUND_FAILED" | "REFUNDED_REVERSED" => {
            Event::RefundIssued(refund(opts, item, &modified, RefundStatus::Failed, at)?)
        }
        "NOTIFICATION_OF_CHARGEBACK"
        | "REQUEST_FOR_INFORMATION"
        | "CHARGEBACK"
        | "SECOND_CHARGEBACK"
        | "CHARGEBACK_REVERSED"
        | "PREARBITRATION_WON"
        | "PREARBITRATION_LOST" => dispute(opts, item, &code, &modified, at)?,
        // Unknown codes, and failed cancellations/captures that change nothing.
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

/// Adyen's `additionalData.disputeStatus`, when it says where the dispute stands.
fn dispute_status(s: &str) -> Option<DisputeStatus> {
    Some(match s {
        "Undefended" | "Unresponded" => DisputeStatus::NeedsResponse,
        "Pending" | "Responded" => DisputeStatus::UnderReview,
        "Won" => DisputeStatus::Won,
        "Lost" | "Accepted" | "Expired" => DisputeStatus::Lost,
        _ => return None,
    })
}

fn dispute(
    opts: &MapOptions,
    item: &Item,
    code: &str,
    payment_id: &str,
    at: OffsetDateTime,
) -> Result<Event, MapError> {
    let reported = item
        .extra("disputeStatus")
        .and_then(|s| dispute_status(s.trim()));
    let (status, withdrawn, reinstated) = match code {
        "NOTIFICATION_OF_CHARGEBACK" | "REQUEST_FOR_INFORMATION" => {
            (reported.unwrap_or(DisputeStatus::Inquiry), false, false)
        }
        "CHARGEBACK" | "SECOND_CHARGEBACK" => (
            reported.unwrap_or(DisputeStatus::NeedsResponse),
            true,
            false,
        ),
        "CHARGEBACK_REVERSED" | "PREARBITRATION_WON" => (DisputeStatus::Won, true, true),
        _ => (DisputeStatus::Lost, true, false),
    };
    let d = Dispute {
        provider: PROVIDER.to_string(),
        // All events of one dispute share its pspReference.
        dispute_id: item.psp(),
        payment_id: non_empty(Some(payment_id)),
        links: links(opts, item, payment_id),
        amount: amount(item)?,
        status,
        reason: non_empty(Some(&item.reason()))
            .or_else(|| non_empty(item.extra("chargebackReasonCode").as_deref())),
        funds_withdrawn: withdrawn,
        funds_reinstated: reinstated,
        at,
        movements: vec![],
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

/// The order by its merchant reference (the shop's order reference), then the
/// payment by its PSP reference.
fn links(opts: &MapOptions, item: &Item, payment_id: &str) -> Vec<OrderLink> {
    let order = non_empty(Some(&item.merchant_reference()));
    payment_order_links(opts, PROVIDER, order, [payment_id])
}
