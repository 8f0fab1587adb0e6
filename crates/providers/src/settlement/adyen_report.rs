//! Adyen's settlement details report: every journal entry of one (or more)
//! settlement batches of a merchant account, one per row, and the batch's
//! payout to the bank (`MerchantPayout`).
//!
//! Columns read (by name, in any order; every other column is ignored, among
//! them Payment Method, Exchange Rate and the reserved ones):
//!
//! | column | |
//! |---|---|
//! | `Merchant Account`, `Batch Number` | required: the payout, `<Merchant Account>:<Batch Number>` |
//! | `Type` | required: the journal type, the line's kind (`MerchantPayout`: the payout itself) |
//! | `Psp Reference` | the payment (its authorisation's PSP reference, as the notifications link it); empty on batch-level rows (fees, corrections, the payout) |
//! | `Modification Reference` | the modification's PSP reference (a refund's, a capture's), or the text of a batch-level row |
//! | `Merchant Reference` | the shop's order reference, read through the tenant's Adyen pattern as the notifications read it |
//! | `Creation Date`, `TimeZone` | required: when, `YYYY-MM-DD HH:MM:SS` in the zone named (`CET`, `BST`, `UTC`, `+01:00`, …) |
//! | `Gross Currency`, `Gross Debit (GC)`, `Gross Credit (GC)` | the movement before costs, in the currency the shopper paid in |
//! | `Net Currency`, `Net Debit (NC)`, `Net Credit (NC)` | required currency: what the movement adds to the payout |
//! | `Commission (NC)`, `Markup (NC)`, `Scheme Fees (NC)`, `Interchange (NC)` | the costs, in the net currency |
//!
//! A line's id is `<Psp Reference>:<Type>:<Modification Reference>`; a
//! batch-level row has no PSP reference and is identified within its batch
//! instead (`<payout id>:<Type>:<Modification Reference>`), so a monthly fee
//! row of the same text in two batches is two lines.
//!
//! Amounts: `net` = Net Credit − Net Debit; `fee` = the sum of the four cost
//! columns; `gross` = Gross Credit − Gross Debit in the gross currency. A
//! batch-level row has no gross: a fee row's whole net is its fee (gross 0),
//! any other row's gross is its net plus its costs, in the net currency.

use storefold_core::event::{PayoutLine, PayoutLineKind, PayoutStatus, PayoutUpdated};
use storefold_core::{Currency, Money};
use time::UtcOffset;

use super::map::{Cells, Row, Table, sum};
use crate::{MapError, MapOptions, non_empty, payment_order_links};

const PROVIDER: &str = "adyen";

/// Adyen's journal type as a line's kind; `None` for the batch's payout.
fn kind_of(journal: &str) -> Option<PayoutLineKind> {
    Some(match journal {
        "MerchantPayout" => return None,
        "Settled" | "SettledBulk" => PayoutLineKind::Charge,
        "Refunded" | "RefundedBulk" => PayoutLineKind::Refund,
        "RefundedReversed" => PayoutLineKind::RefundFailure,
        "Chargeback" | "SecondChargeback" => PayoutLineKind::Dispute,
        "ChargebackReversed" => PayoutLineKind::DisputeReversal,
        "Fee" | "MiscCosts" | "PaymentCost" | "InvoiceDeduction" => PayoutLineKind::Fee,
        _ => PayoutLineKind::Adjustment,
    })
}

/// The UTC offset of a `TimeZone` cell: the abbreviations Adyen's Customer
/// Area offers for the account's zone, a `±HH:MM` offset, or `UTC±H`/`GMT±H`.
/// An abbreviation that names several zones (`IST`, `CST`) is refused rather
/// than guessed.
fn offset_of(zone: &str) -> Option<UtcOffset> {
    let hours = |h: i8| UtcOffset::from_hms(h, 0, 0).ok();
    match zone.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "Z" | "WET" => hours(0),
        "BST" | "CET" | "WEST" | "MET" => hours(1),
        "CEST" | "EET" | "MEST" | "SAST" => hours(2),
        "EEST" | "MSK" => hours(3),
        "GST" => hours(4),
        "SGT" | "HKT" | "AWST" => hours(8),
        "JST" | "KST" => hours(9),
        "AEST" => hours(10),
        "AEDT" => hours(11),
        "NZST" => hours(12),
        "NZDT" => hours(13),
        "EST" => hours(-5),
        "EDT" => hours(-4),
        "PST" => hours(-8),
        "PDT" => hours(-7),
        "MST" => hours(-7),
        "MDT" => hours(-6),
        "BRT" => hours(-3),
        other => {
            let rest = other
                .strip_prefix("UTC")
                .or_else(|| other.strip_prefix("GMT"))
                .unwrap_or(other);
            let (sign, rest) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
            let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
            if !(0..=14).contains(&h) || !(0..60).contains(&m) {
                return None;
            }
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()
        }
    }
}

