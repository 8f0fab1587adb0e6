//! A settlement report's rows to `PayoutLine` and `PayoutUpdated` events: the
//! table both formats share (a header line naming the columns, in any order;
//! columns storefold does not read are ignored) and the envelopes; the
//! formats themselves are in `stripe_report.rs` and `adyen_report.rs`.

use std::collections::HashMap;

use storefold_core::event::{PayoutLine, PayoutUpdated};
use storefold_core::{Envelope, Event, Money};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::csv::{self, Record};
use super::{ADYEN_SETTLEMENT_DETAILS, PROVIDER, STRIPE_PAYOUT_RECONCILIATION};
use crate::{MapContext, MapError, RawInput, currency_of, money_reason};

/// What one row of a report is.
pub(super) enum Row {
    Line(PayoutLine),
    Payout(PayoutUpdated),
}

/// Maps a verified report: one event per row, or the first bad row's error
/// (nothing of a body with a bad row is mapped).
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let rows = match input.topic {
        STRIPE_PAYOUT_RECONCILIATION => {
            let table = Table::read(input.body)?;
            super::stripe_report::rows(ctx.options, &table)?
        }
        ADYEN_SETTLEMENT_DETAILS => {
            let table = Table::read(input.body)?;
            super::adyen_report::rows(ctx.options, &table)?
        }
        other => return Err(MapError::UnsupportedTopic(other.to_string())),
    };
    // One movement once per body: a second row with the id of an earlier one
    // would be dropped as its duplicate, and its money with it.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut events = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let (event_id, at, event) = match row {
            Row::Line(l) => (
                line_event_id(&l.provider, &l.line_id),
                l.at,
                Event::PayoutLine(l),
            ),
            Row::Payout(p) => (
                payout_event_id(&p.provider, &p.payout_id),
                p.at,
                Event::PayoutUpdated(p),
            ),
        };
        if let Some(first) = seen.insert(event_id.clone(), line) {
            return Err(MapError::InvalidField {
                field: format!("line {line}"),
                reason: format!("the same movement as line {first}"),
            });
        }
        events.push(Envelope {
            tenant: ctx.tenant.to_string(),
            provider: PROVIDER.to_string(),
            event_id,
            occurred_at: at,
            event,
        });
    }
    Ok(events)
}

/// The event id of a movement: the same in every report and chunk it is in.
pub fn line_event_id(provider: &str, line_id: &str) -> String {
    format!("{PROVIDER}:{provider}:{line_id}")
}

/// The event id of a payout's state.
pub fn payout_event_id(provider: &str, payout_id: &str) -> String {
    format!("{PROVIDER}:{provider}:payout:{payout_id}")
}

/// A report's rows under its header.
pub(super) struct Table {
    columns: HashMap<String, usize>,
    /// The data rows (not the header).
    pub(super) rows: Vec<Record>,
}

impl Table {
    /// The body as CSV: the first non-blank line names the columns.
    pub(super) fn read(body: &[u8]) -> Result<Table, MapError> {
        let mut records = records_of(body)?.into_iter();
        let header = records
            .next()
            .ok_or_else(|| MapError::MissingField("line 1: the header line".into()))?;
        let mut columns = HashMap::new();
        for (i, name) in header.fields.iter().enumerate() {
            // The first of two columns of one name is the one read.
            columns.entry(name.trim().to_string()).or_insert(i);
        }
        Ok(Table {
            columns,
            rows: records.collect(),
        })
    }

    /// The index of a column the format needs.
    pub(super) fn column(&self, name: &str) -> Result<usize, MapError> {
        self.optional(name)
            .ok_or_else(|| MapError::MissingField(format!("column {name} (the header line has none)")))
    }

    /// The index of a column, when the header has it.
    pub(super) fn optional(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }
}

/// The body's CSV records (blank lines left out), or an error naming the
/// line where it stops being UTF-8 text or CSV.
fn records_of(body: &[u8]) -> Result<Vec<Record>, MapError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        MapError::InvalidField {
            field: format!("line {line}"),
            reason: "not UTF-8 text".into(),
        }
    })?;
    csv::records(text).map_err(|e| MapError::InvalidField {
        field: format!("line {}", e.line),
        reason: format!("not CSV: {}", e.reason),
    })
}

