//! Payouts: the movements a payment provider settles into each transfer to
//! the merchant's bank, and the orders they belong to.

use super::*;

impl Engine {
    pub(super) fn apply_payout(
        &mut self,
        _src: &dyn Source,
        _env: &Envelope,
        _p: &PayoutUpdated,
    ) -> Result<Outcome, FoldError> {
        Err(FoldError::NoOrderLink)
    }

    pub(super) fn apply_payout_line(
        &mut self,
        _src: &dyn Source,
        _env: &Envelope,
        _l: &PayoutLine,
    ) -> Result<Outcome, FoldError> {
        Err(FoldError::NoOrderLink)
    }
}