/// Every data row of the report: a line, or the batch's payout.
pub(super) fn rows(opts: &MapOptions, table: &Table) -> Result<Vec<(usize, Row)>, MapError> {
    let merchant = table.column("Merchant Account")?;
    let batch = table.column("Batch Number")?;
    let journal = table.column("Type")?;
    let created = table.column("Creation Date")?;
    let zone = table.column("TimeZone")?;
    let net_currency = table.column("Net Currency")?;
    let net_debit = table.column("Net Debit (NC)")?;
    let net_credit = table.column("Net Credit (NC)")?;
    let psp = table.optional("Psp Reference");
    let modification = table.optional("Modification Reference");
    let merchant_reference = table.optional("Merchant Reference");
    let gross_currency = table.optional("Gross Currency");
    let gross_debit = table.optional("Gross Debit (GC)");
    let gross_credit = table.optional("Gross Credit (GC)");
    let costs = [
        ("Commission (NC)", table.optional("Commission (NC)")),
        ("Markup (NC)", table.optional("Markup (NC)")),
        ("Scheme Fees (NC)", table.optional("Scheme Fees (NC)")),
        ("Interchange (NC)", table.optional("Interchange (NC)")),
    ];
    let mut out = Vec::with_capacity(table.rows.len());
    for record in &table.rows {
        let row = Cells { record };
        let payout_id = format!(
            "{}:{}",
            row.required("Merchant Account", merchant)?,
            row.required("Batch Number", batch)?
        );
        let journal_type = row.required("Type", journal)?;
        let zone_name = row.required("TimeZone", zone)?;
        let offset = offset_of(zone_name)
            .ok_or_else(|| row.invalid("TimeZone", "not a time zone storefold knows"))?;
        let at = row.local_time("Creation Date", created, offset)?;
        let nc = row.currency("Net Currency", net_currency)?;
        let debit = row.amount("Net Debit (NC)", Some(net_debit), nc)?;
        let credit = row.amount("Net Credit (NC)", Some(net_credit), nc)?;
        let Some(kind) = kind_of(journal_type) else {
            // What the batch paid out to the bank.
            let payout = PayoutUpdated {
                provider: PROVIDER.to_string(),
                payout_id,
                amount: debit.checked_sub(credit)?,
                status: PayoutStatus::Paid,
                arrival: None,
                failure: None,
                at,
            };
            out.push((row.line(), Row::Payout(payout)));
            continue;
        };
        let net = credit.checked_sub(debit)?;
        let cost_cells = costs
            .iter()
            .map(|&(name, i)| row.amount(name, i, nc))
            .collect::<Result<Vec<Money>, _>>()?;
        let mut fee = sum(&cost_cells)?;
        let gross = match non_empty(Some(row.get(gross_currency))) {
            Some(_) => {
                let gc: Currency = row.currency("Gross Currency", gross_currency.unwrap_or(0))?;
                let g_debit = row.amount("Gross Debit (GC)", gross_debit, gc)?;
                let g_credit = row.amount("Gross Credit (GC)", gross_credit, gc)?;
                g_credit.checked_sub(g_debit)?
            }
            None if kind == PayoutLineKind::Fee && fee.minor == 0 => {
                fee = Money::new(-net.minor, nc);
                Money::zero(nc)
            }
            None => net.checked_add(fee)?,
        };
        let psp_ref = row.get(psp);
        let modification_ref = row.get(modification);
        let line_id = match psp_ref {
            "" => format!("{payout_id}:{journal_type}:{modification_ref}"),
            p => format!("{p}:{journal_type}:{modification_ref}"),
        };
        // As the notifications link a payment: the order by its merchant
        // reference, then the payment by its PSP reference.
        let order = non_empty(Some(row.get(merchant_reference)));
        let line = PayoutLine {
            provider: PROVIDER.to_string(),
            payout_id,
            line_id,
            kind,
            links: payment_order_links(opts, PROVIDER, order, [psp_ref]),
            gross,
            fee,
            net,
            at,
        };
        out.push((row.line(), Row::Line(line)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_are_read_or_refused_never_guessed() {
        let h = |h: i8, m: i8| UtcOffset::from_hms(h, m, 0).unwrap();
        assert_eq!(offset_of("CET"), Some(h(1, 0)));
        assert_eq!(offset_of("cest"), Some(h(2, 0)));
        assert_eq!(offset_of("UTC"), Some(h(0, 0)));
        assert_eq!(offset_of("+05:30"), Some(h(5, 30)));
        assert_eq!(offset_of("GMT-3"), Some(h(-3, 0)));
        assert_eq!(offset_of("UTC+10:00"), Some(h(10, 0)));
        assert_eq!(offset_of("IST"), None);
        assert_eq!(offset_of("CST"), None);
        assert_eq!(offset_of("+15"), None);
        assert_eq!(offset_of(""), None);
    }
}