/// Where one record of a report is in its body: the lines it covers (from
/// 1; a quoted cell may hold line breaks) and its bytes, line break included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSpan {
    pub first_line: usize,
    pub last_line: usize,
    pub bytes: std::ops::Range<usize>,
}

/// Every record of a report body as it is in it, the header line first;
/// blank lines are left out. For cutting a report into smaller reports of
/// whole rows, each with the header (`storefold settlement load`).
pub fn row_spans(body: &[u8]) -> Result<Vec<RowSpan>, MapError> {
    Ok(records_of(body)?
        .into_iter()
        .map(|r| RowSpan {
            first_line: r.line,
            last_line: r.last_line,
            bytes: r.span,
        })
        .collect())
}

/// One data row, naming its line and the column in every error.
pub(super) struct Cells<'a> {
    pub(super) record: &'a Record,
}

impl<'a> Cells<'a> {
    pub(super) fn line(&self) -> usize {
        self.record.line
    }

    /// The trimmed cell of column `index`; empty when the row is shorter.
    pub(super) fn get(&self, index: Option<usize>) -> &'a str {
        index
            .and_then(|i| self.record.fields.get(i))
            .map_or("", |s| s.trim())
    }

    /// A cell that must not be empty.
    pub(super) fn required(&self, name: &str, index: usize) -> Result<&'a str, MapError> {
        let v = self.get(Some(index));
        if v.is_empty() {
            return Err(MapError::MissingField(format!("line {}: {name}", self.line())));
        }
        Ok(v)
    }

    /// An error about column `name` of this row.
    pub(super) fn invalid(&self, name: &str, reason: impl Into<String>) -> MapError {
        MapError::InvalidField {
            field: format!("line {}: {name}", self.line()),
            reason: reason.into(),
        }
    }

    /// A currency code cell.
    pub(super) fn currency(
        &self,
        name: &str,
        index: usize,
    ) -> Result<storefold_core::Currency, MapError> {
        let code = self.required(name, index)?;
        currency_of(name, code).map_err(|_| self.invalid(name, "unknown currency code"))
    }

    /// A decimal amount in major units, exactly (`-30.00`, `1450` JPY); an
    /// empty cell is zero. Never shows the value in an error.
    pub(super) fn amount(
        &self,
        name: &str,
        index: Option<usize>,
        currency: storefold_core::Currency,
    ) -> Result<Money, MapError> {
        let raw = self.get(index);
        if raw.is_empty() {
            return Ok(Money::zero(currency));
        }
        // Spreadsheets write `+1.00` and `.50` now and then; the money parser
        // takes neither.
        let raw = raw.strip_prefix('+').unwrap_or(raw);
        let owned;
        let raw = match raw.strip_prefix("-.") {
            Some(rest) => {
                owned = format!("-0.{rest}");
                owned.as_str()
            }
            None => match raw.strip_prefix('.') {
                Some(rest) => {
                    owned = format!("0.{rest}");
                    owned.as_str()
                }
                None => raw,
            },
        };
        Money::parse(raw, currency).map_err(|e| self.invalid(name, money_reason(&e)))
    }

    /// A time as the reports write it: `YYYY-MM-DD HH:MM:SS` (in UTC unless
    /// `offset` says otherwise), or RFC 3339.
    pub(super) fn local_time(
        &self,
        name: &str,
        index: usize,
        offset: time::UtcOffset,
    ) -> Result<OffsetDateTime, MapError> {
        let raw = self.required(name, index)?;
        if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
            return Ok(t);
        }
        let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        PrimitiveDateTime::parse(raw, &fmt)
            .map(|t| t.assume_offset(offset).to_offset(time::UtcOffset::UTC))
            .map_err(|_| self.invalid(name, "expected a time as YYYY-MM-DD HH:MM:SS"))
    }
}

/// Sums amounts of one currency (cells of one row: never mixed).
pub(super) fn sum(amounts: &[Money]) -> Result<Money, MapError> {
    let mut total = Money::zero(amounts[0].currency);
    for a in amounts {
        total = total.checked_add(*a)?;
    }
    Ok(total)
}
