//! PayPal events to canonical events.
//!
//! A payment is an authorization (its captures are captures of it, each with its
//! own id) or, for an order captured at once, the capture itself. A capture
//! names its authorization through its `up` link
//! (`…/v2/payments/authorizations/<id>`); a refund, and the reversal PayPal
//! reports as a refund, name their capture through theirs; a dispute names it as
//! the seller transaction id. Amounts are decimal strings, parsed exactly in the
//! currency's exponent.

use serde::de::DeserializeOwned;
use serde_json::Value;
use storefold_core::event::{
    Dispute as CanonDispute, DisputeStatus, OrderLink, Payment, PaymentStatus,
    Refund as CanonRefund, RefundStatus,
};
use storefold_core::{Envelope, Event as CanonEvent, Identity, Money};
use time::OffsetDateTime;

use super::PROVIDER;
use super::model::{Amount, Authorization, Capture, Dispute, Event, Link, Refund};
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
        "PAYMENT.AUTHORIZATION.CREATED" => {
            let auth: Authorization = resource_as(&event.resource)?;
            CanonEvent::PaymentSucceeded(authorization(opts, &auth, PaymentStatus::Authorized, at)?)
        }
        "PAYMENT.AUTHORIZATION.VOIDED" => {
            let auth: Authorization = resource_as(&event.resource)?;
            CanonEvent::PaymentFailed(authorization(opts, &auth, PaymentStatus::Cancelled, at)?)
        }
        "PAYMENT.CAPTURE.COMPLETED" => {
            let capture: Capture = resource_as(&event.resource)?;
            CanonEvent::PaymentSucceeded(payment(opts, &capture, PaymentStatus::Succeeded, at)?)
        }
        // Captured, but the money is not the merchant's yet (e.g. an eCheck
        // clearing, a review): no more than authorised.
        "PAYMENT.CAPTURE.PENDING" => {
            let capture: Capture = resource_as(&event.resource)?;
            CanonEvent::PaymentSucceeded(payment(opts, &capture, PaymentStatus::Authorized, at)?)
        }
        "PAYMENT.CAPTURE.DENIED" | "PAYMENT.CAPTURE.DECLINED" => {
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
        "PAYMENT.CAPTURE.REVERSED" => {
            let reversal: Refund = resource_as(&event.resource)?;
            match reversal_of(opts, &reversal, at)? {
                Some(p) => CanonEvent::PaymentSucceeded(p),
                None => return Ok(vec![]),
            }
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
    crate::from_json_value("resource", resource)
}

fn amount(field: &str, a: &Amount) -> Result<Money, MapError> {
    money(field, a.value.trim(), &a.currency_code)
}

/// A payment observation with what every PayPal payment shares.
fn base_payment(
    payment_id: String,
    links: Vec<OrderLink>,
    status: PaymentStatus,
    amount: Money,
    at: OffsetDateTime,
) -> Payment {
    Payment {
        provider: PROVIDER.to_string(),
        payment_id,
        links,
        status,
        amount,
        fee: None,
        net: None,
        amount_refunded: None,
        method: Some("paypal".into()),
        failure_reason: None,
        // PayPal's payment resources do not name the payer.
        payer: Identity::default(),
        at,
        captured: None,
        capture_id: None,
        auto_capture: false,
    }
}

/// `PAYMENT.AUTHORIZATION.*`: the authorization is the payment.
fn authorization(
    opts: &MapOptions,
    auth: &Authorization,
    status: PaymentStatus,
    at: OffsetDateTime,
) -> Result<Payment, MapError> {
    let links = links(
        opts,
        &[
            ("custom_id", &auth.custom_id),
            ("invoice_id", &auth.invoice_id),
        ],
        &[Some(&auth.id)],
    );
    Ok(base_payment(
        auth.id.clone(),
        links,
        status,
        amount("amount", &auth.amount)?,
        at,
    ))
}

/// `PAYMENT.CAPTURE.*`: a capture of an authorization is that authorization's
/// payment, about this capture (`capture_id`); a capture of an order captured
/// at once is the payment itself.
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
    let auth = authorization_of(&capture.links);
    let links = links(
        opts,
        &[
            ("custom_id", &capture.custom_id),
            ("invoice_id", &capture.invoice_id),
        ],
        &[auth.as_ref(), Some(&capture.id)],
    );
    let mut p = base_payment(
        auth.clone().unwrap_or_else(|| capture.id.clone()),
        links,
        status,
        amount("amount", &capture.amount)?,
        at,
    );
    p.capture_id = auth.map(|_| capture.id.clone());
    // The fee is known once the money is the merchant's.
    if status == PaymentStatus::Succeeded {
        p.fee = fee;
        p.net = net;
    }
    Ok(p)
}

