//! Payouts: what a payment provider transferred to the merchant's bank, and
//! the movements (charges, refunds, disputes, fees) each transfer settles.

use super::*;

/// One payout as every report of it joins: its newest state and its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub provider: String,
    pub payout_id: String,
    /// The newest report of the payout itself (by lifecycle, then time, then
    /// event id); `None` while only its lines are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Reg<PayoutUpdated>>,
    /// The movements it settles, by the provider's line id.
    #[serde(default)]
    pub lines: BTreeMap<String, PayoutLineEntry>,
    /// The version last published.
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub seen: Seen,
}

/// A movement of a payout and the order it was placed on, once known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutLineEntry {
    pub line: PayoutLine,
    /// The canonical event it came from (the greatest id, when several
    /// reports carried it).
    pub event_id: String,
    /// The order the movement's payment belongs to, once the fold placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
}

/// The lifecycle position of a payout status: a later status wins over an
/// earlier one whatever the report times (a paid payout may still fail).
fn rank(s: PayoutStatus) -> u8 {
    match s {
        PayoutStatus::Pending => 0,
        PayoutStatus::InTransit => 1,
        PayoutStatus::Paid => 2,
        PayoutStatus::Failed | PayoutStatus::Canceled => 3,
    }
}

impl Payout {
    pub fn new(provider: &str, payout_id: &str) -> Self {
        Payout {
            provider: provider.to_string(),
            payout_id: payout_id.to_string(),
            state: None,
            lines: BTreeMap::new(),
            version: 0,
            seen: Seen::default(),
        }
    }

    /// The record key of a payout: `provider:payout_id`.
    pub fn key(provider: &str, payout_id: &str) -> String {
        format!("{provider}:{payout_id}")
    }

    /// Folds a report of the payout; `false` when nothing changed.
    pub fn apply_state(&mut self, p: &PayoutUpdated, event_id: &str) -> bool {
        if !self.seen.insert(event_id) {
            return false;
        }
        Reg::join(
            &mut self.state,
            Stamp::new(rank(p.status), p.at, event_id),
            p.clone(),
        );
        true
    }

    /// Folds a movement; `false` when nothing changed. Two reports of the same
    /// line keep the one from the greater event id (the provider reports a
    /// movement once; a second copy is the same figures).
    pub fn apply_line(&mut self, l: &PayoutLine, event_id: &str) -> bool {
        if !self.seen.insert(event_id) {
            return false;
        }
        match self.lines.get_mut(&l.line_id) {
            Some(e) if e.event_id.as_str() >= event_id => {}
            Some(e) => {
                e.line = l.clone();
                e.event_id = event_id.to_string();
            }
            None => {
                self.lines.insert(
                    l.line_id.clone(),
                    PayoutLineEntry {
                        line: l.clone(),
                        event_id: event_id.to_string(),
                        order_id: None,
                    },
                );
            }
        }
        true
    }

    /// Places a line on its order; `false` when it already was. A line whose
    /// payment two orders claim stays on the smaller order id.
    pub fn place(&mut self, line_id: &str, order_id: &str) -> bool {
        match self.lines.get_mut(line_id) {
            Some(e) => match &e.order_id {
                Some(o) if o.as_str() <= order_id => false,
                _ => {
                    e.order_id = Some(order_id.to_string());
                    true
                }
            },
            None => false,
        }
    }

    /// What the version of the view follows: the events folded in and the
    /// lines placed (both only grow).
    pub fn computed_version(&self) -> u64 {
        self.seen.count() + self.lines.values().filter(|l| l.order_id.is_some()).count() as u64
    }
}

/// A movement settled for an order, as the order keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub line: PayoutLine,
    pub event_id: String,
}
