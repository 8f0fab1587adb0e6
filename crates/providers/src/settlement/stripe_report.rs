//! Stripe's itemized payout reconciliation report
//! (`payout_reconciliation.itemized.5`, the "Itemized" download of the
//! Dashboard's Payout reconciliation section): one balance transaction per
//! row, each settled by an automatic payout.
//!
//! Columns read (by name, in any order; every other column is ignored, among
//! them the customer's email, name, description and shipping address, which
//! never reach an event):
//!
//! | column | |
//! |---|---|
//! | `automatic_payout_id` | required: the payout (`po_…`) |
//! | `balance_transaction_id` | required: the line's id (`txn_…`) |
//! | `created_utc` | required: when the movement happened, `YYYY-MM-DD HH:MM:SS` in UTC |
//! | `currency` | required: of `gross`, `fee` and `net` |
//! | `gross`, `fee`, `net` | decimals in major units as Stripe signs them (a refund's gross is negative, a fee charged is positive); `net` must be `gross − fee` |
//! | `reporting_category` | required: the line's kind |
//! | `charge_id`, `payment_intent_id` | optional: the payment, linked as the Stripe webhooks link it |
//! | `payment_metadata[<key>]` | optional: for each of the tenant's Stripe order metadata keys, the order id, as the webhooks read it from the metadata |

use storefold_core::event::{PayoutLine, PayoutLineKind};

use super::map::{Cells, Row, Table};
use crate::{MapError, MapOptions, payment_order_id, payment_order_links};

const PROVIDER: &str = "stripe";

/// Stripe's reporting category as a line's kind.
fn kind_of(category: &str) -> PayoutLineKind {
    match category {
        "charge" | "payment" => PayoutLineKind::Charge,
        "refund" => PayoutLineKind::Refund,
        "refund_failure" => PayoutLineKind::RefundFailure,
        "dispute" => PayoutLineKind::Dispute,
        "dispute_reversal" => PayoutLineKind::DisputeReversal,
        "fee" | "stripe_fee" | "network_cost" => PayoutLineKind::Fee,
        _ => PayoutLineKind::Adjustment,
    }
}

/// Every data row of the report as one line, with the line it is on.
pub(super) fn rows(opts: &MapOptions, table: &Table) -> Result<Vec<(usize, Row)>, MapError> {
    let payout = table.column("automatic_payout_id")?;
    let txn = table.column("balance_transaction_id")?;
    let created = table.column("created_utc")?;
    let currency = table.column("currency")?;
    let gross = table.column("gross")?;
    let fee = table.column("fee")?;
    let net = table.column("net")?;
    let category = table.column("reporting_category")?;
    let charge = table.optional("charge_id");
    let intent = table.optional("payment_intent_id");
    // The columns of the metadata keys the tenant names orders with, in the
    // order the webhooks try them.
    let metadata: Vec<Option<usize>> = opts
        .stripe
        .fields
        .iter()
        .map(|key| table.optional(&format!("payment_metadata[{key}]")))
        .collect();
    let mut out = Vec::with_capacity(table.rows.len());
    for record in &table.rows {
        let row = Cells { record };
        let c = row.currency("currency", currency)?;
        let gross = row.amount("gross", Some(gross), c)?;
        let fee = row.amount("fee", Some(fee), c)?;
        let net = row.amount("net", Some(net), c)?;
        if gross.checked_sub(fee)? != net {
            return Err(row.invalid("net", "is not gross − fee"));
        }
        let order = metadata
            .iter()
            .map(|&i| row.get(i))
            .find(|v| payment_order_id(opts, PROVIDER, v).is_some())
            .map(str::to_string);
        let line = PayoutLine {
            provider: PROVIDER.to_string(),
            payout_id: row.required("automatic_payout_id", payout)?.to_string(),
            line_id: row.required("balance_transaction_id", txn)?.to_string(),
            kind: kind_of(row.required("reporting_category", category)?),
            // As the webhooks link a payment: the order, the payment intent,
            // the charge.
            links: payment_order_links(opts, PROVIDER, order, [row.get(intent), row.get(charge)]),
            gross,
            fee,
            net,
            at: row.local_time("created_utc", created, time::UtcOffset::UTC)?,
        };
        out.push((row.line(), Row::Line(line)));
    }
    Ok(out)
}