/// The `up` link of a resource.
fn up_link(links: &[Link]) -> Option<&str> {
    links
        .iter()
        .find(|l| l.rel.as_deref() == Some("up"))
        .and_then(|l| l.href.as_deref())
}

/// The last path segment of a link (`…/captures/<id>` → `<id>`).
fn last_segment(href: &str) -> Option<String> {
    let path = href.split(['?', '#']).next().unwrap_or_default();
    non_empty(path.trim_end_matches('/').rsplit('/').next())
}

/// The authorization a capture captured, when its `up` link names one
/// (`…/v2/payments/authorizations/<id>`; v1: `…/v1/payments/authorization/<id>`).
fn authorization_of(links: &[Link]) -> Option<String> {
    let href = up_link(links)?;
    let path = href.split(['?', '#']).next().unwrap_or_default();
    let parent = path.trim_end_matches('/').rsplit('/').nth(1)?;
    if parent == "authorizations" || parent == "authorization" {
        last_segment(path)
    } else {
        None
    }
}

/// The capture a refund (or reversal) belongs to: the last path segment of its
/// `up` link (`…/v2/payments/captures/<id>`).
fn capture_of_refund(refund: &Refund) -> Option<String> {
    up_link(&refund.links).and_then(last_segment)
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
            &[
                ("custom_id", &refund.custom_id),
                ("invoice_id", &refund.invoice_id),
            ],
            &[capture.as_ref()],
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
        created_at: refund
            .create_time
            .as_deref()
            .map(|t| parse_time("resource.create_time", t.trim()))
            .transpose()?,
        gateway: None,
    })
}

/// `PAYMENT.CAPTURE.REVERSED`: PayPal took the captured money back (its resource
/// is a refund of the capture that PayPal issued). A reversed observation of the
/// capture, for the reversed amount; a reversal that failed or was cancelled
/// took nothing. The resource names only the capture, not an authorization it
/// may belong to, so the capture is the payment here (as a dispute names it).
fn reversal_of(
    opts: &MapOptions,
    reversal: &Refund,
    at: OffsetDateTime,
) -> Result<Option<Payment>, MapError> {
    if matches!(reversal.status.as_deref(), Some("FAILED" | "CANCELLED")) {
        return Ok(None);
    }
    let capture = capture_of_refund(reversal)
        .ok_or_else(|| MapError::MissingField("resource.links[rel=up]".into()))?;
    let links = links(
        opts,
        &[
            ("custom_id", &reversal.custom_id),
            ("invoice_id", &reversal.invoice_id),
        ],
        &[Some(&capture)],
    );
    let mut p = base_payment(
        capture,
        links,
        PaymentStatus::Reversed,
        amount("amount", &reversal.amount)?,
        at,
    );
    p.failure_reason = reversal
        .status_details
        .as_ref()
        .and_then(|d| non_empty(d.reason.as_deref()))
        .or_else(|| non_empty(reversal.note_to_payer.as_deref()));
    Ok(Some(p))
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
            Some("RESOLVED_BUYER_FAVOUR") => DisputeStatus::Lost,
            // The merchant accepted the claim and refunded the buyer: the money
            // went back as a refund PayPal reports, not as a lost dispute.
            Some("ACCEPTED") => DisputeStatus::MerchantRefunded,
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
                ("custom_id", &txn.and_then(|t| t.custom.clone())),
                ("invoice_id", &txn.and_then(|t| t.invoice_number.clone())),
            ],
            &[capture.as_ref()],
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

/// The order named in the fields the tenant configured (`custom_id`,
/// `invoice_id`, in the configured order, through the configured pattern, each
/// once), then the payment references.
fn links(
    opts: &MapOptions,
    fields: &[(&str, &Option<String>)],
    payments: &[Option<&String>],
) -> Vec<OrderLink> {
    let orders = opts.paypal.fields.iter().filter_map(|wanted| {
        fields
            .iter()
            .find(|(name, _)| name == wanted)
            .and_then(|(_, v)| non_empty(v.as_deref()))
    });
    let payments = payments.iter().flatten().map(|p| p.as_str());
    payment_order_links(opts, PROVIDER, orders, payments)
}
